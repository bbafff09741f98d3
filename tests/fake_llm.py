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
from collections.abc import AsyncIterator
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


@dataclass
class Seen:
    """A request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _words(body: dict[str, Any]) -> str:
    """The reply: `echo: <the last user text>` (what tests look for)."""
    messages = body.get("messages") or []
    text = ""
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                text = content
            elif isinstance(content, list):
                text = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and "text" in p)
    if not messages and isinstance(body.get("input"), str):
        text = body["input"]
    return f"echo: {text}".strip()


class FakeProvider:
    """An OpenAI- and Anthropic-speaking provider on loopback."""

    def __init__(self, key: str = "sk-fake-provider-key-0123456789") -> None:
        self.key = key
        self.seen: list[Seen] = []
        self.script: deque[Misbehave] = deque()
        self.cancelled = 0  # streams whose client went away
        self.url = ""  # set by the fixture that serves it

    # -- plumbing ---------------------------------------------------------------------------

    def _authorised(self, request: Request, anthropic: bool) -> bool:
        if anthropic:
            return request.headers.get("x-api-key") == self.key
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
                yield event
        except BaseException:
            self.cancelled += 1
            raise

    # -- OpenAI -------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body, plan, refused = await self._enter(request, anthropic=False)
        if refused is not None:
            return refused
        model = body.get("model")
        created = int(time.time())
        tools = body.get("tools")
        text = _words(body)
        tool_calls = None
        if tools and "weather" in text:
            name = tools[0]["function"]["name"]
            tool_calls = [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}
            ]
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
        if tool_calls:
            events.append(chunk({"tool_calls": [{"index": 0, **tool_calls[0]}]}))
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
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"},
                },
                400,
            )
        text = _words(body)
        model = body.get("model")
        usage = {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2}
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
            )

        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        start_usage = {**usage, "output_tokens": 1}
        events = [
            event(
                "message_start",
                {
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    }
                },
            ),
            event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            event("ping", {}),
        ]
        events += [
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w + " "}})
            for w in text.split()
        ]
        events += [
            event("content_block_stop", {"index": 0}),
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            ),
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
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            ]
        )
