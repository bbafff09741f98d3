"""The stateless tools/call fast path (server/fast_call.py) answers exactly as the SDK path does.

Two gateways over the same echo API, data dir and policies (access control on, a virtual server),
one with `server.fast_path` on and one with it off, get the same corpus of raw HTTP requests in
both protocol eras and both response modes (JSON and SSE): valid calls, unknown and denied
tools, bad arguments, upstream errors, oversized and malformed bodies, batches, odd ids and
params, wrong or missing headers. Status, the headers that carry meaning and the JSON bodies
must be the same, and the fast path must have served every request it is meant to (and nothing
else). A call outlasting the SDK's keepalive interval streams alike on both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server import _streamable_http_modern as modern_http
from sse_starlette import EventSourceResponse

from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, ServerConfig, ToolPick, VirtualServerConfig
from mcp_gateway.server.fast_call import FastToolCall
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway
from tests.test_access import cli, new_key

pytestmark = pytest.mark.anyio

LEGACY, MODERN = "2025-11-25", "2026-07-28"
MAX_BODY = 64 * 1024
ALLOWED = ("getItem", "plain", "getStatus", "createItem", "drift", "image", "big", "notJson", "slow")
CURATED = VirtualServerConfig(
    name="curated",
    tools=[ToolPick(api="echo", tool="getItem", rename="fetch_item"), ToolPick(api="echo", tool="plain")],
)
# Headers whose value the two paths must agree on (date and server are uvicorn's own).
COMPARED = (
    "content-type", "mcp-session-id", "allow", "www-authenticate", "cache-control", "connection", "x-accel-buffering",
)  # fmt: skip


def gateway_config(data_dir: Path, upstream: str, fast_path: bool, json_response: bool = True) -> GatewayConfig:
    return GatewayConfig(
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        auth=AuthConfig(enabled=True),
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
        servers=[CURATED],
        server=ServerConfig(json_response=json_response, fast_path=fast_path, max_request_bytes=MAX_BODY),
    )


@pytest.fixture
def alice(tmp_path: Path) -> str:
    cli(tmp_path, "consumers", "add", "alice")
    for tool in ALLOWED:
        cli(tmp_path, "policies", "add", "--consumer", "alice", "--allow", "--api", "echo", "--tool", tool)
    return new_key(tmp_path, "alice")


class Served(list[bool]):
    """Whether the fast path answered each request that reached it (True) or passed it on."""

    in_flight = 0  # requests in `_serve` now

    async def settled(self) -> None:
        """Until every request that reached the fast path has left it: with SSE responses on, the
        answer is sent before `_serve` returns (its task group still has to close)."""
        with anyio.fail_after(5):
            while self.in_flight:
                await anyio.sleep(0.005)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    seen = Served()
    original = FastToolCall._serve

    async def recording(self: FastToolCall, *args: Any) -> bool:
        seen.in_flight += 1
        try:
            answered = await original(self, *args)
        finally:
            seen.in_flight -= 1
        seen.append(answered)
        return answered

    monkeypatch.setattr(FastToolCall, "_serve", recording)
    return seen


@pytest.fixture
def gateways(tmp_path: Path, upstream: str, alice: str, mode: str) -> Iterator[tuple[str, str]]:
    """Base URLs of the gateway with the fast path on and of the one with it off (shared data dir)."""
    json_response = mode == "json"
    with (
        running_gateway(gateway_config(tmp_path, upstream, True, json_response)) as (fast, _),
        running_gateway(gateway_config(tmp_path, upstream, False, json_response)) as (slow, _),
    ):
        yield fast.removesuffix("/mcp"), slow.removesuffix("/mcp")


def envelope(era: str, **extra: Any) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": era,
        "io.modelcontextprotocol/clientInfo": {"name": "diff", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {**meta, **extra}


def call(era: str, name: str, arguments: Any = None, *, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    body_params: dict[str, Any] = {"name": name, **params}
    if arguments is not None:
        body_params["arguments"] = arguments
    if era == MODERN and "_meta" not in params:
        body_params["_meta"] = envelope(era)
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body_params}


def headers(era: str, key: str, name: str | None = "getItem", method: str = "tools/call") -> list[tuple[str, str]]:
    out = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", era),
        ("authorization", f"Bearer {key}"),
    ]
    if era == MODERN:
        out.append(("mcp-method", method))
        if name is not None:
            out.append(("mcp-name", name))
    return out


def corpus(era: str, key: str, mode: str = "json") -> list[tuple[str, str, list[tuple[str, str]], bytes, bool]]:
    """(label, path, headers, body, whether the fast path serves it), in either response mode."""

    def req(label: str, body: Any, *, name: str = "getItem", path: str = "/mcp", fast: bool = False, **kw: Any):
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return (label, path, kw.get("hdrs") or headers(era, key, name), raw, fast)

    items = [
        req("valid", call(era, "getItem", {"id": "1", "q": "x", "tags": ["a", "b"]}), fast=True),
        req("valid, string id", call(era, "getItem", {"id": "2"}, request_id="abc-1"), fast=True),
        req("valid, non-ASCII", call(era, "getItem", {"id": "é ✓ 中", "q": "naïve"}), fast=True),
        req("text result", call(era, "plain", {}), name="plain", fast=True),
        req("no arguments", call(era, "plain"), name="plain", fast=True),
        req("image result", call(era, "image", {}), name="image", fast=True),
        req("drifting result", call(era, "drift", {"shape": "array"}), name="drift", fast=True),
        req("not JSON upstream", call(era, "notJson", {}), name="notJson", fast=True),
        req("POST body", call(era, "createItem", {"name": "n", "price": 3}), name="createItem", fast=True),
        req("upstream 500", call(era, "getStatus", {"code": 500}), name="getStatus", fast=True),
        req("upstream 404", call(era, "getStatus", {"code": 404}), name="getStatus", fast=True),
        req("too large upstream", call(era, "big", {"size": 50_000_000}), name="big", fast=True),
        req("bad arguments", call(era, "getItem", {"id": "1", "limit": 1000, "bogus": 1}), fast=True),
        req("missing argument", call(era, "createItem", {"price": 3}), name="createItem", fast=True),
        req("virtual server", call(era, "fetch_item", {"id": "7"}), name="fetch_item", path="/mcp/curated", fast=True),
        req("traceparent", call(era, "getItem", {"id": "1"}), fast=True, hdrs=[*headers(era, key), TRACEPARENT]),
        req("unknown tool", call(era, "noSuchTool", {}), name="noSuchTool"),
        req("denied tool", call(era, "deleteItem", {"id": 1}), name="deleteItem"),
        req("outside the virtual server", call(era, "getStatus", {"code": 1}), name="getStatus", path="/mcp/curated"),
        req("arguments not an object", call(era, "getItem", ["1"])),
        req("name not a string", call(era, 5, {})),
        req("extra param", call(era, "getItem", {"id": "1"}, extra=1)),
        req("progress token", call(era, "getItem", {"id": "1"}, _meta={**envelope(era), "progressToken": 3})),
        req("bool id", call(era, "getItem", {"id": "1"}, request_id=True)),
        req("float id", call(era, "getItem", {"id": "1"}, request_id=1.5)),
        req("null id", call(era, "getItem", {"id": "1"}, request_id=None)),
        req("huge id", call(era, "getItem", {"id": "1"}, request_id=2**70)),
        req("no id (a notification)", {k: v for k, v in call(era, "getItem", {"id": "1"}).items() if k != "id"}),
        req("jsonrpc 1.0", {**call(era, "getItem", {"id": "1"}), "jsonrpc": "1.0"}),
        req("params not an object", {**call(era, "getItem"), "params": [1]}),
        req("tools/list", {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": call(era, "x")["params"]}),
        req("batch", [call(era, "getItem", {"id": "1"}), call(era, "plain", {})]),
        req("empty batch", []),
        req("not JSON", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {'),
        req("empty body", b""),
        req("JSON scalar", b"42"),
        req("NaN argument", json.dumps(call(era, "getItem", {"id": "1", "limit": float("nan")})).encode()),
        req("duplicate key", json.dumps(call(era, "getItem", {"id": "1"})).encode()[:-1] + b', "id": 9}', fast=True),
        req("lone surrogate", json.dumps(call(era, "getItem", {"id": "\ud800"})).encode()),
        req("not UTF-8", json.dumps(call(era, "getItem", {"id": "x"})).encode().replace(b'"x"', b'"\xff"')),
        req("oversized body", call(era, "getItem", {"id": "1", "q": "x" * MAX_BODY})),
    ]
    plain = headers(era, key)
    swap = lambda name, value: [(n, value if n == name else v) for n, v in plain]  # noqa: E731
    drop = lambda name: [(n, v) for n, v in plain if n != name]  # noqa: E731
    valid = call(era, "getItem", {"id": "1"})
    for label, hdrs in (
        ("text/plain content type", swap("content-type", "text/plain")),
        ("no content type", drop("content-type")),
        ("content type with charset", swap("content-type", "application/json; charset=utf-8")),
        ("SSE-only accept", swap("accept", "text/event-stream")),
        ("JSON-only accept", swap("accept", "application/json")),
        ("empty accept", swap("accept", "")),
        ("wildcard accept", swap("accept", "*/*")),
        ("unknown protocol version", swap("mcp-protocol-version", "1999-01-01")),
        ("no protocol version", drop("mcp-protocol-version")),
        ("session id", [*plain, ("mcp-session-id", "0123456789abcdef")]),
        ("duplicate protocol version", [*plain, ("mcp-protocol-version", era)]),
        ("Mcp-Param header", [*plain, ("mcp-param-id", "1")]),
        ("no credential", drop("authorization")),
        ("wrong credential", swap("authorization", "Bearer nope")),
        ("other era's version", swap("mcp-protocol-version", MODERN if era == LEGACY else LEGACY)),
    ):
        fast = label in ("content type with charset", "wildcard accept") or (
            label == "JSON-only accept" and mode == "json"  # SSE mode: the SDK answers 406
        )
        items.append(req(label, valid, fast=fast, hdrs=hdrs))
    if era == MODERN:
        items += [
            req("Mcp-Name mismatch", valid, name="plain"),
            req("no Mcp-Method", valid, hdrs=drop("mcp-method")),
            req("no envelope", call(era, "getItem", {"id": "1"}, _meta={})),
            req("envelope version mismatch", call(era, "getItem", {"id": "1"}, _meta=envelope(LEGACY))),
            req("bad capabilities", call(era, "getItem", {"id": "1"}, _meta=envelope(era, **{CAPS: {"roots": 5}}))),
            req("elicitation capable", call(era, "getItem", {"id": "1"}, _meta=envelope(era, **{CAPS: ELICIT}))),
            req("traceparent in _meta", call(era, "getItem", {"id": "1"}, _meta=envelope(era, **TRACE_META))),
        ]
    else:
        items.append(req("traceparent in _meta", call(era, "getItem", {"id": "1"}, _meta=TRACE_META)))
    return items


TRACEPARENT = ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
TRACE_META = {"traceparent": TRACEPARENT[1]}
CAPS = "io.modelcontextprotocol/clientCapabilities"
ELICIT = {"elicitation": {"url": {}}}


def comparable(response: httpx2.Response) -> dict[str, Any]:
    kept = {name: response.headers.get_list(name) for name in COMPARED}
    body: Any = response.content
    if response.headers.get("content-type", "").startswith("application/json") and body:
        body = json.loads(body)
    return {"status": response.status_code, "headers": kept, "body": body}


@pytest.mark.parametrize(("mode", "era"), [("json", LEGACY), ("json", MODERN), ("sse", LEGACY), ("sse", MODERN)])
async def test_fast_path_answers_as_the_sdk_does(
    gateways: tuple[str, str], alice: str, served: Served, mode: str, era: str
) -> None:
    fast, slow = gateways
    async with httpx2.AsyncClient(timeout=30) as client:
        expected_fast = 0
        for label, path, hdrs, body, fast_served in corpus(era, alice, mode):
            before = served.count(True)
            answers = [comparable(await client.post(base + path, headers=hdrs, content=body)) for base in (fast, slow)]
            assert answers[0] == answers[1], label
            await served.settled()
            assert served.count(True) - before == fast_served, f"{label}: fast path served {not fast_served}"
            expected_fast += fast_served
        # The same for other methods than POST: they never reach the fast path.
        # (GET is left out: in the handshake era it opens a stream that stays open.)
        for method in ("DELETE", "PUT"):
            answers = [
                comparable(await client.request(method, base + "/mcp", headers=headers(era, alice)))
                for base in (fast, slow)
            ]
            assert answers[0] == answers[1], method
    assert served.count(True) == expected_fast
    assert expected_fast > 10


async def slow_call_on_both_paths(
    tmp_path: Path, upstream: str, key: str, served: Served, era: str
) -> list[httpx2.Response]:
    """A 0.7 s call with SSE responses on, answered by the fast path and then by the SDK's."""
    body = json.dumps(call(era, "slow", {"seconds": 0.7})).encode()
    with (
        running_gateway(gateway_config(tmp_path, upstream, True, json_response=False)) as (fast, _),
        running_gateway(gateway_config(tmp_path, upstream, False, json_response=False)) as (slow, _),
    ):
        answers = []
        async with httpx2.AsyncClient(timeout=30) as client:
            for url in (fast, slow):
                answers.append(await client.post(url, headers=headers(era, key, "slow"), content=body))
            await served.settled()
    assert served == [True]
    return answers


async def test_a_call_outlasting_the_keepalive_interval_streams_as_the_sdk_does(
    tmp_path: Path, upstream: str, alice: str, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSE responses, 2026-07-28: a call still running after the SDK's keepalive interval commits
    # the response to text/event-stream, pings at once and at each interval, and ends with the
    # answer as an SSE event. Both paths, with the interval shortened (the SDK reads it per call).
    monkeypatch.setattr(modern_http, "_SSE_PING_INTERVAL", 0.2)
    answers = await slow_call_on_both_paths(tmp_path, upstream, alice, served, MODERN)
    for response in answers:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache, no-transform"
    events = [r.content.split(b"\r\n\r\n") for r in answers]
    pings = [sum(1 for e in ev if e == b": ping") for ev in events]
    assert all(2 <= n <= 4 for n in pings), pings  # at once, then every 0.2 s of the 0.7 s call
    last = [next(e for e in ev if e.startswith(b"event: message")) for ev in events]
    assert last[0] == last[1]
    message = json.loads(last[0].split(b"data: ", 1)[1])
    assert message["id"] == 1 and message["result"]["isError"] is False


async def test_a_handshake_era_call_outlasting_the_ping_interval_pings_as_the_sdk_does(
    tmp_path: Path, upstream: str, alice: str, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSE responses, 2025-11-25 stateless: the stream starts at once, sse-starlette's keep-alive
    # comment comes at each interval while the call runs, the answer is the one event. Both paths,
    # the interval shortened (sse-starlette reads it per response). A ping carries its time: counted.
    monkeypatch.setattr(EventSourceResponse, "DEFAULT_PING_INTERVAL", 0.2)
    answers = await slow_call_on_both_paths(tmp_path, upstream, alice, served, LEGACY)
    assert comparable(answers[0])["headers"] == comparable(answers[1])["headers"]
    events = [r.content.split(b"\r\n\r\n") for r in answers]
    pings = [sum(1 for e in ev if e.startswith(b": ping - ")) for ev in events]
    assert all(2 <= n <= 4 for n in pings), pings  # every 0.2 s of the 0.7 s call
    last = [[e for e in ev if not e.startswith(b": ping - ")] for ev in events]
    assert last[0] == last[1] and last[0][0].startswith(b"event: message\r\ndata: ")
    assert json.loads(last[0][0].split(b"data: ", 1)[1])["result"]["isError"] is False


@pytest.mark.parametrize("era", [MODERN, LEGACY])
async def test_a_client_leaving_mid_call_ends_the_upstream_request_on_both_paths(
    tmp_path: Path, alice: str, served: Served, era: str
) -> None:
    # SSE responses on (the default), both eras: the upstream takes the request and never
    # answers; the client closes its connection once the upstream has the request. Both paths
    # must then let go of the upstream connection (the call is cancelled), not hold it until the
    # call's timeout. (With JSON responses neither does: the SDK's JSON mode reads no disconnect,
    # and the fast path answers as it does.)
    seen: list[anyio.Event] = []
    closed: list[anyio.Event] = []

    async def silent_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen[-1].set()
        await reader.read()  # b"" once the gateway closes the connection
        closed[-1].set()
        writer.close()

    server = await asyncio.start_server(silent_upstream, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api"
    body = json.dumps(call(era, "slow", {"seconds": 30})).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers(era, alice, "slow"))
    try:
        for fast_path in (True, False):
            seen.append(anyio.Event())
            closed.append(anyio.Event())
            config = gateway_config(tmp_path, base, fast_path, json_response=False)
            with running_gateway(config) as (url, _):
                port = int(url.split(":")[2].split("/")[0])
                async with await anyio.connect_tcp("127.0.0.1", port) as client:
                    request = (
                        f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{head}content-length: {len(body)}\r\n\r\n"
                    )
                    await client.send(request.encode() + body)
                    with anyio.fail_after(10):
                        await seen[-1].wait()
                # The client is gone; the upstream connection must follow within moments.
                with anyio.move_on_after(5):
                    await closed[-1].wait()
                assert closed[-1].is_set(), f"fast_path={fast_path}: the upstream request outlived its client"
                await served.settled()
    finally:
        server.close()
    assert served == [True]  # the fast path took the call (and had nobody to answer)
