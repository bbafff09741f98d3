"""End to end through a real gateway: the official `mcp` client over Streamable HTTP -> gateway -> echo upstream.

Everything asserted here is what the upstream actually received on the wire (raw path, query,
header lines, body bytes) or what the MCP client actually got back.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway.config import ApiConfig, GatewayConfig, ServerConfig
from mcp_gateway.definitions import ParamPlan
from mcp_gateway.gateway import Gateway
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.pipeline import Call
from mcp_gateway.upstream.client import ClientSettings
from mcp_gateway.upstream.rest import RestUpstream
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, GatewayFactory, running_gateway
from tests.results import text_of
from tests.servers import free_port, serve_in_thread
from tests.upstream import PNG_1PX
from tests.upstream import create_app as create_upstream

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]
LEGACY = "legacy"


# --------------------------------------------------------------------------- helpers


async def echo_call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool of the echo upstream; return what the upstream received."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    echo = json.loads(text_of(result))
    if result.structured_content is not None:
        assert result.structured_content == echo
    return echo


def root_of(upstream: str) -> str:
    return upstream.rsplit("/api", 1)[0]


async def upstream_paths(upstream: str) -> list[str]:
    """Raw paths of every request the echo upstream has received so far (session-wide)."""
    async with httpx2.AsyncClient() as http:
        response = await http.get(root_of(upstream) + "/__requests")
    response.raise_for_status()
    return response.json()["paths"]


def header_lines(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["raw_headers"] if k.lower() == name.lower()]


def echo_config(tmp_path: Path, upstream: str, *extra: ApiConfig, **server: Any) -> GatewayConfig:
    return GatewayConfig(
        data_dir=tmp_path / "data",
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream), *extra],
        admin_token=ADMIN_TOKEN,
        server=ServerConfig(**server),
    )


@contextmanager
def resetting_server() -> Iterator[int]:
    """A raw TCP server that accepts each connection and aborts it at once (SO_LINGER 0: RST)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@asynccontextmanager
async def client_with_headers(url: str, mode: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """An MCP client whose every HTTP request carries `headers`."""
    timeout = httpx2.Timeout(30, read=300)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


# --------------------------------------------------------------------------- 1. parameter styles


@pytest.mark.parametrize("mode", ERAS)
async def test_query_header_and_cookie_styles(gateway_url: str, mode: str) -> None:
    async with Client(gateway_url, mode=mode) as client:
        echo = await echo_call(
            client,
            "getItem",
            {
                "id": "42",
                "q": "a b&c=d",
                "tags": ["t1", "t 2"],
                "ids": [1, 2, 3],
                "space": ["a", "b c"],
                "pipe": ["x", "y|z"],
                "filter": {"color": "red", "size": 3},
                "limit": 7,
                "raw": "a/b?c:d@e!$'()*,;[]&=#+% f",
                "X-Trace-Id": "trace-123",
                "session": "s 1;x=y",
            },
        )
    assert echo["method"] == "GET"
    assert echo["path"] == "/api/items/42"
    assert echo["query"].split("&") == [
        "q=a%20b%26c%3Dd",  # form, explode: true, fully encoded
        "tags=t1",
        "tags=t%202",
        "ids=1,2,3",  # form, explode: false
        "space=a%20b%20c",  # spaceDelimited (an item's own blank is encoded the same way: the spec's caveat)
        "pipe=x%7Cy%7Cz",  # pipeDelimited
        "filter[color]=red",  # deepObject
        "filter[size]=3",
        "limit=7",
        # allowReserved keeps reserved characters, except those that would split or end the query
        "raw=a/b?c:d@e!$'()*,;[]%26%3D%23%2B%25%20f",
    ]
    assert header_lines(echo, "X-Trace-Id") == ["trace-123"]
    assert header_lines(echo, "Cookie") == ["session=s%201%3Bx%3Dy"]
    assert header_lines(echo, "Accept") == ["application/json"]


async def test_path_styles(gateway_url: str) -> None:
    async with Client(gateway_url, mode=LEGACY) as client:
        simple = await echo_call(client, "getItem", {"id": "a b/c;d"})
        label = await echo_call(client, "labelColor", {"color": ["red", "green blue"]})
        matrix = await echo_call(client, "matrixPoint", {"point": {"x": 1, "y": 2}})
        mixed = await echo_call(
            client, "pathStyles", {"arr": ["a", "b,c"], "obj": {"x": 1, "y": "v w"}, "mat": ["p", "q"]}
        )
    assert simple["path"] == "/api/items/a%20b%2Fc%3Bd"
    assert label["path"] == "/api/label/.red,green%20blue"  # label, explode: false
    assert matrix["path"] == "/api/matrix/;x=1;y=2"  # matrix, explode: true (object)
    # simple array; label exploded object; matrix array, explode: false
    assert mixed["path"] == "/api/styles/a,b%2Cc/.x=1.y=v%20w;mat=p,q"


async def test_content_declared_parameters(gateway_url: str) -> None:
    async with Client(gateway_url, mode=LEGACY) as client:
        echo = await echo_call(client, "contentParam", {"where": {"a": 1, "b": "x y"}, "X-Meta": {"k": "é"}})
    assert echo["query"] == "where=" + "%7B%22a%22%3A1%2C%22b%22%3A%22x%20y%22%7D"
    assert json.loads(unquote(echo["query"].split("=", 1)[1])) == {"a": 1, "b": "x y"}
    # Header values must be ASCII: the JSON text is sent with \u escapes.
    assert header_lines(echo, "X-Meta") == ['{"k":"\\u00e9"}']


# --------------------------------------------------------------------------- 2. bodies


@pytest.mark.parametrize("mode", ERAS)
async def test_json_spread_body(gateway_url: str, mode: str, upstream: str) -> None:
    async with Client(gateway_url, mode=mode) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "createItem")
        assert "id" not in tool.input_schema["properties"]  # readOnly
        assert "secret" in tool.input_schema["properties"]  # writeOnly
        echo = await echo_call(client, "createItem", {"name": "pen", "price": 1.5, "tags": ["a"], "secret": "s3"})
        assert echo["method"] == "POST"
        assert echo["path"] == "/api/items"
        assert header_lines(echo, "Content-Type") == ["application/json"]
        assert json.loads(echo["body"]) == {"name": "pen", "price": 1.5, "tags": ["a"], "secret": "s3"}

        before = await upstream_paths(upstream)
        refused = await client.call_tool("createItem", {"name": "pen", "id": 5})
        assert refused.is_error and "id" in text_of(refused)
        assert await upstream_paths(upstream) == before


async def test_non_object_json_body(gateway_url: str, upstream: str) -> None:
    tree = [{"value": 1, "children": [{"value": 2, "children": [{"value": 3, "children": []}]}]}, {"value": 4}]
    async with Client(gateway_url, mode=LEGACY) as client:
        echo = await echo_call(client, "postTree", {"body": tree})
        assert echo["body"] == json.dumps(tree, separators=(",", ":"))
        assert header_lines(echo, "Content-Type") == ["application/json"]
        before = await upstream_paths(upstream)
        # The recursive schema is enforced at depth.
        deep_bad = [{"value": 1, "children": [{"value": 2, "children": [{"value": "three"}]}]}]
        refused = await client.call_tool("postTree", {"body": deep_bad})
        assert refused.is_error and "three" in text_of(refused)
        assert await upstream_paths(upstream) == before


async def test_form_urlencoded_body(gateway_url: str) -> None:
    async with Client(gateway_url, mode=LEGACY) as client:
        echo = await echo_call(client, "submitForm", {"name": "a b&c", "colors": ["red", "green"], "meta": {"a": 1}})
    assert header_lines(echo, "Content-Type") == ["application/x-www-form-urlencoded"]
    raw = base64.b64decode(echo["body_b64"]).decode()
    assert raw == "name=a%20b%26c&colors=red&colors=green&meta=%7B%22a%22%3A1%7D"
    assert echo["form"] == {"name": ["a b&c"], "colors": ["red", "green"], "meta": ['{"a":1}']}


@pytest.mark.parametrize("mode", ERAS)
async def test_multipart_upload(gateway_url: str, mode: str) -> None:
    data = b"\x00\x01hello\xff"
    b64 = base64.b64encode(data).decode()
    async with Client(gateway_url, mode=mode) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "uploadFile")
        assert {"id", "name", "body_name", "file"} <= set(tool.input_schema["properties"])
        as_base64 = await echo_call(
            client, "uploadFile", {"id": "u1", "name": "query-name", "body_name": "part", "file": b64}
        )
        as_data_url = await echo_call(client, "uploadFile", {"id": "u2", "file": f"data:image/png;base64,{b64}"})
    assert as_base64["path"] == "/api/upload/u1"
    assert as_base64["query"] == "name=query-name"  # the query parameter keeps its name...
    assert header_lines(as_base64, "Content-Type")[0].startswith("multipart/form-data; boundary=")
    assert as_base64["form"] == {  # ...and the clashing body property is sent under its wire name
        "name": ["part"],
        "file": [f"file:file:application/octet-stream:{b64}"],
    }
    assert as_data_url["query"] == ""
    assert as_data_url["form"] == {"file": [f"file:file:image/png:{b64}"]}


async def test_text_and_octet_stream_bodies(gateway_url: str) -> None:
    raw = bytes(range(256))
    async with Client(gateway_url, mode=LEGACY) as client:
        note = await echo_call(client, "postNote", {"body": "héllo\nworld"})
        put = await echo_call(client, "putRaw", {"body": base64.b64encode(raw).decode()})
        url_safe = await echo_call(client, "putRaw", {"body": base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    assert header_lines(note, "Content-Type") == ["text/plain"]
    assert base64.b64decode(note["body_b64"]) == "héllo\nworld".encode()
    assert put["method"] == "PUT"
    assert header_lines(put, "Content-Type") == ["application/octet-stream"]
    assert base64.b64decode(put["body_b64"]) == raw
    assert base64.b64decode(url_safe["body_b64"]) == raw


# --------------------------------------------------------------------------- 3. results


async def test_result_kinds(gateway_url: str) -> None:
    async with Client(gateway_url, mode=LEGACY) as client:
        plain = await client.call_tool("plain", {})
        assert not plain.is_error and text_of(plain) == "just text"

        image = await client.call_tool("image", {})
        assert not image.is_error
        images = [c for c in image.content if isinstance(c, types.ImageContent)]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data) == PNG_1PX

        pdf = await client.call_tool("binary", {})
        assert not pdf.is_error
        resources = [c for c in pdf.content if isinstance(c, types.EmbeddedResource)]
        assert len(resources) == 1
        blob = resources[0].resource
        assert isinstance(blob, types.BlobResourceContents) and blob.mime_type == "application/pdf"
        assert base64.b64decode(blob.blob) == b"%PDF-1.4 fake"

        empty = await client.call_tool("emptyDelete", {})
        assert not empty.is_error and "204" in text_of(empty)

        not_json = await client.call_tool("notJson", {})
        assert not not_json.is_error and text_of(not_json) == "<html>oops</html>"


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("code", [404, 500])
async def test_http_error_is_a_trimmed_tool_error(gateway_url: str, mode: str, code: int) -> None:
    async with Client(gateway_url, mode=mode) as client:
        result = await client.call_tool("getStatus", {"code": code})
    assert result.is_error
    text = text_of(result)
    assert f"HTTP {code}" in text and f"status {code} as requested" in text
    assert len(text) < 2100  # the upstream sent a 5000-character detail


async def test_oversized_response_is_refused(gateway_factory: GatewayFactory) -> None:
    with gateway_factory(api={"max_response_bytes": 1000}) as (url, _):
        async with Client(url, mode=LEGACY) as client:
            small = await client.call_tool("big", {"size": 1000})
            assert not small.is_error and text_of(small) == "a" * 1000
            declared = await client.call_tool("big", {"size": 5000})  # Content-Length says too much
            chunked = await client.call_tool("bigStream", {"size": 5000})  # no Content-Length: counted
    for result in (declared, chunked):
        assert result.is_error
        assert "too large" in text_of(result) and "1000" in text_of(result)
        assert "aaaa" not in text_of(result)


async def test_timeout_is_a_tool_error_and_the_client_is_not_hung(gateway_factory: GatewayFactory) -> None:
    with gateway_factory(api={"timeout": 0.5}) as (url, _):
        async with Client(url, mode=LEGACY) as client:
            started = time.monotonic()
            with anyio.fail_after(5):
                slow = await client.call_tool("slow", {"seconds": 3})
            assert slow.is_error and "timeout" in text_of(slow) and "127.0.0.1" in text_of(slow)
            assert time.monotonic() - started < 2.5
            with anyio.fail_after(5):
                after = await client.call_tool("plain", {})  # the session still works
            assert not after.is_error


async def test_trickling_response_hits_the_call_timeout(gateway_factory: GatewayFactory) -> None:
    """`timeout` bounds the whole call: a byte every 0.2 s never trips a per-read timeout."""
    with gateway_factory(api={"timeout": 0.5}) as (url, _):
        async with Client(url, mode=LEGACY) as client:
            started = time.monotonic()
            with anyio.fail_after(5):
                result = await client.call_tool("drip", {"count": 20, "interval": 0.2})
    assert result.is_error and "did not finish answering within 0.5s" in text_of(result)
    assert time.monotonic() - started < 2.5


async def test_connection_reset_and_refused(tmp_path: Path, upstream: str) -> None:
    with resetting_server() as port:
        closed = free_port()
        config = echo_config(
            tmp_path,
            upstream,
            ApiConfig(name="reset", spec=str(ECHO_SPEC), base_url=f"http://127.0.0.1:{port}/api", prefix="reset"),
            ApiConfig(name="refused", spec=str(ECHO_SPEC), base_url=f"http://127.0.0.1:{closed}/api", prefix="gone"),
        )
        with running_gateway(config) as (url, _):
            async with Client(url, mode=LEGACY) as client:
                with anyio.fail_after(10):
                    reset = await client.call_tool("reset_plain", {})
                    refused = await client.call_tool("gone_plain", {})
                    healthy = await client.call_tool("plain", {})
    assert reset.is_error and "connection reset by 127.0.0.1" in text_of(reset)
    assert refused.is_error and f"connection refused by 127.0.0.1:{closed}" in text_of(refused)
    assert not healthy.is_error


async def test_redirects(gateway_url: str, upstream: str) -> None:
    root = root_of(upstream)
    port = root.rsplit(":", 1)[1]
    async with Client(gateway_url, mode=LEGACY) as client:
        inside = await client.call_tool("redirect", {"to": "inside"})
        assert not inside.is_error and text_of(inside) == "just text"
        followed = await client.call_tool("redirectTo", {"location": f"{root}/api/plain"})
        assert not followed.is_error and text_of(followed) == "just text"

        outside = await client.call_tool("redirect", {"to": "outside"})
        assert outside.is_error and "outside the API's base URL" in text_of(outside)

        before = await upstream_paths(upstream)
        for location in (
            "/secret",
            "/api/../secret",
            f"{root}/api/../secret",
            f"{root}/api/%2e%2e/secret",
            f"{root}/api/%2E%2E",
            f"{root}/apix",
            f"http://localhost:{port}/api/plain",
            f"https://127.0.0.1:{port}/api/plain",
            "//evil.example/api/plain",
            f"http://user@127.0.0.1:{port}/api/plain",
        ):
            result = await client.call_tool("redirectTo", {"location": location})
            assert result.is_error, (location, text_of(result))
            assert "outside the API's base URL" in text_of(result)
        after = await upstream_paths(upstream)
    # Only the redirecting endpoint itself was hit, never the target.
    assert {p.split("?")[0] for p in after[len(before) :]} == {"/api/redirect-to"}


async def test_a_user_agent_parameter_replaces_the_gateways_own(tmp_path: Path, upstream: str) -> None:
    """A spec may declare User-Agent as a header parameter (some APIs ask callers to name
    themselves): then it is the one User-Agent line sent, not a second one."""
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "openapi: 3.1.0\ninfo: {title: a, version: '1'}\npaths:\n  /agent:\n    get:\n      operationId: named\n"
        "      parameters: [{name: User-Agent, in: header, schema: {type: string}}]\n"
        "      responses: {'200': {description: ok}}\n"
    )
    config = GatewayConfig(data_dir=tmp_path / "data", apis=[ApiConfig(name="a", spec=str(spec), base_url=upstream)])
    with running_gateway(config) as (url, _):
        async with Client(url) as client:
            named = await echo_call(client, "named", {"User-Agent": "acme-bot/2.0"})
            unnamed = await echo_call(client, "named", {})
    assert header_lines(named, "User-Agent") == ["acme-bot/2.0"]
    assert header_lines(unnamed, "User-Agent") == ["mcp-gateway/0.1"]


# --------------------------------------------------------------------------- 4. security


@pytest.mark.parametrize("mode", ERAS)
async def test_inbound_headers_never_reach_the_upstream(gateway_factory: GatewayFactory, mode: str) -> None:
    secret = "s3cret-token-value"
    inbound = {
        "Authorization": f"Bearer {secret}",
        "Cookie": f"sid={secret}; other=1",
        "X-Custom": secret,
        "X-Forwarded-For": "10.0.0.1",
        "Mcp-Extra": secret,
        "User-Agent": f"evil-agent {secret}",
    }
    with gateway_factory(server={"stateless": False}) as (url, _):
        async with client_with_headers(url, mode, inbound) as client:
            echo = await echo_call(client, "getItem", {"id": "1"})
            with_cookie_param = await echo_call(client, "getItem", {"id": "1", "session": "mine"})
    names = {k.lower() for k, _ in echo["raw_headers"]}
    # No Accept-Encoding either: the response-size cap holds only for identity bodies. Trace
    # context is the gateway's own (present when a tracer is active in this process).
    assert names <= {"host", "accept", "connection", "user-agent", "traceparent", "tracestate"}, names
    assert secret not in repr(echo["raw_headers"])
    assert not any(n.startswith("mcp-") for n in names)
    assert secret not in json.dumps(echo) and "10.0.0.1" not in json.dumps(echo)
    assert header_lines(echo, "User-Agent")[0].startswith("mcp-gateway")
    # A cookie parameter makes exactly one Cookie header, holding only that parameter.
    assert header_lines(with_cookie_param, "Cookie") == ["session=mine"]
    assert secret not in json.dumps(with_cookie_param)


async def test_authorization_header_parameter_is_ignored(gateway_url: str, upstream: str) -> None:
    async with Client(gateway_url, mode=LEGACY) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "getItem")
        assert not any(p.lower() == "authorization" for p in tool.input_schema["properties"])
        before = await upstream_paths(upstream)
        for name in ("Authorization", "authorization"):
            result = await client.call_tool("getItem", {"id": "1", name: "Bearer stolen"})
            assert result.is_error and name in text_of(result)
        assert await upstream_paths(upstream) == before


TRAVERSALS = [
    "../admin",
    "..%2fadmin",
    "%2e%2e",
    "%2E%2E/x",
    "a/../../x",
    "..\\..\\x",
    "..;/x",
    "?x=1",
    "#frag",
    "a b",
    "...",
    "é/ü",
    "//evil.example",
    "http://evil.example/",
]


@pytest.mark.parametrize("mode", ERAS)
async def test_path_values_never_change_the_path(gateway_url: str, upstream: str, mode: str) -> None:
    before = await upstream_paths(upstream)
    async with Client(gateway_url, mode=mode) as client:
        for value in TRAVERSALS:
            echo = await echo_call(client, "getItem", {"id": value})
            prefix, _, segment = echo["path"].rpartition("/")
            assert prefix == "/api/items", (value, echo["path"])
            assert unquote(segment) == value
            assert echo["query"] == ""
        for value in ("..", ".", ""):
            refused = await client.call_tool("getItem", {"id": value})
            assert refused.is_error, value
        for args in ({"arr": [".."], "obj": {"x": 1}, "mat": ["p"]}, {"arr": ["."], "obj": {"x": 1}, "mat": ["p"]}):
            refused = await client.call_tool("pathStyles", args)
            assert refused.is_error, args
        smuggled = await echo_call(client, "getItem", {"id": "1", "q": "x&admin=1#f", "tags": ["a=b&c"]})
        assert smuggled["query"] == "q=x%26admin%3D1%23f&tags=a%3Db%26c"
    hits = (await upstream_paths(upstream))[len(before) :]
    assert len(hits) == len(TRAVERSALS) + 1
    assert all(p.startswith("/api/items/") and p.count("/") == 3 for p in hits), hits


async def test_invalid_arguments_never_call_the_upstream(gateway_url: str, upstream: str) -> None:
    invalid: list[tuple[str, dict[str, Any]]] = [
        ("getItem", {}),
        ("getItem", {"id": "1", "limit": 0}),
        ("getItem", {"id": "1", "limit": "5"}),
        ("getItem", {"id": "1", "bogus": True}),
        ("getItem", {"id": 7}),
        ("getItem", {"id": "1", "tags": "not-a-list"}),
        ("getItem", {"id": "1", "filter": {"size": "big"}}),
        ("getItem", {"id": "1", "X-Trace-Id": "a\r\nX-Injected: 1"}),
        ("getItem", {"id": "1", "session": None}),
        ("createItem", {"price": 3}),
        ("createItem", {"name": ""}),
        ("createItem", {"name": "x", "price": 0}),
        ("postTree", {"body": {"value": 1}}),
        ("putRaw", {"body": "not base64 !!"}),
        ("uploadFile", {"id": "1", "file": "data:no-comma"}),
        ("uploadFile", {"id": "1", "file": "data:bad type;base64,AAAA"}),
        ("uploadFile", {"id": "1"}),
        ("matrixPoint", {"point": {}}),
        ("labelColor", {"color": []}),
        ("deleteItem", {"id": "one"}),
        ("getStatus", {"code": 1.5}),
    ]
    async with Client(gateway_url, mode=LEGACY) as client:
        before = await upstream_paths(upstream)
        for tool, args in invalid:
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, args, result.content)
        assert await upstream_paths(upstream) == before


# --------------------------------------------------------------------------- 5. admin API


def admin_url(mcp_url: str) -> str:
    return mcp_url.rsplit("/mcp", 1)[0] + "/admin"


def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BROKEN_SPEC = "openapi: 3.1.0\ninfo: {title: broken, version: '1'}\npaths: 5\n"


async def test_admin_requires_the_token(gateway_url: str) -> None:
    admin = admin_url(gateway_url)
    async with httpx2.AsyncClient() as http:
        for headers in ({}, auth("wrong"), {"Authorization": ADMIN_TOKEN}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
            for method, path in (("GET", "/apis"), ("GET", "/apis/echo"), ("PUT", "/apis/x"), ("DELETE", "/apis/x")):
                response = await http.request(method, admin + path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"].startswith("Bearer")
            response = await http.post(admin + "/validate", headers=headers, json={})
            assert response.status_code == 401


async def test_admin_lifecycle(gateway_url: str, upstream: str, tmp_path: Path) -> None:
    admin = admin_url(gateway_url)
    spec_text = ECHO_SPEC.read_text()
    async with httpx2.AsyncClient(headers=auth()) as http, Client(gateway_url, mode=LEGACY) as client:
        # validate: tool names, nothing registered
        checked = await http.post(admin + "/validate", json={"spec_content": spec_text, "prefix": "v"})
        assert checked.status_code == 200, checked.text
        assert "v_getItem" in checked.json()["tools"]
        names = [a["name"] for a in (await http.get(admin + "/apis")).json()["apis"]]
        assert names == ["echo"]

        # register from content, then from a path
        created = await http.put(
            admin + "/apis/second", json={"spec_content": spec_text, "prefix": "second", "base_url": upstream}
        )
        assert created.status_code == 201, created.text
        assert created.json()["tool_count"] == len(checked.json()["tools"])
        by_path = await http.put(
            admin + "/apis/third", json={"spec": str(ECHO_SPEC), "prefix": "third", "base_url": upstream}
        )
        assert by_path.status_code == 201, by_path.text
        # POST creates and never replaces: a name in use is a 409 that leaves it as it was.
        posted = await http.post(admin + "/apis", json={"name": "fourth", "spec_content": spec_text, "prefix": "iv"})
        assert posted.status_code == 201, posted.text
        clash = await http.post(admin + "/apis", json={"name": "third", "spec_content": spec_text, "prefix": "x"})
        assert clash.status_code == 409 and "PUT /admin/apis/third" in clash.text
        assert (await http.delete(admin + "/apis/fourth")).status_code == 204

        listed = (await http.get(admin + "/apis")).json()
        assert [a["name"] for a in listed["apis"]] == ["echo", "second", "third"]
        shown = await http.get(admin + "/apis/second")
        assert shown.status_code == 200 and "second_getItem" in shown.json()["tools"]

        tools = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert {"second_getItem", "third_getItem", "getItem"} <= tools
        echo = await echo_call(client, "third_getItem", {"id": "via-third"})
        assert echo["path"] == "/api/items/via-third"

        # replace: 200, and the new configuration is served
        replaced = await http.put(
            admin + "/apis/second",
            json={"spec_content": spec_text, "prefix": "renamed", "base_url": upstream, "filter": {"methods": ["get"]}},
        )
        assert replaced.status_code == 200, replaced.text
        tools = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert "renamed_getItem" in tools and "second_getItem" not in tools and "renamed_createItem" not in tools

        # delete: 204, then 404
        assert (await http.delete(admin + "/apis/second")).status_code == 204
        assert (await http.get(admin + "/apis/second")).status_code == 404
        assert (await http.delete(admin + "/apis/second")).status_code == 404
        tools = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert not any(t.startswith("renamed_") for t in tools)

        # POST to the collection takes the name from the body
        posted = await http.post(
            admin + "/apis", json={"name": "fourth", "spec": str(ECHO_SPEC), "prefix": "fourth", "base_url": upstream}
        )
        assert posted.status_code == 201, posted.text
        assert (await http.get(admin + "/apis/fourth")).json()["name"] == "fourth"
        mismatch = await http.put(admin + "/apis/fifth", json={"name": "other", "spec": str(ECHO_SPEC)})
        assert mismatch.status_code == 400

        # the config-file API cannot be changed through the admin API
        assert (await http.delete(admin + "/apis/echo")).status_code == 409
        assert (await http.put(admin + "/apis/echo", json={"spec": str(ECHO_SPEC)})).status_code == 409


async def test_admin_broken_spec_is_reported_and_others_keep_serving(gateway_url: str, tmp_path: Path) -> None:
    admin = admin_url(gateway_url)
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_SPEC)
    async with httpx2.AsyncClient(headers=auth()) as http:
        from_content = await http.put(admin + "/apis/bad", json={"spec_content": BROKEN_SPEC})
        assert from_content.status_code == 422
        assert "#/paths" in from_content.json()["error"]
        from_path = await http.put(admin + "/apis/bad", json={"spec": str(broken)})
        assert from_path.status_code == 422
        assert f"{broken}#/paths" in from_path.json()["error"]
        validated = await http.post(admin + "/validate", json={"spec": str(broken)})
        assert validated.status_code == 422
        assert validated.json()["pointer"] == "/paths" and validated.json()["source"] == str(broken)
        assert (await http.get(admin + "/apis/bad")).status_code == 404
        not_json = await http.put(admin + "/apis/bad", content=b"{not json")
        assert not_json.status_code == 400
        missing = await http.put(admin + "/apis/bad", json={"spec": str(tmp_path / "nope.yaml")})
        assert missing.status_code == 422 and "nope.yaml" in missing.json()["error"]
        bad_config = await http.put(admin + "/apis/bad", json={"spec": str(ECHO_SPEC), "timeout": -1})
        assert bad_config.status_code == 422 and "timeout" in bad_config.json()["error"]
    async with Client(gateway_url, mode=LEGACY) as client:
        echo = await echo_call(client, "getItem", {"id": "still-here"})
        assert echo["path"] == "/api/items/still-here"


async def test_registrations_persist_across_restarts(tmp_path: Path, upstream: str) -> None:
    config = echo_config(tmp_path, upstream)
    with running_gateway(config) as (url, _):
        async with httpx2.AsyncClient(headers=auth()) as http:
            response = await http.put(
                admin_url(url) + "/apis/kept",
                json={"spec_content": ECHO_SPEC.read_text(), "prefix": "kept", "base_url": upstream},
            )
            assert response.status_code == 201, response.text
    # A new gateway process on the same data dir (and without any API in its config file).
    second = GatewayConfig(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN)
    with running_gateway(second) as (url, _):
        async with Client(url, mode=LEGACY) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "kept_getItem" in tools and "getItem" not in tools
            echo = await echo_call(client, "kept_getItem", {"id": "persisted"})
            assert echo["path"] == "/api/items/persisted"
        async with httpx2.AsyncClient(headers=auth()) as http:
            listed = (await http.get(admin_url(url) + "/apis")).json()
            assert [a["name"] for a in listed["apis"]] == ["kept"]


# --------------------------------------------------------------------------- 6. Host / Origin


async def test_host_and_origin_protection(gateway_url: str) -> None:
    base = gateway_url.rsplit("/mcp", 1)[0]
    port = base.rsplit(":", 1)[1]
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        for origin in ("http://evil.example", "http://127.0.0.1.evil.example", "null", f"http://evil.example:{port}"):
            response = await http.post(gateway_url, json=request, headers={**accept, "Origin": origin})
            assert response.status_code == 403, origin
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example:80"):
            response = await http.post(gateway_url, json=request, headers={**accept, "Host": host})
            assert response.status_code == 421, host
        # Every route is guarded, the admin API included.
        admin = await http.get(base + "/admin/apis", headers={**auth(), "Origin": "http://evil.example"})
        assert admin.status_code == 403
        # A port is ASCII digits only ("²".isdigit() is true in Python).
        odd_host: dict[str, Any] = {**accept, "Host": "localhost:\u00b2".encode("latin-1")}
        odd_port = await http.post(gateway_url, json=request, headers=odd_host)
        assert odd_port.status_code == 421
        # Same-machine hosts and origins are fine, in any letter case.
        for headers in (
            {"Origin": f"http://127.0.0.1:{port}"},
            {"Origin": f"http://LocalHost:{port}"},
            {"Host": f"LOCALHOST:{port}"},
        ):
            ok = await http.post(gateway_url, json=request, headers={**accept, **headers})
            assert ok.status_code == 200, (headers, ok.text)


async def test_upstream_cookies_are_not_kept_between_calls(gateway_url: str) -> None:
    """A Set-Cookie from one call must never ride along on a later call (of any caller)."""
    async with Client(gateway_url, mode="legacy") as client:
        await client.list_tools()
        assert not (await client.call_tool("setCookie", {})).is_error
        echo = await echo_call(client, "getItem", {"id": "1"})
    assert "cookie" not in echo["headers"]
    assert "cookie-from-upstream-7f3a" not in json.dumps(echo)


async def test_uploaded_or_remote_specs_cannot_read_local_files(
    gateway_url: str, upstream: str, tmp_path: Path
) -> None:
    """An uploaded spec's $ref to a file on the gateway host is refused, and nothing of the file leaks."""
    secret_file = tmp_path / "host-secret.yaml"
    secret_file.write_text("type: object\ndescription: TOP-SECRET-HOST-FILE\n")
    spec = ECHO_SPEC.read_text().replace("#/components/schemas/NewItem", secret_file.as_uri())
    relative = ECHO_SPEC.read_text().replace("#/components/schemas/NewItem", "host-secret.yaml")
    admin = admin_url(gateway_url)
    async with httpx2.AsyncClient(headers=auth()) as http:
        for text in (spec, relative):
            response = await http.put(f"{admin}/apis/uploaded", json={"spec_content": text, "prefix": "up"})
            body = response.text
            assert "TOP-SECRET-HOST-FILE" not in body
            if response.status_code in (200, 201):
                # The offending operation is skipped with a warning; the rest is served.
                assert any("cannot reference files" in w for w in response.json()["warnings"]), body
            else:
                assert "cannot reference files" in body
        # Uploaded specs are named by their API, never by a path on the gateway host.
        listed = (await http.get(f"{admin}/apis/uploaded")).json()
        assert listed["source"] == "upload:uploaded"
    async with Client(gateway_url, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        assert "TOP-SECRET-HOST-FILE" not in json.dumps([t.model_dump(mode="json") for t in tools])


async def test_trace_context_of_the_mcp_request_reaches_the_upstream(gateway_url: str) -> None:
    """W3C trace context sent in the request's _meta continues upstream as `traceparent`."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "getItem",
            "arguments": {"id": "1"},
            "_meta": {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": "2025-11-25",
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(gateway_url, json=payload, headers=headers)
    data = next(line[5:] for line in response.text.splitlines() if line.startswith("data:"))
    echo = json.loads(json.loads(data)["result"]["content"][0]["text"])
    traceparent = echo["headers"].get("traceparent", "")
    assert traceparent.split("-")[1] == trace_id, echo["headers"]


@pytest.mark.anyio
async def test_operation_servers_are_honoured_unless_the_operator_sets_base_url(tmp_path: Path, upstream: str) -> None:
    """`servers` on a path item or operation send that operation to its own server; the API's
    configured base_url overrides every server of the spec, operation ones included."""
    with serve_in_thread(create_upstream()) as other:
        spec = tmp_path / "spec.yaml"
        ok = {"200": {"description": "ok"}}
        own = [{"url": other + "/api"}]
        doc = {
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "servers": [{"url": upstream}],
            "paths": {
                "/items/main": {"get": {"operationId": "main", "responses": ok}},
                "/items/own": {"get": {"operationId": "own", "servers": own, "responses": ok}},
                "/items/byPath": {"servers": own, "get": {"operationId": "byPath", "responses": ok}},
            },
        }
        spec.write_text(json.dumps(doc))
        for base_url, expected in ((None, {"main": upstream, "own": other, "byPath": other}),
                                   (upstream, {"main": upstream, "own": upstream, "byPath": upstream})):  # fmt: skip
            gateway = Gateway(
                GatewayConfig(data_dir=tmp_path / "d", apis=[ApiConfig(name="t", spec=str(spec), base_url=base_url)])
            )
            await gateway.start()
            try:
                snapshot = gateway.catalog.snapshot
                for name, where in expected.items():
                    tool = snapshot.tools[name]
                    result = await gateway.handler(Call(tool, snapshot.apis["t"], {}))
                    assert not result.is_error, text_of(result)
                    host = result.structured_content["headers"]["host"]
                    assert where.startswith(f"http://{host}"), (name, host, where)
            finally:
                await gateway.aclose()


@pytest.mark.anyio
async def test_framing_headers_are_never_arguments_and_never_crash_a_call(tmp_path: Path, upstream: str) -> None:
    """A spec declaring Content-Length (or Host, Transfer-Encoding...) as a header parameter gets no
    such argument; and should a plan carry one anyway, the HTTP stack's protocol error is a tool error."""
    spec = tmp_path / "spec.yaml"
    params = [{"name": n, "in": "header", "schema": {"type": "string"}} for n in ("Content-Length", "Host", "X-Ok")]
    text_body = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    op = {
        "operationId": "post",
        "parameters": params,
        "requestBody": text_body,
        "responses": {"200": {"description": "ok"}},
    }
    spec.write_text(
        json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/echo": {"post": op}}})
    )
    tool = ingest_api(ApiConfig(name="t", spec=str(spec), base_url=upstream)).tools[0]
    assert set(tool.input_schema["properties"]) == {"X-Ok", "body"}
    forged = ParamPlan(name="Content-Length", arg="cl", location="header", style="simple", explode=False)
    bad = dataclasses.replace(tool, operation=dataclasses.replace(tool.operation, params=(forged,)))
    client = RestUpstream("t", upstream, ClientSettings())
    try:
        result = await client.invoke(bad, {"cl": "999", "body": "short"})
        assert result.is_error and "could not be sent (it sets Content-Length" in text_of(result)
        ok = await client.invoke(tool, {"X-Ok": "yes", "body": "fine"})
        assert not ok.is_error, text_of(ok)
    finally:
        await client.aclose()
