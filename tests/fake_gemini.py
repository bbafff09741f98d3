"""Fake Google endpoints: Gemini (AI Studio and Vertex AI paths) and an OAuth token endpoint, as
real HTTP servers speaking their wire formats.

`FakeGemini` answers generateContent, streamGenerateContent?alt=sse (usage as a running total on
every chunk, as Gemini sends it), countTokens, embedContent and batchEmbedContents; it checks
the AI Studio key (`x-goog-api-key`) or a Vertex access token issued by `FakeTokenEndpoint`
(a token that endpoint no longer honours, or any when `refuse_tokens` is set, is Vertex's 401
UNAUTHENTICATED), refuses what Gemini refuses (unknown fields, function responses that answer no call, and, for
`gemini-3*` models, a function call sent back without its thought signature), and follows the
same script of misbehaviours as the other fakes.

`FakeTokenEndpoint` is a service account's `token_uri`: it verifies the JWT grant's RS256
signature with the account's public key, its issuer, audience and scope, and issues tokens that
expire after `expires_in` seconds, or sooner when a test revokes them.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import anyio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fake_llm import THOUGHT, WEATHER_INPUT, FakeProvider, Seen

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SIGNATURE = "c2lnbmF0dXJlLW9mLWEtdGhvdWdodA=="  # what the fake Gemini 3 signs its calls with
VECTOR = [0.25, -0.5, 1.0]

REQUEST_FIELDS = frozenset(
    ("contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent")
)
GENERATION_FIELDS = frozenset(
    (
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "thinkingConfig",
    )
)
# Vertex's countTokens takes a request's contents, system instruction, tools and generation config.
VERTEX_COUNT_FIELDS = frozenset(("model", "instances", "contents", "systemInstruction", "tools", "generationConfig"))
PART_FIELDS = frozenset(
    ("text", "thought", "thoughtSignature", "inlineData", "fileData", "functionCall", "functionResponse")
)


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "status": code}}, status)


def gemini_problem(body: dict[str, Any], model: str) -> str | None:
    """Why Gemini would refuse this generateContent body, or None."""
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    pending: list[str] = []  # the names the previous model turn called
    for i, content in enumerate(contents):
        role = content.get("role")
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}])"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            unknown = sorted(set(part) - PART_FIELDS)
            if unknown:
                return f'Invalid JSON payload received. Unknown name "{unknown[0]}" at contents[{i}].parts[{j}]'
            if "inlineData" in part and not {"mimeType", "data"} <= set(part["inlineData"]):
                return f"contents[{i}].parts[{j}].inlineData needs mimeType and data"
        answers = [p["functionResponse"]["name"] for p in parts if "functionResponse" in p]
        if answers and (role != "user" or answers != pending):
            return (
                "Please ensure that the number of function response parts is equal to the number of function "
                f"call parts of the function call turn (contents[{i}] answers {answers}, the calls were {pending})."
            )
        calls = [p for p in parts if "functionCall" in p]
        if calls and model.startswith("gemini-3") and not calls[0].get("thoughtSignature"):
            return (
                f"Function call is missing a thought_signature in functionCall parts (contents[{i}]). "
                "This is required for tools to work correctly."
            )
        pending = [p["functionCall"]["name"] for p in calls] if role == "model" else []
    config = body.get("generationConfig") or {}
    unknown = sorted(set(config) - GENERATION_FIELDS)
    if unknown:
        return f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'generation_config'"
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                return "parameters and parametersJsonSchema are mutually exclusive"
    return None


def _user_text(contents: list[dict[str, Any]]) -> tuple[str, int, list[str]]:
    """(the last user text, the images that came with it, the outputs of the function responses ending the
    conversation)."""
    last = contents[-1]
    results = [
        str(p["functionResponse"]["response"].get("output", p["functionResponse"]["response"].get("error")))
        for p in last["parts"]
        if "functionResponse" in p
    ]
    text, images = "", 0
    for content in contents:
        if content["role"] == "user":
            texts = [p["text"] for p in content["parts"] if "text" in p]
            if texts or not results:
                text = " ".join(texts)
                images = sum(1 for p in content["parts"] if "inlineData" in p or "fileData" in p)
    return text, images, results


class FakeGemini(FakeProvider):
    """Gemini's REST API on loopback: AI Studio's paths (`/v1beta/models/...`) and Vertex AI's
    (`/v1/projects/.../publishers/google/models/...`)."""

    def __init__(self, key: str, tokens: FakeTokenEndpoint | None = None) -> None:
        super().__init__(key)
        self.tokens = tokens
        self.refuse_tokens = False  # Vertex: every access token refused, however new

    def _authorised(self, request: Request, anthropic: bool) -> bool:
        if "/projects/" in request.url.path:
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ")
            return self.tokens is not None and not self.refuse_tokens and self.tokens.valid(token)
        return request.headers.get("x-goog-api-key") == self.key

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        body = json.loads(await request.body() or b"{}")
        self.seen.append(
            Seen(path + (f"?{request.url.query}" if request.url.query else ""), dict(request.headers), body)
        )
        plan = self.script.popleft() if self.script else None
        if plan is not None and plan.delay:
            await anyio.sleep(plan.delay)
        if not self._authorised(request, False):
            # Echo what was presented, as some servers do: the gateway must scrub it.
            presented = request.headers.get("x-goog-api-key") or request.headers.get("authorization", "")
            if "/projects/" in path:  # Vertex AI: an OAuth token it does not honour
                message = f"Request had invalid authentication credentials: {presented}. Expected OAuth 2 access token."
                return _error(401, message, "UNAUTHENTICATED")
            return _error(400, f"API key not valid: {presented}. Please pass a valid API key.", "INVALID_ARGUMENT")
        if plan is not None and plan.status is not None:
            payload = plan.body or {"error": {"code": plan.status, "message": f"scripted {plan.status}",
                                              "status": "UNAVAILABLE"}}  # fmt: skip
            return JSONResponse(payload, plan.status, headers=plan.headers)
        model, _, method = path.rsplit("/", 1)[-1].partition(":")
        if method == "countTokens":
            return self.count_tokens_of(body, model, "/projects/" in path)
        if method == "embedContent":
            return JSONResponse({"embedding": {"values": VECTOR}})
        if method == "batchEmbedContents":
            wrong = [r.get("model") for r in body.get("requests", []) if r.get("model") != f"models/{model}"]
            if wrong:
                return _error(400, f"requests[].model must be models/{model}, not {wrong[0]}", "INVALID_ARGUMENT")
            return JSONResponse({"embeddings": [{"values": VECTOR} for _ in body["requests"]]})
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"Method not found: {method}", "NOT_FOUND")
        if problem := gemini_problem(body, model):
            return _error(400, problem, "INVALID_ARGUMENT")
        if method == "streamGenerateContent":
            if request.query_params.get("alt") != "sse":
                return _error(400, "the fake speaks SSE only (alt=sse)", "INVALID_ARGUMENT")
            return StreamingResponse(self._stream(self._chunks(body, model), plan), media_type="text/event-stream")
        return JSONResponse(self.answer(body, model))

    def count_tokens_of(self, body: dict[str, Any], model: str, vertex: bool) -> Response:
        if vertex:
            unknown = sorted(set(body) - VERTEX_COUNT_FIELDS)
            if unknown:
                return _error(400, f'Invalid JSON payload received. Unknown name "{unknown[0]}"', "INVALID_ARGUMENT")
            request = body
        else:
            # AI Studio counts a whole request only inside generateContentRequest, which names the model.
            request = body.get("generateContentRequest") or {}
            if request.get("model") != f"models/{model}" or "contents" in body:
                return _error(400, "generateContentRequest.model must name the model", "INVALID_ARGUMENT")
        if problem := gemini_problem({k: v for k, v in request.items() if k != "model"}, model):
            return _error(400, problem, "INVALID_ARGUMENT")
        return JSONResponse({"totalTokens": len(json.dumps(request)) // 4})

    # -- answers ---------------------------------------------------------------------------------

    def _parts(self, body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], str]:
        """The parts of the answer and its finish reason."""
        text, images, results = _user_text(body["contents"])
        config = body.get("generationConfig") or {}
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        declarations = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
        parts: list[dict[str, Any]] = []
        if (config.get("thinkingConfig") or {}).get("includeThoughts"):
            parts.append({"text": THOUGHT, "thought": True})
        call = None
        if declarations and mode != "NONE" and not results and (mode == "ANY" or "weather" in text):
            allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declarations]
            call = {"functionCall": {"name": allowed[0], "args": dict(WEATHER_INPUT)}}
            if model.startswith("gemini-3"):
                call["thoughtSignature"] = SIGNATURE
            parts.append(call)
            return parts, "STOP"
        reply = "the tool said: " + " ".join(results) if results else f"echo: {text}".strip() + " [image]" * images
        if config.get("responseMimeType") == "application/json":
            reply = json.dumps({"echo": reply})
        parts.append({"text": reply})
        return parts, "STOP"

    def _usage(self, body: dict[str, Any], output: int) -> dict[str, int]:
        thinking = bool(((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts"))
        usage = {"promptTokenCount": 13, "candidatesTokenCount": output, "cachedContentTokenCount": 4}
        if thinking:
            usage["thoughtsTokenCount"] = 2
        usage["totalTokenCount"] = 13 + output + usage.get("thoughtsTokenCount", 0)
        return usage

    def answer(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        parts, finish = self._parts(body, model)
        count = (body.get("generationConfig") or {}).get("candidateCount", 1)
        candidates = [
            {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": i} for i in range(count)
        ]
        return {
            "candidates": candidates,
            "usageMetadata": self._usage(body, 5),
            "modelVersion": model,
            "responseId": "resp-1",
        }

    def _chunks(self, body: dict[str, Any], model: str) -> list[bytes]:
        """The answer as Gemini streams it: a chunk a word (a call comes whole), each with the usage so far."""
        parts, finish = self._parts(body, model)
        pieces: list[dict[str, Any]] = []
        for part in parts:
            if "text" in part and not part.get("thought"):
                pieces += [{"text": word + " "} for word in part["text"].split()]
            else:
                pieces.append(part)
        events = []
        for number, piece in enumerate(pieces, 1):
            last = number == len(pieces)
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [piece]}, "index": 0}
            if last:
                candidate["finishReason"] = finish
            # A running total: the last chunk's usage is the whole call's (5 output tokens).
            data = {"candidates": [candidate], "usageMetadata": self._usage(body, 5 if last else number),
                    "modelVersion": model, "responseId": "resp-1"}  # fmt: skip
            events.append(f"data: {json.dumps(data)}\r\n\r\n".encode())
        return events

    def app(self) -> Starlette:
        """Every path: the model and method are read from it."""
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])


class FakeTokenEndpoint:
    """A service account's OAuth token endpoint (the JWT bearer grant, RFC 7523)."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "gateway@fake-project.iam.gserviceaccount.com"
        self.expires_in = 3600
        self.delay = 0.0
        self.fetches = 0
        self.issued: dict[str, float] = {}  # token -> when it expires
        self.url = ""  # set by the fixture that serves it

    def service_account(self) -> dict[str, str]:
        """The service account's JSON key, as Google issues it, pointing at this endpoint."""
        from cryptography.hazmat.primitives import serialization

        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "token_uri": self.url + "/token",
        }

    def valid(self, token: str) -> bool:
        return self.issued.get(token, 0.0) > time.time()

    def revoke(self) -> None:
        """Revoke every token issued so far (before it expires, as an admin or a key rotation does)."""
        self.issued.clear()

    def _claims(self, assertion: str) -> dict[str, Any] | str:
        """The grant's claims once its signature and contents check out, else why not."""
        try:
            head, payload, signature = assertion.split(".")
            header = json.loads(_b64url(head))
            claims = json.loads(_b64url(payload))
        except ValueError:
            return "malformed assertion"
        if header.get("alg") != "RS256":
            return "alg must be RS256"
        try:
            self.private_key.public_key().verify(
                _b64url(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != self.client_email or claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return "Invalid JWT: iss or aud"
        if not claims.get("iat", now + 999) <= now + 5 < claims.get("exp", 0) + 5:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid scope"
        return claims

    async def token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        claims = self._claims((form.get("assertion") or [""])[0])
        if isinstance(claims, str):
            return JSONResponse({"error": "invalid_grant", "error_description": claims}, 400)
        self.fetches += 1
        if self.delay:
            await anyio.sleep(self.delay)
        token = f"ya29.fake-{self.fetches}-{secrets.token_urlsafe(16)}"
        self.issued[token] = time.time() + self.expires_in
        return JSONResponse({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/token", self.token, methods=["POST"])])
