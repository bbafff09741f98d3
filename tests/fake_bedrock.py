"""A fake AWS Bedrock Runtime: a real HTTP server speaking the Converse API's wire format.

`FakeBedrock` answers Converse (JSON), ConverseStream (the binary event stream,
`application/vnd.amazon.eventstream`) and CountTokens at `/model/<model id>/...`, the model id
percent-encoded in the raw path as AWS expects it. Before anything else it verifies the SigV4
signature: botocore's signer recomputes it from the request as received (its signed headers,
raw path, body) and the secret key the fake knows; a request signed with another secret, or
altered after signing, gets AWS's 403. Bodies are checked against botocore's own service
model for Converse (`ParamValidator`: unknown fields, wrong types, unions with more than one
member) and against the rules Bedrock adds (alternating roles, tool results answering the
previous turn's tool uses, a toolConfig wherever tool blocks are). It follows the same script
of misbehaviours as the other fakes (`aws_error` builds AWS's error answers; a stream's
`error_event` is an exception frame).

The event stream frames are built here per AWS's documented format (prelude with lengths and
CRC32, string headers, payload, message CRC32): botocore has a decoder but no encoder. Only the
test side builds frames by hand; the gateway decodes them with botocore.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import struct
import time
from typing import Any
from urllib.parse import unquote

import anyio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session
from botocore.validate import ParamValidator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fake_llm import THOUGHT, WEATHER_FRAGMENTS, WEATHER_INPUT, FakeProvider, Misbehave, Seen

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
REASONING_SIGNATURE = "RXF1aXZhbGVudC1zaWduYXR1cmUtb2YtYS10aG91Z2h0"
USAGE = {"inputTokens": 9, "outputTokens": 5, "totalTokens": 20, "cacheReadInputTokens": 4, "cacheWriteInputTokens": 2}
_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_MODEL = get_session().get_service_model("bedrock-runtime")


def aws_error(status: int, code: str, message: str) -> Misbehave:
    """A scripted AWS error answer: `{"message"}` with the code in `x-amzn-ErrorType`."""
    return Misbehave(
        status=status, body={"message": message}, headers={"x-amzn-ErrorType": f"{code}:{_ERROR_NAMESPACE}"}
    )


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status, headers={"x-amzn-ErrorType": f"{code}:{_ERROR_NAMESPACE}"})


# -- the event stream's framing (the test side only) ------------------------------------------------------


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event stream message: prelude (total and headers length, CRC32), string headers,
    payload, message CRC32."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event_frame(kind: str, data: dict[str, Any]) -> bytes:
    """An event of type `kind`, padded as Bedrock pads them (`p`)."""
    payload = json.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: 8 + len(kind) % 20]}).encode()
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, payload)


def exception_frame(kind: str, message: str) -> bytes:
    """An exception the stream sends instead of its next event (`throttlingException`...)."""
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


# -- what Bedrock refuses ------------------------------------------------------------------------------------


def converse_problem(body: dict[str, Any], model: str) -> str | None:
    """Why Bedrock would refuse this Converse body, or None."""
    report = ParamValidator().validate({**body, "modelId": model}, _MODEL.operation_model("Converse").input_shape)
    if report.has_errors():
        return f"1 validation error detected: {report.generate_report().splitlines()[-1]}"
    return _conversation_problem(body)


def _conversation_problem(body: dict[str, Any]) -> str | None:
    messages = body.get("messages") or []
    if not messages or messages[0]["role"] != "user":
        return (
            "A conversation must start with a user message. Try again with a conversation that starts with a "
            "user message."
        )
    pending: list[str] = []  # the tool uses of the previous assistant turn
    tools_used = False
    for i, message in enumerate(messages):
        if i and message["role"] == messages[i - 1]["role"]:
            return (
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
            )
        content = message["content"]
        answers = [b["toolResult"]["toolUseId"] for b in content if "toolResult" in b]
        if answers and sorted(answers) != sorted(pending):
            return (
                f"messages.{i}.content: the toolResult blocks ({answers}) do not match the toolUse blocks of the "
                f"previous turn ({pending})"
            )
        for j, block in enumerate(content):
            if "image" in block:
                try:
                    base64.b64decode(block["image"]["source"]["bytes"], validate=True)
                except (binascii.Error, KeyError):
                    return f"messages.{i}.content.{j}.image.source.bytes: invalid base64"
        pending = [b["toolUse"]["toolUseId"] for b in content if "toolUse" in b]
        tools_used = tools_used or bool(pending or answers)
    if tools_used and "toolConfig" not in body:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    form = ((body.get("outputConfig") or {}).get("textFormat") or {}).get("structure", {}).get("jsonSchema")
    if form is not None:
        try:
            json.loads(form["schema"])
        except ValueError:
            return "outputConfig.textFormat.structure.jsonSchema.schema is not valid JSON"
    return None


# -- the fake -----------------------------------------------------------------------------------------------


class FakeBedrock(FakeProvider):
    """Bedrock Runtime on loopback, for one AWS access key (and session token, when given)."""

    def __init__(
        self, access_key_id: str, secret_access_key: str, session_token: str | None = None, region: str = "us-east-1"
    ) -> None:
        super().__init__(secret_access_key)
        self.access_key_id = access_key_id
        self.session_token = session_token
        self.region = region
        self.verified = 0  # requests whose signature checked out

    def _credentials_problem(self, request: Request, body: bytes) -> tuple[str, str] | None:
        """(AWS error code, message) when the request is not signed by this fake's key, else None."""
        header = request.headers.get("authorization", "")
        algorithm, _, rest = header.partition(" ")
        parts = dict(p.strip().partition("=")[::2] for p in rest.split(","))
        scope = parts.get("Credential", "").split("/")
        if algorithm != "AWS4-HMAC-SHA256" or len(scope) != 5 or not parts.get("Signature"):
            return "IncompleteSignatureException", f"Authorization header requires a SigV4 signature: {header!r}"
        key_id, day, region, service, terminal = scope
        stamp = request.headers.get("x-amz-date", "")
        if key_id != self.access_key_id:
            return "UnrecognizedClientException", "The security token included in the request is invalid."
        if (region, service, terminal) != (self.region, "bedrock", "aws4_request") or not stamp.startswith(day):
            return "InvalidSignatureException", f"Credential should be scoped to a valid region, service: {scope}"
        if abs(time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.mktime(time.gmtime())) > 300:
            return "InvalidSignatureException", "Signature expired"
        signed = parts.get("SignedHeaders", "").split(";")
        if self.session_token is not None and (
            "x-amz-security-token" not in signed or request.headers.get("x-amz-security-token") != self.session_token
        ):
            return "UnrecognizedClientException", "The security token included in the request is invalid."
        # botocore's own signer recomputes the signature from what arrived, with the secret the fake knows.
        raw_path = request.scope["raw_path"].decode()
        query = request.scope.get("query_string", b"").decode()
        url = f"http://{request.headers.get('host')}{raw_path}" + (f"?{query}" if query else "")
        received = AWSRequest(
            method=request.method, url=url, data=body, headers={h: request.headers.get(h, "") for h in signed}
        )
        received.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(self.access_key_id, self.key, self.session_token), "bedrock", self.region)
        canonical = signer.canonical_request(received)
        expected = signer.signature(signer.string_to_sign(received, canonical), received)
        if not hmac.compare_digest(expected, parts["Signature"]):
            # As AWS answers: the canonical request it expected is quoted (a session token with it).
            return (
                "InvalidSignatureException",
                f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical}'\n",
            )
        return None

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        raw_path = request.scope["raw_path"].decode()
        body = json.loads(raw or b"{}")
        self.seen.append(Seen(raw_path, dict(request.headers), body))
        plan = self.script.popleft() if self.script else None
        if plan is not None and plan.delay:
            await anyio.sleep(plan.delay)
        if (problem := self._credentials_problem(request, raw)) is not None:
            return _refusal(403, *problem)
        self.verified += 1
        if plan is not None and plan.status is not None:
            return JSONResponse(plan.body or {"message": f"scripted {plan.status}"}, plan.status, headers=plan.headers)
        prefix, _, rest = raw_path.partition("/model/")
        encoded, _, action = rest.rpartition("/")
        if prefix or "/" in encoded or not encoded:
            return _refusal(404, "UnknownOperationException", f"no such path: {raw_path}")
        model = unquote(encoded)
        if action == "count-tokens":
            return self._count(body, model)
        if action not in ("converse", "converse-stream"):
            return _refusal(404, "UnknownOperationException", f"no such operation: {action}")
        if problem := converse_problem(body, model):
            return _refusal(400, "ValidationException", problem)
        blocks, stop = self._answer(body)
        if action == "converse-stream":
            events = self._events(blocks, stop, plan)
            return StreamingResponse(self._stream(events, plan), media_type="application/vnd.amazon.eventstream")
        return JSONResponse(
            {
                "output": {"message": {"role": "assistant", "content": blocks}},
                "stopReason": stop,
                "usage": USAGE,
                "metrics": {"latencyMs": 120},
            }
        )

    def _count(self, body: dict[str, Any], model: str) -> Response:
        shape = _MODEL.operation_model("CountTokens").input_shape
        report = ParamValidator().validate({**body, "modelId": model}, shape)
        converse = (body.get("input") or {}).get("converse")
        if report.has_errors() or not isinstance(converse, dict):
            return _refusal(400, "ValidationException", report.generate_report() or "input.converse is required")
        if problem := _conversation_problem(converse):
            return _refusal(400, "ValidationException", problem)
        return JSONResponse({"inputTokens": len(json.dumps(converse)) // 4})

    # -- answers ---------------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The answer's content blocks and its stop reason."""
        last = body["messages"][-1]["content"]
        results = [" ".join(c.get("text", "") for c in b["toolResult"]["content"]) for b in last if "toolResult" in b]
        failed = any(b["toolResult"].get("status") == "error" for b in last if "toolResult" in b)
        text, images = "", 0
        for message in body["messages"]:
            if message["role"] == "user" and any("text" in b or "image" in b for b in message["content"]):
                text = " ".join(b["text"] for b in message["content"] if "text" in b)
                images = sum(1 for b in message["content"] if "image" in b)
        blocks: list[dict[str, Any]] = []
        thinking = (body.get("additionalModelRequestFields") or {}).get("thinking") or {}
        if thinking.get("type") == "enabled":
            blocks.append({"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": REASONING_SIGNATURE}}})
        if "forbidden" in text:
            return [{"text": "Sorry, the model cannot answer this question."}], "guardrail_intervened"
        tools = (body.get("toolConfig") or {}).get("tools") or []
        specs = [t["toolSpec"] for t in tools if "toolSpec" in t]
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {"auto": {}}
        if specs and not results and ("auto" not in choice or "weather" in text):
            name = choice["tool"]["name"] if "tool" in choice else specs[0]["name"]
            blocks.append({"toolUse": {"toolUseId": "tooluse_1", "name": name, "input": dict(WEATHER_INPUT)}})
            return blocks, "tool_use"
        if results:
            reply = ("the tool failed: " if failed else "the tool said: ") + " ".join(results)
        else:
            reply = f"echo: {text}".strip() + " [image]" * images
        if (body.get("outputConfig") or {}).get("textFormat"):
            reply = json.dumps({"echo": reply})
        stop = "end_turn"
        inference = body.get("inferenceConfig") or {}
        for sequence in inference.get("stopSequences") or ():
            if sequence in reply:
                reply, stop = reply[: reply.index(sequence)], "stop_sequence"
        words = reply.split(" ")
        if len(words) > inference.get("maxTokens", 10**6):
            reply, stop = " ".join(words[: inference["maxTokens"]]), "max_tokens"
        blocks.append({"text": reply})
        return blocks, stop

    def _events(self, blocks: list[dict[str, Any]], stop: str, plan: Misbehave | None) -> list[bytes]:
        """The answer as ConverseStream sends it: text a word a delta (no block start), a tool use
        started then its input in fragments, reasoning then its signature; usage last."""
        events = [event_frame("messageStart", {"role": "assistant"})]
        for index, block in enumerate(blocks):

            def delta(inner: dict[str, Any], index: int = index) -> bytes:
                return event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": inner})

            if "text" in block:
                words = block["text"].split(" ")
                events += [delta({"text": w + (" " if n < len(words) - 1 else "")}) for n, w in enumerate(words)]
            elif "toolUse" in block:
                use = block["toolUse"]
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                events.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
                events += [delta({"toolUse": {"input": fragment}}) for fragment in WEATHER_FRAGMENTS]
            else:
                reasoning = block["reasoningContent"]["reasoningText"]
                events += [delta({"reasoningContent": {"text": reasoning["text"]}}),
                           delta({"reasoningContent": {"signature": reasoning["signature"]}})]  # fmt: skip
            events.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
        events += [
            event_frame("messageStop", {"stopReason": stop}),
            event_frame("metadata", {"usage": USAGE, "metrics": {"latencyMs": 120}}),
        ]
        return events

    def app(self) -> Starlette:
        """Every path: the model and the operation are read from the raw path."""
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])
