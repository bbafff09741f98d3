"""Four gateway processes sharing one PostgreSQL and one Redis, under 32 concurrent callers: a
limit admits exactly its count across them, every call lands in the one ledger, a kill -9 loses
at most a flush interval of rows and its reservations only until its lease lapses, a budget is
never passed by tool and model calls together, and a Redis restart mid-load follows
`limits.redis_failure` and leaves budgets consistent with the ledger."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from mcp import Client

from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import LedgerStore
from tests.conftest import ECHO_SPEC
from tests.db_servers import PostgresServer
from tests.fake_llm import FakeProvider
from tests.redis_server import RedisServer
from tests.servers import free_port, serve_in_thread
from tests.test_llm import OPENAI_KEY

REPLICAS = 4
CALLERS = 32
CALLS = 100
LIMIT = 60  # per hour, for getItem, across every replica


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: str, postgres: PostgresServer, redis_url: str
) -> Iterator[list[Replica]]:
    """Four `serve` processes; a test's `replica_config` marker adds to (or replaces parts of) their config."""
    marker = request.node.get_closest_marker("replica_config")
    extra: dict[str, object] = marker.args[0] if marker else {}
    if request.node.get_closest_marker("own_redis"):  # a Redis the test stops and starts
        redis_url = request.getfixturevalue("redis_server").url
    if "models" in extra:  # served by a fake OpenAI (its URL known only now)
        fake = request.getfixturevalue("openai_provider")
        extra = {**extra, "models": [_at(m, fake.url) for m in extra["models"]]}  # type: ignore[attr-defined]
    database = postgres.database()
    env = {**os.environ, "MCP_GATEWAY_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(), "FAKE_KEY": OPENAI_KEY}
    prefix = f"replicas-{os.getpid()}-{time.monotonic_ns()}:"
    processes, urls = [], []
    try:
        for n in range(REPLICAS):
            port = free_port()
            config = {
                "data_dir": str(tmp_path / f"replica{n}"),
                "database_url": database,
                "server": {"host": "127.0.0.1", "port": port},
                "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
                "metering": {"flush_seconds": 0.5},
                "limits": {
                    "redis_url": redis_url,
                    "redis_timeout": 2.0,  # a loaded machine's slow round trip is not an outage
                    "redis_prefix": prefix,
                    "rules": [
                        {
                            "name": "getitem-hourly",
                            "scope": "global",
                            "match": {"tool": ["getItem"]},
                            "requests_per_hour": LIMIT,
                        }
                    ],
                },
            }
            if "apis" in extra:
                config["apis"] = [{**api, "base_url": upstream} for api in extra["apis"]]  # type: ignore[attr-defined]
            config.update({k: v for k, v in extra.items() if k not in ("apis", "limits_extra")})
            config["limits"].update(extra.get("limits_extra", {}))  # type: ignore[attr-defined]
            path = tmp_path / f"replica{n}.yaml"
            path.write_text(yaml.safe_dump(config))
            log = (tmp_path / f"replica{n}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mcp_gateway.cli", "serve", "-c", str(path)], env=env, stdout=log, stderr=log
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        for url, process in zip(urls, processes, strict=True):
            while True:
                try:
                    if httpx2.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                assert process.poll() is None, (tmp_path / f"replica{urls.index(url)}.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "a replica did not become ready"
                time.sleep(0.1)
        yield [Replica(url, process) for url, process in zip(urls, processes, strict=True)]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def openai_provider() -> Iterator[FakeProvider]:
    """A fake OpenAI on loopback (its key: the replicas' FAKE_KEY)."""
    fake = FakeProvider(OPENAI_KEY)
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


def _at(model: dict[str, Any], url: str) -> dict[str, Any]:
    """`model` with its deployments' base_url the fake's."""
    deployments = [{**d, "base_url": url + "/v1", "api_key": "env:FAKE_KEY"} for d in model["deployments"]]
    return {**model, "deployments": deployments}


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]


def _served(replicas: list[Replica], calls: int, refused_by: str) -> list[bool]:
    """`calls` getItem calls from 32 concurrent callers spread over the replicas: whether each was
    served; a refusal must name `refused_by` (nothing else may refuse)."""
    outcomes: list[bool] = []

    async def caller(number: int, todo: list[int]) -> None:
        async with Client(replicas[number % REPLICAS].url + "/mcp", mode="2026-07-28") as client:
            while todo:
                n = todo.pop()
                result = await client.call_tool("getItem", {"id": str(n)})
                if result.is_error:
                    text = result.content[0].text  # type: ignore[union-attr]
                    assert refused_by in text, text
                outcomes.append(not result.is_error)

    async def load() -> None:
        todo = list(range(calls))
        async with anyio.create_task_group() as tg:
            for number in range(CALLERS):
                tg.start_soon(caller, number, todo)

    anyio.run(load)
    return outcomes


def _ledger(tmp_path: Path) -> Database:
    """The database the replicas share."""
    return Database(yaml.safe_load((tmp_path / "replica0.yaml").read_text())["database_url"])


def test_four_replicas_admit_exactly_the_limit_and_share_one_ledger(replicas: list[Replica], tmp_path: Path) -> None:
    if time.time() % 3600 > 3600 - 60:  # the hour's window must not turn over during the test
        time.sleep(3600 - time.time() % 3600 + 1)
    outcomes = _served(replicas, CALLS, "getitem-hourly")
    assert len(outcomes) == CALLS
    assert sum(outcomes) == LIMIT  # exactly the limit, across four processes

    # After a flush interval every call is in the one ledger, whichever replica served it.
    time.sleep(1.5)
    database = _ledger(tmp_path)
    try:
        ledger = LedgerStore(database)
        deadline = time.monotonic() + 10
        while ledger.count() < CALLS:
            assert time.monotonic() < deadline, f"{ledger.count()} of {CALLS} calls in the ledger"
            time.sleep(0.1)
        (row,) = ledger.usage("tool")
        assert (row.group, row.calls, row.errors) == ("getItem", CALLS, CALLS - LIMIT)
    finally:
        database.close()


def test_kill_9_of_a_replica_mid_load_loses_no_row_older_than_a_flush_interval(
    replicas: list[Replica], tmp_path: Path
) -> None:
    """Acknowledged calls are in the ledger, except those the killed replica answered in its last
    flush interval (0.5 s here, plus the batch it was writing)."""
    acks: list[tuple[int, float]] = []  # (replica, when answered)
    killed_at: list[float] = []

    async def caller(number: int, todo: list[int]) -> None:
        which = number % REPLICAS
        try:
            async with Client(replicas[which].url + "/mcp", mode="2026-07-28") as client:
                while todo:
                    n = todo.pop()
                    await client.call_tool("getItem", {"id": str(n)})
                    acks.append((which, time.monotonic()))
                    if len(acks) == CALLS // 2 and not killed_at:
                        replicas[0].process.kill()  # SIGKILL: no shutdown flush
                        killed_at.append(time.monotonic())
        except Exception:
            assert which == 0, "only the killed replica's callers may fail"

    async def load() -> None:
        todo = list(range(CALLS))
        async with anyio.create_task_group() as tg:
            for number in range(CALLERS):
                tg.start_soon(caller, number, todo)

    anyio.run(load)
    assert killed_at and replicas[0].process.wait(10) == -9
    cutoff = killed_at[0] - 0.5 - 0.5  # one flush interval, and the write it may have been doing
    must = sum(1 for which, at in acks if which != 0 or at < cutoff)
    time.sleep(1.5)
    database = _ledger(tmp_path)
    try:
        count = LedgerStore(database).count()
    finally:
        database.close()
    # At most the killed replica's callers' calls in flight were recorded but never answered.
    assert must <= count <= len(acks) + CALLERS // REPLICAS, (must, count, len(acks))


BUDGET_CALLS = 25  # a 1 USD budget at 0.1 USD a call: exactly 10 fit


@pytest.mark.replica_config(
    {
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "cost": "0.1"}],
        "budgets": {"rules": [{"name": "one-dollar", "scope": "global", "usd": "1", "period": "total"}]},
    }
)
def test_four_replicas_never_spend_past_a_budget(replicas: list[Replica], tmp_path: Path) -> None:
    """32 callers on four processes against one 1 USD budget of 0.1 USD calls: each call's cost is
    reserved before it is sent, so exactly 10 are served (the bound: no call in flight can cost more
    than it reserved) and the ledger holds 1 USD of spend."""
    outcomes = _served(replicas, BUDGET_CALLS, "one-dollar")
    assert (len(outcomes), sum(outcomes)) == (BUDGET_CALLS, 10)
    time.sleep(1.5)
    database = _ledger(tmp_path)
    try:
        (row,) = LedgerStore(database).usage("tool")
        assert (row.calls, row.cost) == (BUDGET_CALLS, Decimal("1"))
    finally:
        database.close()


# A call waits on Redis at most 3 x limits.redis_timeout (2 s in these tests: connecting and the
# command, each bounded, and the whole bounded), plus a second of a loaded machine's slack.
HANG_BOUND = 3 * 2.0 + 1
RESTART_RULES = {
    "rules": [{"name": "roomy", "scope": "global", "match": {"tool": ["getItem"]}, "requests_per_hour": 10**7}],
}
BUDGET = {"rules": [{"name": "roomy-budget", "scope": "global", "usd": "100000", "period": "total"}]}


@dataclass
class Outcome:
    started: float
    ended: float
    served: bool
    text: str


def _through_a_redis_restart(replicas: list[Replica], redis: RedisServer) -> tuple[list[Outcome], float, float]:
    """32 callers over the four replicas, calling for 0.5 s, Redis killed for 2 s, then 3 s after it is back;
    every call's outcome, when Redis was killed and when it was started again."""
    outcomes: list[Outcome] = []
    stop = anyio.Event()
    marks: list[float] = []

    async def caller(number: int) -> None:
        async with Client(replicas[number % REPLICAS].url + "/mcp", mode="2026-07-28") as client:
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                result = await client.call_tool("getItem", {"id": f"{number}-{n}"})
                text = "" if not result.is_error else result.content[0].text  # type: ignore[union-attr]
                outcomes.append(Outcome(started, time.monotonic(), not result.is_error, text))
                n += 1

    async def conductor() -> None:
        while len(outcomes) < 2 * CALLERS:  # every caller connected and calling
            await anyio.sleep(0.05)
        await anyio.sleep(0.5)
        # Each mark is taken before its action: the thread hop back to a busy event loop can come
        # late, and a call refused after the kill must not count as one ended before it.
        marks.append(time.monotonic())
        await anyio.to_thread.run_sync(redis.stop)
        await anyio.sleep(2)
        marks.append(time.monotonic())
        await anyio.to_thread.run_sync(redis.start)
        await anyio.sleep(3)
        stop.set()

    async def load() -> None:
        async with anyio.create_task_group() as tg:
            for number in range(CALLERS):
                tg.start_soon(caller, number)
            tg.start_soon(conductor)

    anyio.run(load)
    down, up = marks
    return outcomes, down, up


def _budget_and_ledger(replicas: list[Replica], tmp_path: Path) -> tuple[Decimal, Decimal]:
    """After the ledger's flush: what the budget holds as spent (Redis, via /admin/budgets) and what
    the ledger says the calls cost."""
    time.sleep(1.5)
    response = httpx2.get(replicas[1].url + "/admin/budgets", headers={"Authorization": f"Bearer {ADMIN}"})
    (balance,) = response.json()["budgets"]
    database = _ledger(tmp_path)
    try:
        rows = LedgerStore(database).usage("day")  # every call, tool or model
    finally:
        database.close()
    return Decimal(balance["spent_usd"]), sum((row.cost for row in rows), Decimal(0))


ADMIN = "replicas-admin-token-0123456789abcdef"


def restarted(mode: str) -> dict[str, object]:
    """The replicas' config for a Redis restart test in `mode` (limits.redis_failure)."""
    return {
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "cost": "0.1"}],
        "admin_token": ADMIN,
        "budgets": BUDGET,
        "limits_extra": {**RESTART_RULES, "redis_failure": mode},
    }


@pytest.mark.own_redis
@pytest.mark.replica_config(restarted("fail_closed"))
def test_a_redis_restart_mid_load_refuses_while_down_with_fail_closed(
    replicas: list[Replica], redis_server: RedisServer, tmp_path: Path
) -> None:
    """fail_closed: calls are refused quickly while Redis is down (a tool error that says why; never
    a hang), served again once it is back; the budget's account, rebuilt from the ledger by the
    first call after the restart, then equals the ledger's spend exactly (every call before the
    outage was written long before the restart, and none was served during it)."""
    outcomes, down, up = _through_a_redis_restart(replicas, redis_server)
    before = [o for o in outcomes if o.ended < down]
    during = [o for o in outcomes if down + 0.3 < o.started and o.ended < up]
    after = [o for o in outcomes if o.started > up + 1.5]  # past the pause after a failure
    assert before and during and after, (len(before), len(during), len(after))
    assert all(o.served for o in before), next(o.text for o in before if not o.served)
    assert not any(o.served for o in during), [round(o.started - down, 2) for o in during if o.served][:8]
    assert all("the limits store is unreachable" in o.text for o in during), during[0].text
    refused_after = sorted({(round(o.started - up, 1), o.text[:150]) for o in after if not o.served})
    assert not refused_after, refused_after[:8]
    longest = max(o.ended - o.started for o in outcomes)
    assert longest < HANG_BOUND, longest  # never a hang
    assert all(r.process.poll() is None for r in replicas)
    spent, ledger = _budget_and_ledger(replicas, tmp_path)
    assert ledger == Decimal("0.1") * sum(o.served for o in outcomes)
    assert spent == ledger, (spent, ledger)


@pytest.mark.own_redis
@pytest.mark.replica_config(restarted("fail_open"))
def test_a_redis_restart_mid_load_lets_calls_through_with_fail_open(
    replicas: list[Replica], redis_server: RedisServer, tmp_path: Path
) -> None:
    """fail_open: every call is served through the outage, none waits long; after the restart the
    budget's account is rebuilt from the ledger, so it lacks at most the calls not yet written
    when the first call after the restart rebuilt it (those answered within a flush interval,
    0.5 s, and a write before the restart), and never holds more than the ledger."""
    outcomes, down, up = _through_a_redis_restart(replicas, redis_server)
    assert all(o.served for o in outcomes), next(o.text for o in outcomes if not o.served)
    assert any(down + 0.3 < o.started and o.ended < up for o in outcomes)
    longest = max(o.ended - o.started for o in outcomes)
    assert longest < HANG_BOUND, longest
    assert all(r.process.poll() is None for r in replicas)
    spent, ledger = _budget_and_ledger(replicas, tmp_path)
    assert ledger == Decimal("0.1") * len(outcomes)
    unwritten = sum(1 for o in outcomes if up - 1.5 < o.ended < up + 0.5 or (o.started < up < o.ended))
    assert ledger - Decimal("0.1") * unwritten <= spent <= ledger, (spent, ledger, unwritten)


@pytest.mark.replica_config(
    {
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "cost": "0.1"}],
        "admin_token": ADMIN,
        "budgets": BUDGET,
        "limits_extra": {"concurrency_lease_seconds": 1},
    }
)
def test_a_killed_replicas_reservations_lapse_with_its_lease(replicas: list[Replica]) -> None:
    """Eight slow calls in flight on one replica hold 0.8 USD of a budget; kill -9 of that replica
    leaves them held only until its lease (1 s here) lapses, while a live replica's long call keeps
    its reservation (renewed) and settles to its cost."""

    def balance() -> dict[str, str]:
        response = httpx2.get(replicas[2].url + "/admin/budgets", headers={"Authorization": f"Bearer {ADMIN}"})
        budgets = response.json()["budgets"]
        return budgets[0] if budgets else {"reserved_usd": "0", "spent_usd": "0"}

    async def wait_for(reserved: str, within: float) -> None:
        deadline = time.monotonic() + within
        while (seen := await anyio.to_thread.run_sync(balance))["reserved_usd"] != reserved:
            assert time.monotonic() < deadline, (reserved, seen)
            await anyio.sleep(0.1)

    async def slow(replica: Replica, seconds: float) -> None:
        with contextlib.suppress(Exception):  # the killed replica's callers lose their connection
            async with Client(replica.url + "/mcp", mode="2026-07-28") as client:
                await client.call_tool("slow", {"seconds": seconds})

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(slow, replicas[0], 20)
            tg.start_soon(slow, replicas[1], 5)
            await wait_for("0.9", 15)
            replicas[0].process.kill()
            await wait_for("0.1", 4)  # the dead replica's 0.8 dropped, the live one's 0.1 kept
            await wait_for("0", 10)  # the live call ended and settled
            tg.cancel_scope.cancel()

    anyio.run(scenario)
    assert balance()["spent_usd"] == "0.1"


MIXED_CAP = Decimal("0.01")  # room for both kinds early on; 200 attempts need about 0.019
GPT = {"name": "gpt-test", "deployments": [{"provider": "openai", "model": "gpt-4o",
       "price": {"input": 2.5, "output": 10, "cache_read": 1.25}}]}  # fmt: skip


@pytest.mark.replica_config(
    {
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "cost": "0.0001"}],
        "models": [GPT],
        "admin_token": ADMIN,
        "budgets": {"rules": [{"name": "mixed", "scope": "global", "usd": str(MIXED_CAP), "period": "total"}]},
        "limits_extra": RESTART_RULES,  # the budget, not the 60-an-hour limit, must be what refuses
    }
)
def test_four_replicas_hold_one_budget_for_tool_and_model_calls(
    replicas: list[Replica], tmp_path: Path, openai_provider: FakeProvider
) -> None:
    """32 callers, half making tool calls (0.0001 USD each, reserved exactly) and half chat calls
    (each reserving its prompt and max_tokens at the output price, about 0.00026 USD, and costing
    0.00009375), on four replicas against one 0.01 USD budget: spend never passes the cap (every
    reservation is a true maximum, so the bound is zero), every refusal names the budget, and the
    account in Redis equals the ledger."""
    tool_served, chat_served, refused = [0], [0], [0]
    attempts = list(range(200))

    async def tool_caller(number: int) -> None:
        async with Client(replicas[number % REPLICAS].url + "/mcp", mode="2026-07-28") as client:
            while attempts:
                attempts.pop()
                result = await client.call_tool("getItem", {"id": str(number)})
                if result.is_error:
                    assert "budget 'mixed'" in result.content[0].text  # type: ignore[union-attr]
                    refused[0] += 1
                else:
                    tool_served[0] += 1

    async def chat_caller(number: int) -> None:
        url = replicas[number % REPLICAS].url + "/v1/chat/completions"
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
        async with httpx2.AsyncClient(timeout=30) as http:
            while attempts:
                attempts.pop()
                response = await http.post(url, json=body)
                if response.status_code == 429:
                    assert response.json()["error"]["code"] == "insufficient_quota", response.text
                    refused[0] += 1
                else:
                    assert response.status_code == 200, response.text
                    chat_served[0] += 1

    async def load() -> None:
        async with anyio.create_task_group() as tg:
            for number in range(CALLERS):
                tg.start_soon(tool_caller if number % 2 else chat_caller, number)

    anyio.run(load)
    assert tool_served[0] and chat_served[0] and refused[0], (tool_served, chat_served, refused)
    spent, total = _budget_and_ledger(replicas, tmp_path)
    chat_cost = (8 * Decimal("2.5") + 3 * Decimal("1.25") + 7 * 10) / 1_000_000
    assert total == tool_served[0] * Decimal("0.0001") + chat_served[0] * chat_cost
    assert total <= MIXED_CAP
    assert spent == total
