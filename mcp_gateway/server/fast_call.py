"""A hot path for stateless `tools/call` on /mcp, in front of the SDK's Streamable HTTP app.

The SDK answers a stateless `tools/call` through a per-request transport, a task group, memory
streams and several pydantic validate/dump passes; at high concurrency that is a large share of
the gateway's CPU. This layer takes a POST only when it is exactly a request it fully understands:
one JSON-RPC `tools/call` object, of a tool that exists and that the caller may use, in the
2026-07-28 era (JSON or SSE responses: the SDK's single-exchange answer is JSON unless the call
outlasts its keepalive interval, which this path replicates) or in the 2025-era stateless mode
(`server.stateless`; JSON responses, or the SDK's one-event SSE stream with sse-starlette's
keep-alive comments: in stateless mode a call sends nothing else on it), no session id, no
`Mcp-Param-*` headers, a `Content-Length` within the body limit and the headers the SDK would
accept. It then runs the same MCP server middleware (the caller's trace context, the SDK's
OpenTelemetry span when traced) around the same pipeline call, and writes the response the SDK
would have written. Anything else, malformed or unusual included, goes on to the SDK untouched
(the body it read is replayed), so every error answer and every other method stays the SDK's.
tests/test_fast_path.py compares both paths on a corpus, in each response mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp.server import _streamable_http_modern as modern_http  # the SDK's own writers and SSE timing
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.runner import modern_error_data
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    InboundModernRoute,
    classify_inbound_request,
    x_mcp_header_map,
)
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
    ErrorData,
    JSONRPCError,
)
from mcp_types import methods as spec_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.server.mcp import GatewayMCP

logger = logging.getLogger(__name__)

_ENVELOPE = frozenset(("jsonrpc", "id", "method", "params"))
_PARAMS = frozenset(("name", "arguments", "_meta"))
_MODERN_META = frozenset({PROTOCOL_VERSION_META_KEY, CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY})
# Headers whose repetition the SDK treats specially (routing headers) or reads only once.
_SINGLE = frozenset(
    (b"content-type", b"content-length", b"accept", b"mcp-protocol-version", b"mcp-method", b"mcp-name")
)
# The headers classify_inbound_request compares with the body (besides the protocol version).
_ROUTING = ((b"mcp-method", MCP_METHOD_HEADER), (b"mcp-name", MCP_NAME_HEADER))
_MAX_ID = 2**53  # larger integer ids take the SDK path (its parser's limits decide them)
_CONTENT_TYPE = (b"content-type", b"application/json")
# A `\ud800`-`\udfff` escape: surrogates, which the two eras' JSON parsers treat differently.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON


# Made once: json.loads/json.dumps with any option build a new decoder or encoder per call.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode  # the 2026-07-28 writer's
_encode_utf8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # the handshake era's


def _accepts(accept: bytes) -> tuple[bool, bool]:
    """The SDK's Accept test (`check_accept_headers`): (JSON accepted, SSE accepted)."""
    types = [part.split(b";")[0].strip().lower() for part in accept.split(b",")]
    wildcard = b"*/*" in types
    return (
        wildcard or any(t in (b"application/json", b"application/*") for t in types),
        wildcard or any(t in (b"text/event-stream", b"text/*") for t in types),
    )


def _jsonable_id(value: Any) -> bool:
    return (isinstance(value, str)) or (type(value) is int and -_MAX_ID < value < _MAX_ID)


class FastToolCall:
    """ASGI layer for one MCP endpoint (`/mcp` or `/mcp/<name>`): serves the plain stateless
    JSON `tools/call` itself and hands every other request to `app` (the SDK's transport)."""

    def __init__(self, app: ASGIApp, mcp: GatewayMCP, *, stateless: bool, json_response: bool) -> None:
        self.app = app
        self.mcp = mcp
        self.stateless = stateless
        self.json_response = json_response
        self.max_body = mcp.settings.max_request_bytes
        # x-mcp-header annotations per input schema (by identity: schemas live as long as their
        # catalog version); a tool with any takes the SDK path, which validates Mcp-Param headers.
        self._annotated: dict[int, tuple[Mapping[str, Any], bool]] = {}
        self._verdicts: dict[tuple[str, str], bool] = {}  # see _valid_params
        # The SDK's serverInfo stamp, dumped once: the server's identity is fixed at construction
        # (the SDK copies it for every response; here it is only ever serialized).
        self._stamp = mcp.server.server_info_stamp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        served = False
        if messages[-1]["type"] == "http.request" and len(body) <= self.max_body:
            served = await self._serve(*route, body, scope, receive, send)
        if not served:
            await self.app(scope, _replay(messages, receive), send)

    def _route(self, scope: Scope) -> tuple[str, dict[str, str]] | None:
        """The protocol version of a POST whose headers this path accepts, and its routing headers
        (all the SDK's header checks read, by lowercase name), else None."""
        raw = scope["headers"]
        headers = dict(raw)
        if len(headers) != len(raw):  # a header repeated: not one the SDK reads once or routes by
            seen: set[bytes] = set()
            for name, _ in raw:
                if name in _SINGLE:
                    if name in seen:
                        return None
                    seen.add(name)
        get = headers.get
        version, content_type, accept, length = (
            get(b"mcp-protocol-version"), get(b"content-type"), get(b"accept"), get(b"content-length")
        )  # fmt: skip
        if version is None or content_type is None or accept is None or length is None:
            return None
        if b"mcp-session-id" in headers or b"transfer-encoding" in headers or b"last-event-id" in headers:
            return None
        if any(name.startswith(b"mcp-param-") for name in headers):
            return None
        # Both eras' Content-Type tests: the SDK's security check and the handshake-era transport's.
        accepts_json, accepts_sse = _accepts(accept)
        if content_type.split(b";")[0].strip() != b"application/json" or not accepts_json:
            return None
        if not self.json_response and not accepts_sse:
            return None  # the SDK answers 406: SSE responses are on and the client takes none
        if not length.isdigit() or int(length) > self.max_body:
            return None  # the SDK answers 413 (and anything odd about the length)
        era = version.decode("latin-1")
        routing = {"mcp-protocol-version": era}
        for name, key in _ROUTING:
            value = get(name)
            if value is not None:
                routing[key] = value.decode("latin-1")
        if era in MODERN_PROTOCOL_VERSIONS:
            return era, routing
        # Handshake era: stateless only (a session's requests are the SDK's).
        if self.stateless and era in HANDSHAKE_PROTOCOL_VERSIONS:
            return era, routing
        return None

    async def _serve(
        self, era: str, routing: dict[str, str], body: bytes, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Answer the request if it is a plain `tools/call` of a callable tool; False (nothing sent,
        nothing called) to leave it to the SDK."""
        if _SURROGATE.search(body):
            return False
        try:
            message = _decode(body.decode())
        except (ValueError, RecursionError):
            return False
        if type(message) is not dict or message.keys() != _ENVELOPE or message["jsonrpc"] != "2.0":
            return False
        request_id, params = message["id"], message["params"]
        if message["method"] != "tools/call" or not _jsonable_id(request_id) or type(params) is not dict:
            return False
        name, arguments, meta = params.get("name"), params.get("arguments", {}), params.get("_meta")
        if not params.keys() <= _PARAMS or type(name) is not str or type(arguments) is not dict:
            return False
        modern = era in MODERN_PROTOCOL_VERSIONS
        if modern:
            # The 2026 envelope; a client that can take URL elicitation may be answered with one.
            if type(meta) is not dict or not meta.keys() <= _MODERN_META:
                return False
            capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY)
            if type(capabilities) is not dict or "elicitation" in capabilities:
                return False
            if not isinstance(classify_inbound_request(message, headers=routing), InboundModernRoute):
                return False
        elif meta is not None:
            return False
        if not self._valid_params(era, params, meta):
            return False

        mcp = self.mcp
        snapshot = mcp.current()
        if mcp.is_meta_tool(name):
            return False
        state = scope.get("state", {})
        principal = state.get("principal")
        call = mcp.direct_call(
            snapshot, mcp.visible_to(principal, snapshot), name, arguments, principal, state.get("subject_token")
        )
        if call is None or (arguments and self._has_param_headers(call.tool.input_schema)):
            return False
        if logger.isEnabledFor(logging.DEBUG):
            # As the SDK's transport logs what it receives (payloads hidden unless `log_payloads`).
            logger.debug("fast path received: %s", body.decode())

        server = mcp.server
        request = Request(scope, receive)
        ctx: ServerRequestContext[Any, Any] = ServerRequestContext(
            session=None,  # type: ignore[arg-type]  # nothing on this path reads a session
            lifespan_context=None,
            protocol_version=era,
            method="tools/call",
            params=params,
            request_id=request_id,
            meta=meta,
            request=request,
        )

        async def invoke(ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
            return await mcp.handler(call)

        chain: Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]] = invoke
        for middleware in reversed(server.middleware):
            chain = _bind(middleware, chain)
        if not self.json_response:
            if modern:
                await self._exchange_streaming(chain, ctx, era, request_id, scope, receive, send)
            else:
                await self._exchange_handshake_sse(chain, ctx, era, request_id, receive, send)
            return True
        try:
            outcome: HandlerResult | Exception = await chain(ctx)
        except Exception as exc:  # mapped to the wire as each era's SDK path maps it
            outcome = exc
        await self._answer_json(era, request_id, outcome, scope, receive, send)
        return True

    async def _exchange_streaming(
        self,
        chain: Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]],
        ctx: ServerRequestContext[Any, Any],
        era: str,
        request_id: Any,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """2026-07-28 with SSE responses on, as the SDK's single-exchange SSE mode answers: the
        handler runs beside a watch for the client's disconnect (which cancels it); if it ends
        within the SDK's keepalive interval the answer is plain JSON, else the response commits to
        `text/event-stream` with a ping at once and at each interval, and the answer is its last
        event."""
        keepalive = _Keepalive(send)
        outcome = await _watched(chain, ctx, receive, keepalive, modern_http._SSE_PING_INTERVAL)
        if outcome is None:
            return  # the client went away: nobody to answer
        if not keepalive.committed:
            await self._answer_json(era, request_id, outcome, scope, receive, send)
            return
        await send(
            {"type": "http.response.body", "body": _logged(self._event(era, request_id, outcome)), "more_body": False}
        )

    async def _exchange_handshake_sse(
        self,
        chain: Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]],
        ctx: ServerRequestContext[Any, Any],
        era: str,
        request_id: Any,
        receive: Receive,
        send: Send,
    ) -> None:
        """2025-era stateless with SSE responses on, as the SDK writes it: the stream's headers at
        once, sse-starlette's keep-alive comment at each of its intervals while the call runs, the
        answer as one `message` event, and the end of the body. A client that leaves cancels the call."""
        await send({"type": "http.response.start", "status": 200, "headers": _HANDSHAKE_SSE_HEADERS})
        outcome = await _watched(chain, ctx, receive, _Pings(send), EventSourceResponse.DEFAULT_PING_INTERVAL)
        if outcome is None:
            return  # the client went away: nobody to answer
        await send(
            {
                "type": "http.response.body",
                "body": _logged(self._handshake_event(era, request_id, outcome)),
                "more_body": True,
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _handshake_event(self, era: str, request_id: Any, outcome: HandlerResult | Exception) -> bytes:
        """A handler's outcome as the handshake era's SSE event (the same JSON as its JSON mode)."""
        if not isinstance(outcome, Exception):
            try:
                return b"event: message\r\ndata: " + self._message(era, request_id, outcome) + b"\r\n\r\n"
            except _InvalidResult as invalid:
                outcome = invalid.error
        return b"event: message\r\ndata: " + _handshake_error(request_id, outcome) + b"\r\n\r\n"

    async def _answer_json(
        self, era: str, request_id: Any, outcome: HandlerResult | Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A handler's outcome as the JSON response each era's SDK path writes."""
        modern = era in MODERN_PROTOCOL_VERSIONS
        if isinstance(outcome, Exception):
            await _write_error(modern, request_id, outcome, scope, receive, send)
            return
        try:
            payload = self._message(era, request_id, outcome)
        except _InvalidResult as invalid:
            await _write_error(modern, request_id, invalid.error, scope, receive, send)
            return
        await _send_json(payload, modern, send)

    def _event(self, era: str, request_id: Any, outcome: HandlerResult | Exception) -> bytes:
        """A handler's outcome as the SSE event ending a committed stream (modern era)."""
        if not isinstance(outcome, Exception):
            try:
                return b"event: message\r\ndata: " + self._message(era, request_id, outcome) + b"\r\n\r\n"
            except _InvalidResult as invalid:
                outcome = invalid.error
        error = JSONRPCError(jsonrpc="2.0", id=request_id, error=modern_error_data(outcome))
        return modern_http._sse_event(error)

    def _message(self, era: str, request_id: Any, result: HandlerResult) -> bytes:
        """The JSON-RPC answer to `result`, as the SDK serializes it; _InvalidResult when the
        result fails the era's result schema."""
        modern = era in MODERN_PROTOCOL_VERSIONS
        try:
            # The SDK's per-version result sieve: what each era's CallToolResult carries, in its order.
            dumped = spec_methods.serialize_server_result(
                "tools/call", era, result.model_dump(by_alias=True, mode="json", exclude_none=True)
            )
        except ValidationError:
            logger.exception("handler for 'tools/call' returned an invalid result")
            raise _InvalidResult() from None
        if modern:
            if dumped.get("resultType") is None:
                dumped["resultType"] = "complete"
            meta_out = dumped.get("_meta")
            if meta_out is None or (isinstance(meta_out, dict) and meta_out.get(SERVER_INFO_META_KEY) is None):
                dumped["_meta"] = {**(meta_out or {}), SERVER_INFO_META_KEY: self._stamp}
            return _encode_ascii({"jsonrpc": "2.0", "id": request_id, "result": dumped}).encode()
        return _encode_utf8({"jsonrpc": "2.0", "id": request_id, "result": dumped}).encode()

    def _valid_params(self, era: str, params: dict[str, Any], meta: Any) -> bool:
        """The SDK's check of the params against the era's schema. Here they are a string `name`,
        an object of `arguments` and `_meta` (the schema types nothing inside `arguments`), so the
        verdict depends on the era and `_meta` alone: it is kept per (era, `_meta`'s JSON), which
        a client repeats on every call."""
        key = (era, "null" if meta is None else _encode_ascii(meta))
        valid = self._verdicts.get(key)
        if valid is None:
            try:
                spec_methods.validate_client_request("tools/call", era, params)
                valid = True
            except (KeyError, ValidationError):
                valid = False
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            self._verdicts[key] = valid
        return valid

    def _has_param_headers(self, schema: Mapping[str, Any]) -> bool:
        entry = self._annotated.get(id(schema))
        if entry is None or entry[0] is not schema:
            if len(self._annotated) > 4096:
                self._annotated.clear()
            entry = self._annotated[id(schema)] = (schema, bool(x_mcp_header_map(schema)))
        return entry[1]


_PING = b": ping\r\n\r\n"  # the SDK's SSE keepalive comment (2026-07-28)
# The handshake era's stateless SSE answer: the SDK's headers, then sse-starlette's.
_HANDSHAKE_SSE_HEADERS = [
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"content-type", b"text/event-stream"),
    (b"x-accel-buffering", b"no"),
]


async def _watched(
    chain: Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]],
    ctx: ServerRequestContext[Any, Any],
    receive: Receive,
    pings: _Pings,
    interval: float,
) -> HandlerResult | Exception | None:
    """The call's outcome (its exception included: the SDK maps it to the answer, as in JSON mode),
    or None when the client went away. The handler runs in this task (a task group per call cost
    about 0.1 ms at concurrency 1): one watcher task cancels it when the client disconnects, and a
    timer starts `pings` once `interval` passes with the call still running."""
    loop = asyncio.get_running_loop()
    outcome: HandlerResult | Exception | None = None
    with anyio.CancelScope() as handling:
        watcher = loop.create_task(_cancel_on_disconnect(receive, handling))
        timer = loop.call_later(interval, pings.start)
        try:
            outcome = await chain(ctx)
        except Exception as exc:
            outcome = exc
        finally:
            timer.cancel()
            watcher.cancel()
    await pings.stop()
    return None if handling.cancelled_caught else outcome


async def _cancel_on_disconnect(receive: Receive, handling: anyio.CancelScope) -> None:
    """Cancel the call when the client disconnects (the request's body is read already)."""
    while (await receive()).get("type") != "http.disconnect":
        pass
    handling.cancel()


class _Pings:
    """Keep-alive comments on a committed SSE stream, once started (the first interval passed
    with the call still running) and at each interval after, until stopped: sse-starlette's, as
    the handshake era's SDK path sends them."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        while True:
            ping = f": ping - {datetime.now(UTC)}\r\n\r\n".encode()  # as sse-starlette words it
            await self.send({"type": "http.response.body", "body": ping, "more_body": True})
            await asyncio.sleep(EventSourceResponse.DEFAULT_PING_INTERVAL)

    async def stop(self) -> None:
        """Stop pinging, once any send in progress is done."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # raises only if this task itself is cancelled
            if not self._task.cancelled():
                self._task.exception()  # a send that failed (the client gone): nothing to answer


class _Keepalive(_Pings):
    """2026-07-28: once started (the keepalive interval passed with the call still running) the
    response commits to `text/event-stream` and pings at once and at each interval, until stopped."""

    def __init__(self, send: Send) -> None:
        super().__init__(send)
        self.committed = False  # the SSE headers are sent: the answer must be an event

    async def _ping(self) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": modern_http._SSE_HEADERS})
        self.committed = True
        while True:
            await self.send({"type": "http.response.body", "body": _PING, "more_body": True})
            await asyncio.sleep(modern_http._SSE_PING_INTERVAL)


class _InvalidResult(Exception):
    """The handler's result failed the era's result schema (answered as the SDK does)."""

    def __init__(self) -> None:
        super().__init__("Handler returned an invalid result")
        self.error = MCPError(INTERNAL_ERROR, "Handler returned an invalid result")


def _bind(middleware: Any, call_next: Any) -> Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]]:
    """One server middleware around the rest of the chain (the SDK's composition)."""

    def run(ctx: ServerRequestContext[Any, Any]) -> Awaitable[HandlerResult]:
        return middleware(ctx, call_next)

    return run


async def _write_error(
    modern: bool, request_id: Any, exc: Exception, scope: Scope, receive: Receive, send: Send
) -> None:
    """A handler failure as the SDK's path writes it: 2026-07-28 by its single-exchange writer;
    handshake era as its dispatcher maps it (code 0 for an unexpected exception) in a 200."""
    if modern:
        await modern_http._write(
            JSONRPCError(jsonrpc="2.0", id=request_id, error=modern_error_data(exc)), scope, receive, send
        )
        return
    await _send_json(_handshake_error(request_id, exc), False, send)


def _handshake_error(request_id: Any, exc: Exception) -> bytes:
    """A handler failure as the handshake era's dispatcher maps it (code 0 for an unexpected exception)."""
    error = handler_exception_to_error_data(exc) or ErrorData(code=0, message=str(exc))
    return (
        JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
        .model_dump_json(by_alias=True, exclude_unset=True)
        .encode()
    )


def _logged(answer: bytes) -> bytes:
    """`answer`, logged at DEBUG first, as the SDK's path logs what it sends (payloads hidden
    unless `log_payloads`)."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("fast path sent: %s", answer.decode())
    return answer


async def _send_json(payload: bytes, modern: bool, send: Send) -> None:
    """A 200 JSON response, its headers in the order each era's SDK path sends them."""
    _logged(payload)
    length = (b"content-length", str(len(payload)).encode())
    headers = [length, _CONTENT_TYPE] if modern else [_CONTENT_TYPE, length]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that first gives back what was read, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
