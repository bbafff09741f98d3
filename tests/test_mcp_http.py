"""The official `mcp` client against a real gateway over Streamable HTTP, in both protocol eras."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, GatewayFactory

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]


@pytest.mark.parametrize("mode", ERAS)
async def test_list_and_call(gateway_url: str, mode: str) -> None:
    async with Client(gateway_url, mode=mode) as client:
        listed = await client.list_tools()
        names = {t.name for t in listed.tools}
        assert {"getItem", "createItem", "uploadFile", "postTree"} <= names
        get_item = next(t for t in listed.tools if t.name == "getItem")
        assert get_item.input_schema["type"] == "object"
        assert get_item.annotations is not None and get_item.annotations.read_only_hint is True

        result = await client.call_tool("getItem", {"id": "a b/c", "q": "x", "tags": ["t1", "t2"], "limit": 5})
        assert not result.is_error, result.content
        echo = result.structured_content
        assert echo is not None
        assert echo["method"] == "GET"
        assert echo["path"] == "/api/items/a%20b%2Fc"
        assert echo["query"] == "q=x&tags=t1&tags=t2&limit=5"
        assert json.loads(result.content[0].text) == echo  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ERAS)
async def test_invalid_arguments_name_the_field_and_do_not_call(gateway_url: str, mode: str) -> None:
    async with Client(gateway_url, mode=mode) as client:
        result = await client.call_tool("getItem", {"id": "1", "limit": 1000, "bogus": 1})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "limit" in text and "1000" in text
        assert "bogus" in text
        missing = await client.call_tool("createItem", {"price": 3})
        assert missing.is_error and "name" in missing.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ERAS)
async def test_unknown_tool_is_a_protocol_error(gateway_url: str, mode: str) -> None:
    async with Client(gateway_url, mode=mode) as client:
        await client.list_tools()
        with pytest.raises(MCPError) as info:
            await client.session.call_tool("noSuchTool", {})
        assert "noSuchTool" in str(info.value)


@pytest.mark.parametrize("mode", ERAS)
async def test_drifting_upstream_still_reaches_the_agent(gateway_url: str, mode: str) -> None:
    async with Client(gateway_url, mode=mode) as client:
        await client.list_tools()
        for shape, expected in (
            ("object", {"id": "not-an-integer", "unexpected": {"nested": True}}),
            ("array", {"result": [1, "two", None]}),
            ("scalar", {"result": "surprise"}),
        ):
            result = await client.call_tool("drift", {"shape": shape})
            assert not result.is_error
            assert result.structured_content == expected


async def test_pagination(gateway_factory: GatewayFactory) -> None:
    with gateway_factory(server={"page_size": 5}) as (url, gateway):
        async with Client(url, mode="legacy") as client:
            seen: list[str] = []
            cursor = None
            pages = 0
            while True:
                page = await client.list_tools(cursor=cursor)
                pages += 1
                assert len(page.tools) <= 5
                seen.extend(t.name for t in page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert pages > 2
            assert seen == [t.name for t in gateway.catalog.snapshot.ordered]
            with pytest.raises(MCPError):
                await client.list_tools(cursor="not a cursor!")


async def _admin_register(mcp_url: str, name: str) -> httpx2.Response:
    admin = mcp_url.rsplit("/mcp", 1)[0] + "/admin"
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        return await http.put(
            f"{admin}/apis/{name}",
            json={"spec_content": ECHO_SPEC.read_text(), "prefix": name, "base_url": "http://127.0.0.1:9/api"},
        )


async def test_list_changed_legacy_session(gateway_factory: GatewayFactory) -> None:
    changed = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    with gateway_factory(server={"stateless": False}) as (url, _):
        async with Client(url, mode="legacy", message_handler=on_message) as client:
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.tools.list_changed is True
            before = {t.name for t in (await client.list_tools()).tools}
            response = await _admin_register(url, "second")
            assert response.status_code == 201, response.text
            with anyio.fail_after(10):
                await changed.wait()
            after = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
            assert "second_getItem" in after - before


async def test_list_changed_modern_listen(gateway_url: str) -> None:
    async with Client(gateway_url, mode="2026-07-28") as client:
        before = {t.name for t in (await client.list_tools()).tools}
        async with client.listen(tools_list_changed=True) as sub:
            response = await _admin_register(gateway_url, "third")
            assert response.status_code == 201, response.text
            with anyio.fail_after(10):
                async for _event in sub:
                    break
        after = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert "third_getItem" in after - before


async def test_a_broken_configured_spec_leaves_the_others_serving(tmp_path, upstream: str, monkeypatch) -> None:
    from mcp_gateway import registry
    from mcp_gateway.config import ApiConfig, GatewayConfig
    from tests.conftest import running_gateway

    monkeypatch.setattr(registry, "RETRY_FIRST", 0.5)
    monkeypatch.setattr("mcp_gateway.gateway.STORE_POLL_SECONDS", 0.3)
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 3.1.0\ninfo: {title: b, version: '1'}\npaths:\n  /x: {get: {responses: [\n")
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        apis=[
            ApiConfig(name="broken", spec=str(broken), base_url=upstream),
            ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream),
        ],
    )
    with running_gateway(config) as (url, gateway):
        # Not ready while a configured API is missing; the answer names it, not the file or the error.
        answer = httpx2.get(url.replace("/mcp", "/readyz"))
        assert answer.status_code == 503
        ready = answer.json()
        assert not ready["ready"] and ready["failed_apis"] == ["broken"] and ready["apis"] == 1
        assert "broken" in ready["reason"] and str(broken) not in answer.text
        failure = gateway.registry.failures["broken"].error
        assert str(broken) in failure and "line" in failure
        async with Client(url) as client:
            result = await client.call_tool("getItem", {"id": "5"})
            assert not result.is_error
        # Fixed on disk, it is loaded again without a restart, and the gateway becomes ready.
        broken.write_text(ECHO_SPEC.read_text().replace("/items/", "/things/"))
        with anyio.fail_after(15):
            while httpx2.get(url.replace("/mcp", "/readyz")).status_code != 200:
                await anyio.sleep(0.1)
        assert gateway.registry.failures == {} and set(gateway.catalog.snapshot.apis) == {"broken", "echo"}


def _raw_post(mcp_url: str, headers: list[tuple[str, str]], body: dict) -> tuple[int, dict]:
    """POST one JSON-RPC message with http.client, which sends header values byte for byte
    (httpx refuses values with leading or trailing whitespace); returns the status and the
    JSON-RPC response, from a JSON or an SSE body."""
    url = urlsplit(mcp_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", url.path)
        for name, value in [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            *headers,
        ]:
            conn.putheader(name, value)
        payload = json.dumps(body).encode()
        conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders(payload)
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
        return response.status, next(e for e in events if "id" in e)
    return response.status, json.loads(text)


MODERN = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def _modern_call(name: str, arguments: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": MODERN_META}}  # fmt: skip


# httptools (what `mcp-gateway serve` runs on) keeps trailing whitespace in header values; h11 strips it.
PARSERS = ["httptools", "h11"]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    "pad",
    [
        pytest.param(("  ", " "), id="spaces"),
        pytest.param(("\t", "\t"), id="tabs"),
        pytest.param(("", " \t "), id="mixed"),
    ],
)
def test_padded_mcp_headers_are_trimmed(gateway_factory: GatewayFactory, parser: str, pad: tuple[str, str]) -> None:
    """RFC 9110 §5.5: whitespace around a field value is not part of it, so a padded Mcp-Name
    (and protocol version and method) still matches the body (2026-07-28 header validation)."""
    before, after = pad
    with gateway_factory(uvicorn={"http": parser}) as (url, _):
        status, reply = _raw_post(
            url,
            [
                ("MCP-Protocol-Version", f"{before}{MODERN}{after}"),
                ("Mcp-Method", f"{before}tools/call{after}"),
                ("Mcp-Name", f"{before}getItem{after}"),
            ],
            _modern_call("getItem", {"id": "7"}),
        )
        assert status == 200, reply
        assert reply["result"]["isError"] is False, reply
        assert reply["result"]["structuredContent"]["path"] == "/api/items/7"

        # Only the edges are trimmed: inner whitespace is part of the value, so this still mismatches.
        status, reply = _raw_post(
            url,
            [("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/call"), ("Mcp-Name", f"{before}get Item{after}")],
            _modern_call("getItem", {"id": "7"}),
        )
        assert status == 400 and reply["error"]["code"] == types.HEADER_MISMATCH, reply


@pytest.mark.parametrize("parser", PARSERS)
def test_padded_legacy_protocol_version_keeps_its_era(gateway_factory: GatewayFactory, parser: str) -> None:
    """`MCP-Protocol-Version: 2025-11-25 ` is the handshake era, not an unknown modern version."""
    with gateway_factory(uvicorn={"http": parser}) as (url, _):
        status, reply = _raw_post(
            url,
            [("MCP-Protocol-Version", "2025-11-25 \t")],
            {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}},
        )
        assert status == 200, reply
        assert "getItem" in {tool["name"] for tool in reply["result"]["tools"]}
