"""Fake model providers: real HTTP servers speaking OpenAI's and Anthropic's wire formats.

A `FakeProvider` answers like the provider would (chat completions, embeddings, Responses,
Messages, count_tokens; streamed or not; usage included), checks its own API key, records every
request it gets, and follows a script of misbehaviours queued by a test: an HTTP error status
(with headers such as Retry-After), a slow first byte, a stream that breaks off.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Misbehave:
    """One scripted answer: `status` (with `headers`/`body`), `delay` before answering, `break_after`
    events of a stream (then the connection drops), or `hang` (a stream that goes quiet)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    break_after: int | None = None
    hang: bool = False
    error_event: bytes | None = None  # sent as the second event of a stream, then the stream ends
    reflect_key: bool = False  # the reply quotes the provider's own key (a misconfigured echo)


@dataclass
class Seen:
    """A request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _words(body: dict[str, Any]) -> str:
    """The reply: `echo: <the last user text>` (what tests look for), ` [image]` for each image
    that came with it; after tool results, `the tool said: <their text>`."""
    messages = body.get("messages") or []
    results = _tool_results(messages)
    if results:
        return "the tool said: " + " ".join(results)
    text = ""
    images = 0
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                text, images = content, 0
            elif isinstance(content, list):
                parts = [p for p in content if isinstance(p, dict)]
                text = " ".join(p.get("text", "") for p in parts if "text" in p)
                images = sum(1 for p in parts if p.get("type") in ("image", "image_url"))
    if not messages and isinstance(body.get("input"), str):
        text = body["input"]
    return f"echo: {text}".strip() + " [image]" * images


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """The text of the tool results that end the conversation (OpenAI tool messages, Anthropic
    tool_result blocks)."""
    found: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        found.insert(0, _text_of(message.get("content")))
    if found or not messages or not isinstance(messages[-1].get("content"), list):
        return found
    return [_text_of(b.get("content")) for b in messages[-1]["content"] if b.get("type") == "tool_result"]


WEATHER_INPUT = {"city": "Paris"}
WEATHER_FRAGMENTS = ('{"city": ', '"Paris"}')  # how the arguments arrive in a stream
THOUGHT = "Let me think."
SHORT = 4  # a max_tokens below this cuts Claude's answer short (its first word, stop_reason max_tokens)


def _structured(body: dict[str, Any]) -> bool:
    output = body.get("output_config") or {}
    form = body.get("response_format") or {}
    return bool(output.get("format")) or form.get("type") in ("json_schema", "json_object")


# -- what the real providers refuse (so that a translation that gets the format wrong fails) --------

OPENAI_FIELDS = frozenset(
    [
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    ]
)
ANTHROPIC_FIELDS = frozenset(
    [
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "output_config",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "inference_geo",
        "speed",
        "cache_control",
        "diagnostics",
        "user_profile_id",
        "workspace_id",
    ]
)
ANTHROPIC_BLOCKS = frozenset(("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document"))
ANTHROPIC_IMAGE_TYPES = frozenset(("image/jpeg", "image/png", "image/gif", "image/webp"))


def openai_problem(body: dict[str, Any]) -> str | None:
    """Why OpenAI would refuse this chat completions body, or None."""
    unknown = sorted(set(body) - OPENAI_FIELDS)
    if unknown:
        return f"Unrecognized request argument supplied: {unknown[0]}"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty array"
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return f"messages[{i}]: a tool message must answer a preceding message with tool_calls"
            pending.discard(message["tool_call_id"])
            continue
        if pending:
            return f"messages[{i}]: tool_calls without tool messages answering them: {sorted(pending)}"
        if role not in ("system", "developer", "user", "assistant"):
            return f"messages[{i}].role: invalid role {role!r}"
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            if part.get("type") == "image_url" and not isinstance((part.get("image_url") or {}).get("url"), str):
                return f"messages[{i}]: image_url.url must be a string"
            if part.get("type") not in ("text", "image_url", "input_audio", "file", "refusal"):
                return f"messages[{i}]: invalid content part type {part.get('type')!r}"
        for call in message.get("tool_calls") or ():
            if not isinstance(call["function"].get("arguments"), str):
                return f"messages[{i}]: tool call arguments must be a string"
            pending.add(call["id"])
    if pending:
        return f"tool_calls without tool messages answering them: {sorted(pending)}"
    for tool in body.get("tools") or ():
        if tool.get("type") != "function" or not isinstance(tool.get("function", {}).get("name"), str):
            return "tools: each tool must be a function with a name"
    choice = body.get("tool_choice")
    if (
        choice is not None
        and choice not in ("none", "auto", "required")
        and not (isinstance(choice, dict) and choice.get("type") == "function")
    ):
        return f"tool_choice: invalid value {choice!r}"
    return None


def anthropic_problem(body: dict[str, Any]) -> str | None:
    """Why Anthropic would refuse this Messages body, or None."""
    unknown = sorted(set(body) - ANTHROPIC_FIELDS)
    if unknown:
        return f"{unknown[0]}: Extra inputs are not permitted"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    system = body.get("system")
    if isinstance(system, list) and not all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        return "system: only text blocks"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if messages[0].get("role") != "user":
        return "messages: the first message must use the user role"
    uses: set[str] = set()  # tool_use ids of the previous assistant turn
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if uses and (role != "user" or not uses <= results):
            return f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after"
        if results - uses:
            return f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks"
        kinds = [b.get("type") for b in blocks]
        if results and kinds[: len(results)] != ["tool_result"] * len(results):
            return f"messages.{i}: tool_result blocks must come first in the content"
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind not in ANTHROPIC_BLOCKS:
                return f"messages.{i}.content.{j}.type: unknown block type {kind!r}"
            if kind == "text" and not block.get("text") and not (role == "assistant" and i == len(messages) - 1):
                return f"messages.{i}.content.{j}: text content blocks must be non-empty"
            if kind == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    if source.get("media_type") not in ANTHROPIC_IMAGE_TYPES or not isinstance(source.get("data"), str):
                        return f"messages.{i}.content.{j}.source: invalid base64 image"
                elif source.get("type") != "url" or not isinstance(source.get("url"), str):
                    return f"messages.{i}.content.{j}.source: invalid image source"
            if kind == "tool_use" and (role != "assistant" or not isinstance(block.get("input"), dict)):
                return f"messages.{i}.content.{j}: tool_use must be an assistant's, with an object input"
        uses = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    if uses:
        return "the last assistant message has `tool_use` ids without `tool_result` blocks"
    names = []
    for tool in body.get("tools") or ():
        if not isinstance(tool.get("name"), str) or (tool.get("input_schema") or {}).get("type") != "object":
            return "tools: each tool needs a name and an input_schema of type object"
        names.append(tool["name"])
    choice = body.get("tool_choice") or {}
    if choice and choice.get("type") not in ("auto", "any", "tool", "none"):
        return f"tool_choice.type: invalid {choice.get('type')!r}"
    if choice.get("type") == "tool" and choice.get("name") not in names:
        return "tool_choice.name: no such tool"
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024 or budget >= body["max_tokens"]:
            return "thinking.budget_tokens: must be at least 1024 and less than max_tokens"
        if choice.get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _openai_refusal(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
                        400)  # fmt: skip


def _anthropic_refusal(message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": "invalid_request_error", "message": message}}, 400)


def _openai_tool(body: dict[str, Any], text: str) -> str | None:
    """The tool an OpenAI model calls: the one named, or the first when required or asked about weather."""
    tools = body.get("tools")
    choice = body.get("tool_choice") or "auto"
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return choice["function"]["name"]
    return tools[0]["function"]["name"] if choice == "required" or "weather" in text else None


def _anthropic_tool(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The tool_use block Claude answers with: the tool named, or the first when any is forced or
    the question is about weather."""
    tools = body.get("tools")
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None
    if choice["type"] == "tool":
        name = choice["name"]
    elif choice["type"] == "any" or "weather" in text:
        name = tools[0]["name"]
    else:
        return None
    return {"type": "tool_use", "id": "toolu_1", "name": name, "input": dict(WEATHER_INPUT)}


def _anthropic_block_events(event: Any, index: int, block: dict[str, Any]) -> list[bytes]:
    """One content block as Anthropic streams it: start, deltas, stop."""
    kind = block["type"]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                  {"type": "signature_delta", "signature": block["signature"]}]  # fmt: skip
    elif kind == "tool_use":
        start = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in WEATHER_FRAGMENTS]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": w + " "} for w in block["text"].split()]
    return [
        event("content_block_start", {"index": index, "content_block": start}),
        *(event("content_block_delta", {"index": index, "delta": d}) for d in deltas),
        event("content_block_stop", {"index": index}),
    ]


class FakeProvider:
    """An OpenAI- and Anthropic-speaking provider on loopback."""

    def __init__(self, key: str = "sk-fake-provider-key-0123456789") -> None:
        self.key = key
        self.seen: list[Seen] = []
        self.script: deque[Misbehave] = deque()
        self.cancelled = 0  # streams whose client went away
        self.url = ""  # set by the fixture that serves it
        # Bearer tokens it also takes (an Azure OpenAI resource's Entra ID tokens), when set.
        self.token_check: Callable[[str], bool] | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _authorised(self, request: Request, anthropic: bool) -> bool:
        if anthropic:
            return request.headers.get("x-api-key") == self.key
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.token_check is not None and self.token_check(bearer):
            return True
        return request.headers.get("authorization") == f"Bearer {self.key}" or (
            request.headers.get("api-key") == self.key
        )

    async def _enter(
        self, request: Request, anthropic: bool
    ) -> tuple[dict[str, Any], Misbehave | None, Response | None]:
        body = json.loads(await request.body() or b"{}")
        self.seen.append(Seen(request.url.path, dict(request.headers), body))
        plan = self.script.popleft() if self.script else None
        if plan is not None and plan.delay:
            await anyio.sleep(plan.delay)
        if not self._authorised(request, anthropic):
            # Echo the key, as some servers do: the gateway must scrub it.
            presented = request.headers.get("x-api-key") or request.headers.get("authorization", "")
            message = f"Incorrect API key provided: {presented}"
            if anthropic:
                return (
                    body,
                    None,
                    JSONResponse({"type": "error", "error": {"type": "authentication_error", "message": message}}, 401),
                )
            return (
                body,
                None,
                JSONResponse(
                    {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}, 401
                ),
            )
        if plan is not None and plan.status is not None:
            payload = plan.body
            if payload is None:
                payload = (
                    {"type": "error", "error": {"type": "api_error", "message": f"scripted {plan.status}"}}
                    if anthropic
                    else {"error": {"message": f"scripted {plan.status}", "type": "server_error", "code": None}}
                )
            return body, plan, JSONResponse(payload, plan.status, headers=plan.headers)
        return body, plan, None

    async def _stream(self, events: list[bytes], plan: Misbehave | None) -> AsyncIterator[bytes]:
        try:
            for number, event in enumerate(events):
                if plan is not None and plan.break_after is not None and number >= plan.break_after:
                    raise RuntimeError("scripted break")  # uvicorn drops the connection mid-body
                if plan is not None and plan.hang and number == 1:
                    await anyio.sleep(3600)
                if plan is not None and plan.error_event is not None and number == 1:
                    yield plan.error_event.replace(b"{key}", self.key.encode())
                    return
                yield event
        except BaseException:
            self.cancelled += 1
            raise

    # -- OpenAI -------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body, plan, refused = await self._enter(request, anthropic=False)
        if refused is not None:
            return refused
        if problem := openai_problem(body):
            return _openai_refusal(problem)
        model = body.get("model")
        created = int(time.time())
        text = _words(body)
        if plan is not None and plan.reflect_key:
            text = f"your key is {self.key} ok"
        tool_calls = None
        if name := _openai_tool(body, text):
            arguments = json.dumps(WEATHER_INPUT)
            tool_calls = [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}]
        if _structured(body):
            text = json.dumps({"echo": text})
        # Like DeepSeek and vLLM, reasoning comes back as `reasoning_content` when it was asked for.
        reasoning = THOUGHT if body.get("reasoning_effort") not in (None, "none") else None
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            if reasoning:
                message["reasoning_content"] = reasoning
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
                    ],
                    "usage": usage,
                }
            )
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n".encode()

        events = [chunk({"role": "assistant", "content": ""})]
        if reasoning:
            events.append(chunk({"reasoning_content": reasoning}))
        if tool_calls:
            # As OpenAI streams a call: its id and name first, then its arguments in fragments.
            head = {**tool_calls[0], "function": {"name": tool_calls[0]["function"]["name"], "arguments": ""}}
            events.append(chunk({"tool_calls": [{"index": 0, **head}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in WEATHER_FRAGMENTS]
        else:
            events += [chunk({"content": word + " "}) for word in text.split()]
        events.append(chunk({}, "tool_calls" if tool_calls else "stop"))
        if with_usage:
            final = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            events.append(f"data: {json.dumps(final)}\n\n".encode())
        events.append(b"data: [DONE]\n\n")
        return StreamingResponse(self._stream(events, plan), media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body, _plan, refused = await self._enter(request, anthropic=False)
        if refused is not None:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vector = [0.25, -0.5, 1.0]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack("<3f", *vector)).decode()
        return JSONResponse(
            {
                "object": "list",
                "model": body.get("model"),
                "data": [{"object": "embedding", "index": i, "embedding": encoded} for i in range(len(inputs))],
                "usage": {"prompt_tokens": 5 * len(inputs), "total_tokens": 5 * len(inputs)},
            }
        )

    async def responses(self, request: Request) -> Response:
        body, plan, refused = await self._enter(request, anthropic=False)
        if refused is not None:
            return refused
        text = _words(body)
        usage = {
            "input_tokens": 9,
            "output_tokens": 4,
            "total_tokens": 13,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 1},
        }
        item = {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        response = {
            "id": "resp_1",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body.get("model"),
            "output": [item],
            "usage": usage,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
        }
        if not body.get("stream"):
            return JSONResponse(response)
        started = {**response, "status": "in_progress", "output": [], "usage": None}

        def event(name: str, data: dict[str, Any], n: int) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': n, **data})}\n\n".encode()

        at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        empty_item = {**item, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        events = [
            event("response.created", {"response": started}, 0),
            event("response.output_item.added", {"output_index": 0, "item": empty_item}, 1),
            event("response.content_part.added", {**at, "part": part}, 2),
        ]
        for n, word in enumerate(text.split(), 3):
            events.append(event("response.output_text.delta", {**at, "delta": word + " ", "logprobs": []}, n))
        events += [
            event("response.output_text.done", {**at, "text": text, "logprobs": []}, 90),
            event("response.content_part.done", {**at, "part": {**part, "text": text}}, 91),
            event("response.output_item.done", {"output_index": 0, "item": item}, 92),
            event("response.completed", {"response": response}, 99),
        ]
        return StreamingResponse(self._stream(events, plan), media_type="text/event-stream")

    # -- Anthropic ----------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body, plan, refused = await self._enter(request, anthropic=True)
        if refused is not None:
            return refused
        if not request.headers.get("anthropic-version"):
            return _anthropic_refusal("anthropic-version header is required")
        if problem := anthropic_problem(body):
            return _anthropic_refusal(problem)
        text = _words(body)
        model = body.get("model")
        usage: dict[str, Any] = {
            "input_tokens": 12,
            "output_tokens": 6,
            "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 2,
        }
        content: list[dict[str, Any]] = []
        if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
            content.append({"type": "thinking", "thinking": THOUGHT, "signature": "sig-1"})
            usage["output_tokens_details"] = {"thinking_tokens": 3}
        call = _anthropic_tool(body, text)
        if call is not None:
            if (body.get("tool_choice") or {}).get("type") in (None, "auto"):
                content.append({"type": "text", "text": "Let me check."})  # Claude says what it does first
            content.append(call)
        else:
            content.append({"type": "text", "text": json.dumps({"echo": text}) if _structured(body) else text})
        stop_reason = "tool_use" if call is not None else "end_turn"
        if call is None and body["max_tokens"] < SHORT:
            # Too few tokens for the whole answer: cut short, as Claude stops at max_tokens.
            content[-1]["text"] = content[-1]["text"].split()[0]
            stop_reason = "max_tokens"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": usage,
                }
            )

        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        start_usage = {k: v for k, v in usage.items() if k != "output_tokens_details"} | {"output_tokens": 1}
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        events = [event("message_start", {"message": message})]
        for index, block in enumerate(content):
            events += _anthropic_block_events(event, index, block)
            if index == 0:
                events.append(event("ping", {}))
        end_usage = {k: v for k, v in usage.items() if k in ("output_tokens", "output_tokens_details")}
        events += [
            event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": end_usage}),
            event("message_stop", {}),
        ]
        return StreamingResponse(self._stream(events, plan), media_type="text/event-stream")

    async def count_tokens(self, request: Request) -> Response:
        body, _plan, refused = await self._enter(request, anthropic=True)
        if refused is not None:
            return refused
        return JSONResponse({"input_tokens": len(json.dumps(body.get("messages"))) // 4})

    def app(self) -> Starlette:
        """The provider as an ASGI app (OpenAI's paths under /v1, Anthropic's under /v1 too)."""
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                # Azure OpenAI's deployment paths (the api-version is a query parameter).
                Route("/openai/deployments/{deployment}/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            ]
        )
