"""Virtual servers: named endpoints exposing a curated, renamed subset, under the caller's policy."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, ToolPick, VirtualServerConfig
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import IdentityStore, Selector
from mcp_gateway.store.ledger import LedgerStore
from tests.conftest import ECHO_SPEC, running_gateway

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]

CURATED = VirtualServerConfig(
    name="curated",
    tools=[
        ToolPick(api="echo", tool="getItem", rename="fetch_item", description="Fetch one item by id."),
        ToolPick(api="echo", tool="plain"),
        ToolPick(api="second", tool="s2_big*"),
    ],
)


def config(tmp_path: Path, upstream: str, **extra: object) -> GatewayConfig:
    apis = [
        ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream),
        ApiConfig(name="second", spec=str(ECHO_SPEC), base_url=upstream, prefix="s2"),
    ]
    return GatewayConfig(data_dir=tmp_path, apis=apis, servers=[CURATED], **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ERAS)
async def test_virtual_server_exposes_its_curated_tools(tmp_path: Path, upstream: str, mode: str) -> None:
    with running_gateway(config(tmp_path, upstream)) as (url, _):
        async with Client(f"{url}/curated", mode=mode) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"fetch_item", "plain", "s2_big", "s2_bigStream"}
            assert tools["fetch_item"].description == "Fetch one item by id."
            result = await client.call_tool("fetch_item", {"id": "8"})
            assert not result.is_error and result.structured_content["path"] == "/api/items/8"  # type: ignore[index]
            with pytest.raises(MCPError):  # not part of this server, though the catalog has it
                await client.session.call_tool("getItem", {"id": "8"})
        async with Client(url, mode=mode) as client:  # the main endpoint still has everything
            names = {t.name for t in (await client.list_tools()).tools}
            assert "getItem" in names and "fetch_item" not in names
        assert httpx2.post(f"{url}/nope", json={}).status_code == 404


async def test_policies_apply_to_virtual_servers_by_catalog_name(tmp_path: Path, upstream: str) -> None:
    db = Database(tmp_path / "gateway.db")
    identities = IdentityStore(db)
    identities.add_consumer("bob")
    # Written against the catalog's name: it covers the renamed `fetch_item` too.
    identities.add_policy("consumer", "bob", "allow", Selector(apis=("echo",), tools=("getItem",)), None)
    from mcp_gateway.auth import keys

    _, key = keys.issue(identities, "bob")
    db.close()
    with running_gateway(config(tmp_path, upstream, auth=AuthConfig(enabled=True))) as (url, _):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        async with Client(streamable_http_client(f"{url}/curated", http_client=http)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"fetch_item"}
        unauthenticated = httpx2.post(f"{url}/curated", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert unauthenticated.status_code == 401


async def test_stdio_serves_a_virtual_server(tmp_path: Path, upstream: str) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(config(tmp_path, upstream).model_dump_json())
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_gateway.cli", "stdio", "-c", str(cfg), "--server", "curated"]
    )
    with anyio.fail_after(60):
        async with Client(params) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {
                "fetch_item",
                "plain",
                "s2_big",
                "s2_bigStream",
            }


def test_rename_needs_a_single_tool() -> None:
    with pytest.raises(ValidationError):
        ToolPick(api="echo", tool="get*", rename="x")


async def test_the_ledger_and_budgets_know_a_renamed_tool_by_its_catalog_name(tmp_path: Path, upstream: str) -> None:
    """A call through a virtual server's `fetch_item` is a `getItem` call in the ledger, as for
    policies and budgets: a budget on getItem rebuilt from the ledger counts it after a restart."""
    budgets = {"rules": [{"name": "getitem", "scope": "tool", "match": {"tool": ["getItem"]}, "usd": "2.5"}]}
    priced = ApiConfig.model_validate({"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream, "cost": 1})
    cfg = config(tmp_path, upstream, budgets=budgets)
    cfg = cfg.model_copy(update={"apis": [priced, cfg.apis[1]]})
    with running_gateway(cfg) as (url, _):
        async with Client(f"{url}/curated", mode="2026-07-28") as client:
            assert not (await client.call_tool("fetch_item", {"id": "1"})).is_error
            assert not (await client.call_tool("fetch_item", {"id": "2"})).is_error
    (row,) = LedgerStore(Database(tmp_path / "gateway.db")).usage("tool")
    assert (row.group, row.calls) == ("getItem", 2)
    with running_gateway(cfg) as (url, _):  # spend rebuilt from the ledger: 2 of 2.5 spent
        async with Client(url, mode="2026-07-28") as client:
            assert (await client.call_tool("getItem", {"id": "3"})).is_error
