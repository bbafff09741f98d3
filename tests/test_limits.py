"""Rate limits: rules, windows, tokens and concurrency over both backends (this process, and a real
redis-server), and tool calls refused by the pipeline before any upstream request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway.auth import keys
from mcp_gateway.auth.principal import Principal
from mcp_gateway.catalog import ApiEntry
from mcp_gateway.config import ApiConfig, ConfigError, GatewayConfig, load_config
from mcp_gateway.config.limits import LimitRule, LimitsConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.metering.limits import LimitExceeded, Subject, subject_of
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.pipeline import Call, compose
from mcp_gateway.pipeline.stages import RETRY_AFTER_META, limit_calls
from mcp_gateway.store.identities import Selector
from mcp_gateway.upstream.response import error_result
from tests.conftest import ECHO_SPEC
from tests.limits_helpers import BACKENDS, fresh_window, limiter, limits_config, retry_bounds
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio

ALICE = Subject(consumer="alice", team="payments", org="acme", key="k1", api="echo", tool="echo__getItem")
BOB = Subject(consumer="bob", team="web", org="acme", key="k2", api="echo", tool="echo__getItem")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(backend name, Redis URL): each engine test runs in-process and on a real redis-server."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "local", None


# -- configuration ----------------------------------------------------------------------------------


def test_rules_name_themselves_and_take_the_list_shorthand(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "limits:\n"
        "  - {scope: consumer, requests_per_minute: 60}\n"
        "  - {scope: team, match: {team: payments}, requests_per_minute: 600}\n"
        "  - {scope: consumer, requests_per_minute: 5, match: {tool: 'echo__*'}}\n"
    )
    config = load_config(path)
    assert [r.name for r in config.limits.rules] == [
        "consumer-requests_per_minute",
        "team-requests_per_minute",
        "consumer-requests_per_minute-3",
    ]
    assert config.limits.rules[1].match.team == ["payments"]
    assert config.limits.redis_failure == "fail_closed" and config.limits.redis_url is None


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"scope": "consumer"}, "exactly one of"),
        ({"scope": "consumer", "requests_per_minute": 1, "concurrent": 2}, "exactly one of"),
        ({"scope": "tool", "tokens_per_minute": 10}, "cannot be scoped to or match APIs"),
        ({"scope": "consumer", "match": {"api": "echo"}, "tokens_per_day": 10}, "cannot be scoped to or match APIs"),
        ({"scope": "consumer", "requests_per_minute": 0}, "greater than 0"),
        ({"scope": "everybody", "requests_per_minute": 1}, "scope"),
        ({"scope": "consumer", "requests_per_minute": 1, "match": {"colour": "red"}}, "unknown key"),
        ({"scope": "consumer", "requests_per_minute": 1, "name": "has space"}, "name must match"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(tmp_path: Path, rule: dict, problem: str) -> None:
    path = tmp_path / "gateway.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"limits": {"rules": [rule]}}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert problem in str(error.value)


def test_duplicate_names_and_bad_redis_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate limit rule name: a"):
        LimitsConfig.model_validate(
            [{"name": "a", "scope": "global", "concurrent": 1}, {"name": "a", "scope": "global", "concurrent": 2}]
        )
    with pytest.raises(ValueError, match="redis_url must be"):
        LimitsConfig.model_validate({"redis_url": "http://localhost:6379"})


# -- the engine, on both backends ---------------------------------------------------------------------

WINDOWS = [("requests_per_second", 1), ("requests_per_minute", 60), ("requests_per_hour", 3600),
           ("requests_per_day", 86400)]  # fmt: skip


@pytest.mark.parametrize(("quantity", "seconds"), WINDOWS)
async def test_each_window_refuses_past_its_limit_and_says_when_to_retry(
    backend: tuple[str, str | None], quantity: str, seconds: int
) -> None:
    limits = limiter(limits_config(*backend, [{"name": "w", "scope": "consumer", quantity: 3}]))
    try:
        await fresh_window(seconds, need=0.6)
        for _ in range(3):
            assert await limits.admit(ALICE) is not None
        before = time.time()
        with pytest.raises(LimitExceeded) as refused:
            await limits.admit(ALICE)
        after = time.time()
        low, high = retry_bounds(seconds, before, after)
        assert low <= refused.value.retry_after <= high  # type: ignore[operator]
        word = quantity.rsplit("_", 1)[1]
        assert f"limit 'w' reached (3 requests per {word} for consumer alice)" in refused.value.message
        assert f"retry after {refused.value.retry_after} s" in refused.value.message
        # Another consumer has a counter of its own.
        assert await limits.admit(BOB) is not None
        if seconds == 1:  # the next window admits again
            await anyio.sleep(high + 0.05)
            assert await limits.admit(ALICE) is not None
    finally:
        await limits.aclose()


async def test_a_refused_call_charges_no_counter(backend: tuple[str, str | None]) -> None:
    """Every rule admits the call or none is charged: the per-team rule refuses, so the per-consumer
    rule's count does not move."""
    rules = [
        {"name": "each", "scope": "consumer", "requests_per_hour": 3},
        {"name": "payments", "scope": "team", "match": {"team": "payments"}, "requests_per_hour": 2},
    ]
    limits = limiter(limits_config(*backend, rules))
    try:
        await fresh_window(3600, need=5)
        first = await limits.admit(ALICE)
        assert first is not None and [(s.counter.rule.name, s.remaining) for s in first.states] == [
            ("each", 2),
            ("payments", 1),
        ]
        await limits.admit(ALICE)
        for _ in range(3):
            with pytest.raises(LimitExceeded) as refused:
                await limits.admit(ALICE)
            assert [s.counter.rule.name for s in refused.value.states if s.refused] == ["payments"]
            assert "limit 'payments' reached (2 requests per hour for team payments)" in refused.value.message
            assert "'each'" not in refused.value.message
        # bob is not in payments: only the per-consumer rule applies to him.
        admitted = await limits.admit(BOB)
        assert admitted is not None and [s.counter.rule.name for s in admitted.states] == ["each"]
        # alice's own counter still has one left: the refusals charged nothing.
        states = {s.counter.rule.name: s for s in refused.value.states}
        assert states["each"].remaining == 1 and not states["each"].refused
    finally:
        await limits.aclose()


async def test_usage_lists_what_each_subject_used_of_each_rule_now(backend: tuple[str, str | None]) -> None:
    """Limiter.usage (GET /admin/limits/usage, the console): per rule and subject with something
    counted, the count in the current window (a refused call's charges not among them), the slots
    held, and when the window resets; a rule removed since is not listed."""
    rules = [
        {"name": "hourly", "scope": "consumer", "requests_per_hour": 3},
        {"name": "inflight", "scope": "consumer", "concurrent": 5},
    ]
    limits = limiter(limits_config(*backend, rules))
    try:
        await fresh_window(3600, need=5)
        held = [await limits.admit(ALICE) for _ in range(3)]
        with pytest.raises(LimitExceeded):
            await limits.admit(ALICE)
        bob = await limits.admit(BOB)
        assert bob is not None
        await bob.release()  # bob's slot is free again; his hourly count stays
        used = [(u.rule.name, u.value, u.used) for u in await limits.usage()]
        assert used == [("hourly", "alice", 3), ("hourly", "bob", 1), ("inflight", "alice", 3)]
        hourly = next(u for u in await limits.usage() if u.value == "bob").public()
        assert (hourly["of"], hourly["remaining"], hourly["rule"]) == (3, 2, "3 requests per hour")
        assert 0 < hourly["resets_in_seconds"] <= 3600  # type: ignore[operator]
        for admission in held:
            assert admission is not None
            await admission.release()
        limits.set_rules([LimitRule.model_validate(rules[1])])  # "hourly" gone: not listed
        assert await limits.usage() == []
    finally:
        await limits.aclose()


async def test_scopes_and_selectors_pick_their_counters(backend: tuple[str, str | None]) -> None:
    rules = [
        {"name": "global", "scope": "global", "requests_per_hour": 100},
        {"name": "org", "scope": "org", "requests_per_hour": 100},
        {"name": "key", "scope": "key", "requests_per_hour": 100},
        {"name": "api", "scope": "api", "requests_per_hour": 100},
        {"name": "tool", "scope": "tool", "match": {"tool": "echo__get*"}, "requests_per_hour": 100},
        {"name": "model", "scope": "model", "match": {"model": "gpt-*"}, "requests_per_hour": 100},
        {"name": "tpm", "scope": "consumer", "tokens_per_minute": 100},
    ]
    limits = limiter(limits_config(*backend, rules))
    try:
        tool_call = {c.rule.name: c.value for c in limits.counters(ALICE, tokens=False)}
        assert tool_call == {"global": "*", "org": "acme", "key": "k1", "api": "echo", "tool": "echo__getItem"}
        other_tool = Subject(consumer="alice", api="echo", tool="echo__deleteItem")
        assert {c.rule.name for c in limits.counters(other_tool, tokens=False)} == {"global", "api"}
        model_call = subject_of(Principal("alice", "payments", None, credential_id="k1"), model="gpt-4o")
        assert {c.rule.name: c.value for c in limits.counters(model_call, tokens=True)} == {
            "global": "*", "key": "k1", "model": "gpt-4o", "tpm": "alice"
        }  # fmt: skip
        # Without access control a call has no consumer, team, org or key: only global, model, api, tool rules.
        anonymous = subject_of(None, model="claude-x")
        assert {c.rule.name for c in limits.counters(anonymous, tokens=True)} == {"global"}
    finally:
        await limits.aclose()


async def test_token_limits_reserve_an_estimate_and_settle_to_what_was_used(backend: tuple[str, str | None]) -> None:
    limits = limiter(limits_config(*backend, [{"name": "tpm", "scope": "consumer", "tokens_per_minute": 1000}]))
    model_call = Subject(consumer="alice", model="gpt-4o")
    try:
        await fresh_window(60, need=5)
        first = await limits.admit(model_call, tokens=600)
        assert first is not None and first.states[0].remaining == 400
        with pytest.raises(LimitExceeded) as refused:  # 600 more do not fit the 400 left
            await limits.admit(model_call, tokens=600)
        assert refused.value.retry_after is not None
        first.use_tokens(70)
        first.use_tokens(30)
        await first.release()  # settled: 100 used, not 600
        second = await limits.admit(model_call, tokens=600)
        assert second is not None and second.states[0].remaining == 300
        second.use_tokens(900)  # the estimate was low: the counter takes what was used
        await second.release()
        await second.release()  # once only
        with pytest.raises(LimitExceeded):
            await limits.admit(model_call, tokens=1)
        # Tool calls and token-less model calls (count_tokens) are not counted by token rules.
        assert await limits.admit(model_call, tokens=None) is None
        # A request that could not fit even an empty window is told so, with no time to retry at.
        with pytest.raises(LimitExceeded) as never:
            await limits.admit(Subject(consumer="bob", model="gpt-4o"), tokens=5000)
        assert never.value.retry_after is None
        assert "can never admit this request: it reserves about 5000 tokens" in never.value.message
    finally:
        await limits.aclose()


async def test_concurrency_slots_free_after_success_error_and_cancel(backend: tuple[str, str | None]) -> None:
    limits = limiter(limits_config(*backend, [{"name": "inflight", "scope": "consumer", "concurrent": 1}]))
    entered, proceed = anyio.Event(), anyio.Event()
    outcome = {"mode": "ok"}
    reached = []

    async def endpoint(call: Call) -> types.CallToolResult:
        reached.append(call.arguments)
        entered.set()
        await proceed.wait()
        if outcome["mode"] == "raise":
            raise RuntimeError("the upstream client broke")
        return error_result("upstream said 500") if outcome["mode"] == "error" else types.CallToolResult(content=[])

    handler = compose([limit_calls(limits)], endpoint)
    config = ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url="http://127.0.0.1:9/api")
    ingest = ingest_api(config)
    api = ApiEntry(config, ingest)
    tool = next(t for t in ingest.tools if t.name == "slow")
    alice = Principal("alice", "payments", "acme", credential_id="k1")

    def call(n: int) -> Call:
        return Call(tool, api, {"n": n}, principal=alice)

    try:
        for mode in ("ok", "error", "raise", "cancel"):
            entered, proceed = anyio.Event(), anyio.Event()
            outcome["mode"] = mode
            results: list[types.CallToolResult] = []
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()

                async def first(scope: anyio.CancelScope = scope, results: list = results) -> None:
                    with scope:
                        try:
                            results.append(await handler(call(1)))
                        except RuntimeError:
                            results.append(error_result("raised"))

                tg.start_soon(first)
                await entered.wait()
                # While the first call is in flight the slot is taken: refused, the endpoint not reached.
                refused = await handler(call(2))
                assert refused.is_error and "limit 'inflight' reached (1 calls in flight for consumer alice)" in (
                    refused.content[0].text  # type: ignore[union-attr]
                )
                assert refused.meta == {RETRY_AFTER_META: 1}
                if mode == "cancel":
                    scope.cancel()
                else:
                    proceed.set()
            assert [a["n"] for a in reached] == [1]
            reached.clear()
            # The slot is free again, however the first call ended.
            entered, proceed = anyio.Event(), anyio.Event()
            outcome["mode"] = "ok"
            proceed.set()
            assert not (await handler(call(3))).is_error
            reached.clear()
    finally:
        await limits.aclose()


# -- tool calls through the gateway --------------------------------------------------------------------


def _gateway(tmp_path: Path, upstream: str, rules: list[dict], **limits: object) -> Iterator[tuple[str, Gateway, str]]:
    config = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "auth": {"enabled": True},
            "apis": [ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream).model_dump()],
            "limits": {"rules": rules, **limits},
        }
    )
    gateway = Gateway(config)
    store = gateway.identities
    store.add_consumer("alice", "payments", "acme")
    _, key = keys.issue(store, "alice")
    store.add_policy("consumer", "alice", "allow", Selector(apis=("echo",)), None)
    with serve_in_thread(gateway.http_app(), lifespan="on") as url:
        yield url + "/mcp", gateway, key


def _client(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


async def _upstream_paths(upstream: str, marker: str) -> list[str]:
    async with httpx2.AsyncClient() as http:
        seen = (await http.get(upstream.removesuffix("/api") + "/__requests")).json()["paths"]
    return [p for p in seen if marker in p]


@pytest.fixture
def alice_gateway(tmp_path: Path, upstream: str) -> Iterator[tuple[str, Gateway, str]]:
    rules = [
        {"name": "per-consumer", "scope": "consumer", "match": {"tool": "getItem"}, "requests_per_hour": 2},
        {"name": "slow-inflight", "scope": "tool", "match": {"tool": "slow"}, "concurrent": 1},
    ]
    yield from _gateway(tmp_path, upstream, rules)


async def test_tool_calls_past_the_limit_get_a_tool_error_and_reach_no_upstream(
    alice_gateway: tuple[str, Gateway, str], upstream: str
) -> None:
    url, _, key = alice_gateway
    marker = f"limited-{time.time_ns()}"
    await fresh_window(3600, need=10)
    async with _client(url, key) as client:
        for n in range(2):
            assert not (await client.call_tool("getItem", {"id": f"{marker}-{n}"})).is_error
        refused = await client.call_tool("getItem", {"id": f"{marker}-2"})
        assert refused.is_error
        text = refused.content[0].text  # type: ignore[union-attr]
        assert text.startswith("Rate limit: limit 'per-consumer' reached (2 requests per hour for consumer alice)")
        retry = refused.meta[RETRY_AFTER_META]  # type: ignore[index]
        assert 1 <= retry <= 3600 and f"retry after {retry} s" in text
        # Another tool is not under that rule.
        assert not (await client.call_tool("plain", {})).is_error
    assert len(await _upstream_paths(upstream, marker)) == 2


async def test_a_tool_concurrency_limit_refuses_while_a_call_is_in_flight(
    alice_gateway: tuple[str, Gateway, str], upstream: str
) -> None:
    url, _, key = alice_gateway
    async with _client(url, key) as client, _client(url, key) as other:
        results: list[types.CallToolResult] = []

        async def slow() -> None:
            results.append(await client.call_tool("slow", {"seconds": 1.0}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await anyio.sleep(0.4)
            refused = await other.call_tool("slow", {"seconds": 0.01})
            assert refused.is_error and "limit 'slow-inflight' reached (1 calls in flight for tool slow)" in (
                refused.content[0].text  # type: ignore[union-attr]
            )
        assert not results[0].is_error
        # The first call ended: its slot is free.
        assert not (await other.call_tool("slow", {"seconds": 0.01})).is_error
