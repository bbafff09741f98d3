"""Four gateway processes sharing one PostgreSQL and one Redis, under 32 concurrent callers: a
limit admits exactly its count across them, every call lands in the one ledger, and a consumer
and key made through one replica's database work on all of them."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from mcp import Client

from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import LedgerStore
from tests.conftest import ECHO_SPEC
from tests.db_servers import PostgresServer
from tests.servers import free_port

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
    database = postgres.database()
    env = {**os.environ, "MCP_GATEWAY_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
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
            config.update({k: v for k, v in extra.items() if k != "apis"})
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
