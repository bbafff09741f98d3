"""Discovery mode: search/describe/call meta-tools over the real gateway, and search quality."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp import Client

from mcp_gateway.config import ApiConfig, GatewayConfig, ServerConfig
from mcp_gateway.discovery.index import ToolIndex, tokens
from mcp_gateway.openapi.tools import ingest_api
from tests.conftest import ECHO_SPEC, GatewayFactory, running_gateway

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]


def test_tokens_meet_across_spellings() -> None:
    assert tokens("listPullRequests") == tokens("list pull requests") == ["list", "pull", "request"]
    assert tokens("/repos/{owner}/{repo}") == ["repository", "owner", "repository"]
    assert tokens("remove the statuses") == tokens("delete status")


def test_recall_on_bundled_specs() -> None:
    """The labelled queries for the bundled specs (bench/data/discovery_queries.yaml) find their tool."""
    labels = yaml.safe_load((REPO / "bench" / "data" / "discovery_queries.yaml").read_text())
    bundled = {api: spec for api, spec in labels["specs"].items() if not spec.startswith("corpus:")}
    tools = [
        tool
        for api, spec in bundled.items()
        for tool in ingest_api(ApiConfig(name=api, spec=str(REPO / spec), prefix=api)).tools
    ]
    index = ToolIndex(tools)
    queries = [q for q in labels["queries"] if q["api"] in bundled]
    found = 0
    for q in queries:
        hits = index.search(q["q"], 5)
        keys = [{h.tool.operation_id, f"{h.tool.operation.method} {h.tool.operation.path}"} for h in hits]
        found += any(set(q["expect"]) & k for k in keys)
    assert len(queries) >= 15
    assert found / len(queries) >= 0.9


@pytest.mark.parametrize("mode", ERAS)
async def test_meta_tools_search_describe_call(gateway_factory: GatewayFactory, upstream: str, mode: str) -> None:
    with gateway_factory(server={"discovery": "on"}) as (url, _):
        async with Client(url, mode=mode) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert listed == {"search_tools", "describe_tool", "call_tool"}

            found = await client.call_tool("search_tools", {"query": "upload a file", "limit": 3})
            assert not found.is_error
            hits = found.structured_content["tools"]  # type: ignore[index]
            assert hits[0]["name"] == "uploadFile" and "inputSchema" in hits[0]
            assert len(hits) <= 3 and hits == sorted(hits, key=lambda h: -h["score"])

            described = await client.call_tool("describe_tool", {"name": "getItem"})
            info = described.structured_content
            assert info is not None and info["path"] == "/items/{id}" and info["inputSchema"]["type"] == "object"

            called = await client.call_tool("call_tool", {"name": "getItem", "arguments": {"id": "77"}})
            assert not called.is_error
            assert called.structured_content is not None and called.structured_content["path"] == "/api/items/77"

            async with httpx2.AsyncClient() as http:
                before = (await http.get(upstream.rsplit("/api", 1)[0] + "/__requests")).json()
            invalid = await client.call_tool("call_tool", {"name": "getItem", "arguments": {"id": "1", "limit": 0}})
            assert invalid.is_error and "limit" in invalid.content[0].text  # type: ignore[union-attr]
            async with httpx2.AsyncClient() as http:
                after = (await http.get(upstream.rsplit("/api", 1)[0] + "/__requests")).json()
            assert after == before  # the same validation as a direct call: nothing was sent

            unknown = await client.call_tool("call_tool", {"name": "nope", "arguments": {}})
            assert unknown.is_error and "search_tools" in unknown.content[0].text  # type: ignore[union-attr]
            bad = await client.call_tool("search_tools", {"query": "x", "limit": 99})
            assert bad.is_error and "limit" in bad.content[0].text  # type: ignore[union-attr]


async def test_discovery_per_api_and_auto(tmp_path: Path, upstream: str) -> None:
    hidden = ApiConfig(name="big", spec=str(ECHO_SPEC), base_url=upstream, prefix="big", discovery=True)
    shown = ApiConfig(name="small", spec=str(ECHO_SPEC), base_url=upstream, prefix="small")
    config = GatewayConfig(data_dir=tmp_path / "d1", apis=[hidden, shown])
    with running_gateway(config) as (url, _):
        async with Client(url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"search_tools", "describe_tool", "call_tool", "small_getItem"} <= names
            assert not any(n.startswith("big_") for n in names)
            found = await client.call_tool("search_tools", {"query": "get an item"})
            assert all(h["api"] == "big" for h in found.structured_content["tools"])  # type: ignore[index]
    # auto: meta-tools only once the catalog is larger than the threshold.
    auto = GatewayConfig(
        data_dir=tmp_path / "d2", apis=[shown], server=ServerConfig(discovery="auto", discovery_threshold=10)
    )
    with running_gateway(auto) as (url, _):
        async with Client(url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"search_tools", "describe_tool", "call_tool"}
            text = json.dumps((await client.call_tool("search_tools", {"query": "drift"})).structured_content)
            assert "small_drift" in text
