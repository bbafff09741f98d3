"""Tool calls under budgets, through the gateway with the real MCP client and a real upstream that
states its prices: costs (flat, a response header, a JSON pointer) reach the ledger; a call that
does not fit is a tool error and reaches no upstream; 32 calls at once never pass the cap beyond
what the calls in flight cost over their reservations; a restarted gateway rebuilds spend from
the ledger (SQLite and PostgreSQL); two gateways sharing one Redis enforce one cap."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.pipeline.stages import RETRY_AFTER_META
from mcp_gateway.store.identities import Selector
from tests.conftest import ADMIN_TOKEN
from tests.servers import serve_in_thread
from tests.test_access import key_client

pytestmark = pytest.mark.anyio

SPEC = """
openapi: 3.1.0
info: {title: Priced API, version: "1"}
paths:
  /flat:
    get: {operationId: flat, responses: {"200": {description: ok}}}
  /header:
    get:
      operationId: header
      parameters: [{name: seconds, in: query, schema: {type: number}}]
      responses: {"200": {description: ok}}
  /pointer:
    get: {operationId: pointer, responses: {"200": {description: ok}}}
  /slow:
    get:
      operationId: slow
      parameters: [{name: seconds, in: query, schema: {type: number}}]
      responses: {"200": {description: ok}}
  /fail:
    get: {operationId: fail, responses: {"200": {description: ok}}}
  /count:
    get:
      operationId: count
      parameters: [{name: n, in: query, required: true, schema: {type: integer}}]
      responses: {"200": {description: ok}}
"""


class PricedApi:
    """An upstream that states what its calls cost, and counts the requests it gets."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def _sleep(self, request: Request) -> None:
        seconds = float(request.query_params.get("seconds", "0"))
        if seconds:
            await asyncio.sleep(seconds)

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            name = request.url.path.rsplit("/", 1)[-1]
            self.seen.append(name)
            await self._sleep(request)
            if name == "header":
                return JSONResponse({"ok": True}, headers={"X-Cost": "0.03"})
            if name == "pointer":  # a float in JSON, read exactly
                return JSONResponse({"data": [1, 2], "usage": {"cost_usd": 0.000123456789}})
            if name == "fail":
                return JSONResponse({"error": "down"}, status_code=503)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/api/{name}", handle)])


@pytest.fixture(scope="module")
def priced() -> Iterator[tuple[PricedApi, str]]:
    api = PricedApi()
    with serve_in_thread(api.app()) as url:
        yield api, url + "/api"


def _config(
    tmp_path: Path, base_url: str, budgets: list[dict[str, Any]] | dict[str, Any], **more: Any
) -> GatewayConfig:
    spec = tmp_path / "priced.yaml"
    spec.write_text(SPEC)
    api = {
        "name": "priced",
        "spec": str(spec),
        "base_url": base_url,
        "cost": "0.01",  # flat, for every tool not priced below
        "tool_costs": {
            "header": {"header": "X-Cost", "reserve": "0.01"},  # reserves less than it will cost
            "pointer": {"pointer": "/usage/cost_usd", "reserve": "0.001"},
            "count": "0",
        },
    }
    return GatewayConfig.model_validate(
        {"data_dir": str(tmp_path / "data"), "auth": {"enabled": True}, "admin_token": ADMIN_TOKEN, "apis": [api],
         "budgets": budgets, **more}
    )  # fmt: skip


@contextmanager
def gateway(config: GatewayConfig, key: list[str]) -> Iterator[tuple[str, Gateway]]:
    """A gateway on `config`; alice's key is made on first use (a shared database keeps it)."""
    running = Gateway(config)
    if not key:
        store = running.identities
        store.add_consumer("alice", "payments", "acme")
        key.append(keys.issue(store, "alice")[1])
        store.add_policy("consumer", "alice", "allow", Selector(apis=("priced",)), None)
    with serve_in_thread(running.http_app(), lifespan="on") as url:
        yield url, running


def text(result: types.CallToolResult) -> str:
    return result.content[0].text  # type: ignore[union-attr]


async def ledger_costs(running: Gateway, calls: int) -> dict[str, Decimal]:
    """Cost per tool in the ledger, once it holds `calls` rows (the writer flushes every second)."""
    deadline = time.monotonic() + 10
    while running.ledger_store.count() < calls:
        assert time.monotonic() < deadline, "the ledger did not get the calls"
        await anyio.sleep(0.1)
    return {str(row.group): row.cost for row in running.ledger_store.usage("tool")}


async def test_tool_costs_from_a_flat_value_a_header_and_a_json_pointer_reach_the_ledger(
    tmp_path: Path, priced: tuple[PricedApi, str]
) -> None:
    _, base = priced
    key: list[str] = []
    with gateway(_config(tmp_path, base, []), key) as (url, running):
        async with key_client(url + "/mcp", key[0]) as client:
            for tool, arguments in (("flat", {}), ("flat", {}), ("header", {}), ("pointer", {}), ("fail", {}),
                                    ("count", {"n": "not a number"})):  # fmt: skip
                await client.call_tool(tool, arguments)
        costs = await ledger_costs(running, 6)
    assert costs == {
        "flat": Decimal("0.02"),
        "header": Decimal("0.03"),
        "pointer": Decimal("0.000123456789"),  # not the float's 0.00012345678899999999...
        "fail": Decimal(0),  # the upstream refused and stated no cost
        "count": Decimal(0),  # refused arguments: the upstream was never called
    }


async def test_a_tool_call_over_budget_is_a_tool_error_and_reaches_no_upstream(
    tmp_path: Path, priced: tuple[PricedApi, str]
) -> None:
    api, base = priced
    budgets = [{"name": "alice-day", "scope": "consumer", "usd": "0.025", "period": "day"}]
    key: list[str] = []
    with gateway(_config(tmp_path, base, budgets), key) as (url, _):
        async with key_client(url + "/mcp", key[0]) as client:
            before = len(api.seen)
            assert not (await client.call_tool("flat", {})).is_error
            assert not (await client.call_tool("flat", {})).is_error
            started = time.time()
            refused = await client.call_tool("flat", {})
            assert refused.is_error and len(api.seen) == before + 2
            day_end = (int(started) // 86400 + 1) * 86400
            reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day_end))
            assert text(refused) == (
                "Budget exceeded: budget 'alice-day' (USD 0.025 per day for consumer alice) has USD 0.005 left; "
                f"it resets at {reset}; this call reserves up to USD 0.01"
            )
            assert day_end - time.time() - 2 <= refused.meta[RETRY_AFTER_META] <= day_end - started  # type: ignore[index]
            # A cheaper call still fits what is left; then nothing is left, and free calls are refused too.
            assert not (await client.call_tool("pointer", {})).is_error
            free = await client.call_tool("count", {"n": 1})
            assert not free.is_error
        assert await budgets_of(url, key[0]) == await budgets_of(url) == [
            {"budget": "alice-day", "scope": "consumer", "subject": "alice", "period": "day",
             "period_start": day_end - 86400, "period_end": day_end, "cap_usd": "0.025",
             "spent_usd": "0.020123456789", "reserved_usd": "0", "remaining_usd": "0.004876543211"}
        ]  # fmt: skip


async def _burst(url: str, key: str, tool: str, calls: int) -> list[types.CallToolResult]:
    """`calls` calls of `tool` at once (one client each), each held 2 s at the upstream."""
    results: list[types.CallToolResult] = []

    async def one() -> None:
        async with key_client(url + "/mcp", key) as client:
            results.append(await client.call_tool(tool, {"seconds": 2}))

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one)
    return results


@pytest.mark.parametrize(("tool", "cost"), [("slow", Decimal("0.01")), ("header", Decimal("0.03"))])
async def test_32_calls_at_once_never_pass_the_cap_beyond_what_is_in_flight(
    tmp_path: Path, priced: tuple[PricedApi, str], tool: str, cost: Decimal
) -> None:
    """Each call reserves 0.01 of a 0.10 cap: at most 10 are in flight. `slow` costs what it
    reserved: spend ends at the cap exactly. `header` costs 0.03: spend passes the cap by what
    the calls in flight cost beyond their reservations, 10 x 0.02 at most (the README's bound)."""
    api, base = priced
    budgets = [{"name": "team", "scope": "team", "usd": "0.10", "period": "day"}]
    key: list[str] = []
    with gateway(_config(tmp_path, base, budgets), key) as (url, running):
        before = api.seen.count(tool)
        results = await _burst(url, key[0], tool, 32)
        admitted = sum(1 for r in results if not r.is_error)
        refused = [text(r) for r in results if r.is_error]
        assert api.seen.count(tool) - before == admitted and admitted + len(refused) == 32
        assert all(t.startswith("Budget exceeded: budget 'team'") for t in refused)
        costs = await ledger_costs(running, 32)
    spent = costs[tool]
    assert spent == admitted * cost
    overshoot = spent - Decimal("0.10")
    assert overshoot <= admitted * (cost - Decimal("0.01"))  # the bound: what calls in flight cost beyond reserving
    assert admitted <= 10 and (spent == Decimal("0.10") if tool == "slow" else overshoot <= Decimal("0.2"))


async def test_a_restarted_gateway_rebuilds_spend_from_the_ledger(
    tmp_path: Path, priced: tuple[PricedApi, str], database_url: str
) -> None:
    _, base = priced
    budgets = [{"name": "alice-month", "scope": "consumer", "usd": "0.05"}]
    config = _config(tmp_path, base, budgets, database_url=database_url)
    key: list[str] = []
    with gateway(config, key) as (url, _):
        async with key_client(url + "/mcp", key[0]) as client:
            for _ in range(3):
                assert not (await client.call_tool("flat", {})).is_error
    # A clean stop wrote the ledger; a new process starts from what it says.
    with gateway(config, key) as (url, _):
        async with key_client(url + "/mcp", key[0]) as client:
            assert not (await client.call_tool("flat", {})).is_error
            assert not (await client.call_tool("flat", {})).is_error
            refused = await client.call_tool("flat", {})
        assert refused.is_error and "has USD 0 left" in text(refused)
        [balance] = await budgets_of(url, key[0])
        assert (balance["spent_usd"], balance["reserved_usd"]) == ("0.05", "0")


async def budgets_of(url: str, key: str = ADMIN_TOKEN) -> list[dict[str, Any]]:
    """The budgets a consumer's key sees at GET /v1/usage (the admin token: everyone's, at /admin/budgets)."""
    path = "/admin/budgets" if key == ADMIN_TOKEN else "/v1/usage"
    async with httpx2.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()["budgets"]


async def test_two_gateways_sharing_redis_enforce_one_budget(
    tmp_path: Path, priced: tuple[PricedApi, str], database_url: str, redis_url: str
) -> None:
    api, base = priced
    budgets = [{"name": "team", "scope": "team", "usd": "0.10", "period": "day"}]
    limits = {"redis_url": redis_url, "redis_prefix": f"test-{uuid.uuid4().hex[:10]}:", "redis_timeout": 2.0}
    config = _config(tmp_path, base, budgets, database_url=database_url, limits=limits)
    key: list[str] = []
    with ExitStack() as stack:
        first_url, _ = stack.enter_context(gateway(config, key))
        second_url, _ = stack.enter_context(gateway(config, key))
        before = api.seen.count("slow")
        results: list[types.CallToolResult] = []

        async def burst(url: str) -> None:
            results.extend(await _burst(url, key[0], "slow", 16))

        async with anyio.create_task_group() as tg:
            tg.start_soon(burst, first_url)
            tg.start_soon(burst, second_url)
        # Ten fit the cap between the two gateways: exactly ten reached the upstream.
        assert api.seen.count("slow") - before == 10 == sum(1 for r in results if not r.is_error)
        for url in (first_url, second_url):
            [balance] = await budgets_of(url)
            assert (balance["subject"], balance["spent_usd"], balance["reserved_usd"]) == ("payments", "0.1", "0")
