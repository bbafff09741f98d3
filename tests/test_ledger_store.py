"""The ledger in the database (SQLite and PostgreSQL): rows from real calls, usage reports, the
CLI, exact costs, and what a crash can lose."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import openai
import pytest
import yaml
from mcp import Client
from sqlalchemy import select

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.config.models import Price
from mcp_gateway.metering import CallRecord, Usage
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import Selector
from mcp_gateway.store.ledger import LedgerStore, from_pusd, row_of, to_pusd
from mcp_gateway.store.schema import ledger
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway
from tests.fake_llm import FakeProvider
from tests.servers import free_port
from tests.test_access import cli, key_client
from tests.test_key_policies import PROVIDER_KEY, _config, provider  # noqa: F401 (a fixture)


def _model_call(consumer: str, cost: str, at: float, **usage: int) -> CallRecord:
    return CallRecord(
        kind="model", consumer=consumer, team="t", org="o", key_id="k1", model="gpt", provider="openai",
        usage=Usage(**usage), cost=Decimal(cost), started_at=at, latency_ms=10.0,
    )  # fmt: skip


def test_costs_are_exact_and_usage_groups_every_way(database_url: str) -> None:
    db = Database(database_url)
    try:
        store = LedgerStore(db)
        day = 86400 * 20_000  # a day boundary
        store.write(
            [
                _model_call("ann", "0.000000000001", day + 10, input=3, output=1),  # one picodollar
                _model_call("ann", "0.1", day + 3600, input=10, output=5, cache_read=4),
                _model_call("bob", "0.2", day + 86400 + 5, input=1, output=1),
            ]
        )
        store.write([CallRecord(kind="tool", consumer="bob", team="t", org="o", key_id="k2", api="echo",
                                tool="getItem", error=True, started_at=day + 20)])  # fmt: skip
        by_consumer = {r.group: r for r in store.usage("consumer")}
        assert by_consumer["ann"].cost == Decimal("0.100000000001")  # no float anywhere
        assert (by_consumer["ann"].calls, by_consumer["ann"].input_tokens, by_consumer["ann"].cache_read_tokens) == (
            2, 13, 4,
        )  # fmt: skip
        assert (by_consumer["bob"].calls, by_consumer["bob"].errors, by_consumer["bob"].cost) == (2, 1, Decimal("0.2"))
        assert [r.group for r in store.usage("consumer")] == ["bob", "ann"]  # costliest first
        assert [(r.group, r.calls) for r in store.usage("day")] == [(day, 3), (day + 86400, 1)]
        assert [(r.group, r.calls) for r in store.usage("hour")][:2] == [(day, 2), (day + 3600, 1)]
        assert {r.group: r.calls for r in store.usage("kind")} == {"model": 3, "tool": 1}
        assert {r.group: r.calls for r in store.usage("key")} == {"k1": 3, "k2": 1}
        assert [r.calls for r in store.usage("consumer", since=day + 3600, until=day + 86400)] == [1]
        assert {r.group: r.calls for r in store.usage("tool", consumer="bob")} == {None: 1, "getItem": 1}
        with pytest.raises(ValueError, match="cannot group usage by 'colour'"):
            store.usage("colour")
    finally:
        db.close()
    assert to_pusd(Decimal("0.0000000000005")) == 0 and to_pusd(Decimal("0.0000000000015")) == 2  # half-even
    assert from_pusd(to_pusd(Decimal("12.345678901234"))) == Decimal("12.345678901234")


def test_a_batch_of_many_rows_lands_whole_with_every_value_in_its_column(database_url: str) -> None:
    # SQLite writes a batch as multi-row INSERTs (SQLITE_ROWS_PER_INSERT rows each): 260 rows are
    # whole statements and a remainder; every column's value and type must come back as written.
    db = Database(database_url)
    try:
        store = LedgerStore(db)
        records = [
            CallRecord(
                kind="model" if n % 2 else "tool",
                consumer=f"c{n}",
                team=None if n % 3 else "t",
                org="o",
                key_id=f"k{n}",
                api=None if n % 2 else "echo",
                tool=None if n % 2 else f"tool{n}",
                model="gpt" if n % 2 else None,
                provider="openai" if n % 2 else None,
                status=200 + n % 7,
                error=bool(n % 5 == 0),
                usage=Usage(input=n, output=2 * n, cache_read=n % 4, reasoning=n % 3),
                cost=Decimal(n) / 1000 if n % 2 else None,
                started_at=1_800_000_000.25 + n,
                latency_ms=n / 7,
                ttft_ms=n / 3 if n % 2 else None,
                request_bytes=n * 10,
                response_bytes=n * 11,
                retries=n % 2,
                streamed=bool(n % 4 == 1),
                endpoint="chat" if n % 2 else "",
                trace_id=f"{n:032x}",
            )
            for n in range(260)
        ]
        store.write(records)
        rows = [dict(row._mapping) for row in db.query(select(ledger).order_by(ledger.c.id))]
        assert len(rows) == 260
        for row, record in zip(rows, records, strict=True):
            row.pop("id")
            assert row == row_of(record)
            assert isinstance(row["at"], float) and isinstance(row["input_tokens"], int)
    finally:
        db.close()


@pytest.mark.anyio
async def test_every_call_reaches_the_ledger_and_the_usage_command(
    tmp_path: Path,
    upstream: str,
    provider: FakeProvider,  # noqa: F811 (the fixture imported above)
    database_url: str,
) -> None:
    config = _config(tmp_path, upstream, provider.url).model_copy(update={"database_url": database_url})
    price = Price(input=2.5, output=10, cache_read=1.25)  # USD per million tokens
    config.models[0].deployments[0] = config.models[0].deployments[0].model_copy(update={"price": price})
    with running_gateway(config) as (url, gateway):
        gateway.identities.add_consumer("dev", "platform", "acme")
        _, key = keys.issue(gateway.identities, "dev")
        gateway.identities.add_policy("consumer", "dev", "allow", Selector(), None)
        await gateway.access.reload()
        gateway.vault.put("provider-key", PROVIDER_KEY)
        async with key_client(url, key) as client:
            for n in range(3):
                assert not (await client.call_tool("getItem", {"id": str(n)})).is_error

        def chat() -> None:
            client = openai.OpenAI(base_url=url.removesuffix("/mcp") + "/v1", api_key=key, max_retries=0)
            client.chat.completions.create(model="gpt-cheap", messages=[{"role": "user", "content": "hi"}])

        await anyio.to_thread.run_sync(chat)
        with anyio.fail_after(10):
            while gateway.ledger.written < 4:  # within one flush interval (1 s)
                await anyio.sleep(0.05)
        ledger = LedgerStore(gateway.db)
        assert ledger.count() == 4
        by_kind = {r.group: r for r in ledger.usage("kind")}
        assert by_kind["tool"].calls == 3 and by_kind["model"].calls == 1
        model = by_kind["model"]
        plain = model.input_tokens - model.cache_read_tokens
        expected = (Decimal(plain) * Decimal("2.5") + Decimal(model.cache_read_tokens) * Decimal("1.25")
                    + Decimal(model.output_tokens) * 10) / 1_000_000  # fmt: skip
        assert model.input_tokens > 0 and model.cost == expected

        # Another consumer's call: each consumer sees only their own through /v1/usage.
        gateway.identities.add_consumer("eve", None, None)
        _, eve = keys.issue(gateway.identities, "eve")
        gateway.identities.add_policy("consumer", "eve", "allow", Selector(), None)
        await gateway.access.reload()
        async with key_client(url, eve) as client:
            assert not (await client.call_tool("getItem", {"id": "9"})).is_error
        with anyio.fail_after(10):
            while gateway.ledger.written < 5:
                await anyio.sleep(0.05)
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(base_url=base) as http:
            own = (await http.get("/v1/usage?by=kind", headers={"Authorization": f"Bearer {key}"})).json()
            assert {r["group"]: r["calls"] for r in own["rows"]} == {"tool": 3, "model": 1}
            theirs = (await http.get("/v1/usage", headers={"x-api-key": eve})).json()  # by day
            assert [r["calls"] for r in theirs["rows"]] == [1]
            bad = await http.get("/v1/usage?by=colour", headers={"Authorization": f"Bearer {key}"})
            assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("by: one of consumer")
            assert (await http.get("/v1/usage")).status_code == 401
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            everyone = (await http.get("/admin/usage?since=1h", headers=admin)).json()
            assert {r["group"]: r["calls"] for r in everyone["rows"]} == {"dev": 4, "eve": 1}
            one = (await http.get("/admin/usage?by=tool&consumer=eve", headers=admin)).json()
            assert [(r["group"], r["calls"]) for r in one["rows"]] == [("getItem", 1)]
            assert (await http.get("/admin/usage", headers={"Authorization": f"Bearer {key}"})).status_code == 403
            late = await http.get("/admin/usage?until=tomorrow", headers=admin)
            assert late.status_code == 400 and "until: not a time" in late.json()["error"]

    data_dir = config.data_dir
    env_config = tmp_path / "usage.yaml"
    env_config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "database_url": config.database_url}))
    shown = json.loads(cli(tmp_path, "usage", "--by", "consumer", "--json", "-c", str(env_config)))
    assert [(r["group"], r["calls"]) for r in shown["rows"]] == [("dev", 4), ("eve", 1)]
    assert Decimal(shown["rows"][0]["cost_usd"]) == by_kind["model"].cost
    table = cli(tmp_path, "usage", "--by", "tool", "--since", "1h", "-c", str(env_config))
    assert "getItem" in table and "CALLS" in table
    csv_text = cli(tmp_path, "usage", "--by", "day", "--csv", "-c", str(env_config))
    assert csv_text.splitlines()[0].startswith("day,calls,errors")
    assert "no calls in the ledger" in cli(tmp_path, "usage", "--until", "2000-01-01", "-c", str(env_config))
    # keys and consumers lists say when each was last used and what it spent.
    listed = {k["consumer"]: k for k in json.loads(cli(tmp_path, "keys", "list", "--json", "-c", str(env_config)))}
    assert Decimal(listed["dev"]["spend_usd"]) == by_kind["model"].cost and listed["dev"]["calls"] == 4
    assert listed["eve"]["calls"] == 1 and listed["eve"]["last_used_at"] > listed["dev"]["last_used_at"]
    table = cli(tmp_path, "consumers", "list", "-c", str(env_config))
    assert "LAST USED" in table and "SPEND USD" in table and f"{by_kind['model'].cost:.6f}" in table


def test_a_crash_loses_at_most_one_flush_interval(tmp_path: Path, upstream: str) -> None:
    """kill -9 of a serving gateway: every call answered more than `flush_seconds` before is in the ledger."""
    port = free_port()
    config = {
        "data_dir": str(tmp_path / "data"),
        "server": {"host": "127.0.0.1", "port": port},
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
        "metering": {"flush_seconds": 0.5},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mcp_gateway.cli", "serve", "-c", str(path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.1)

        async def calls() -> int:
            async with Client(base + "/mcp", mode="2026-07-28") as client:
                for n in range(20):
                    assert not (await client.call_tool("getItem", {"id": str(n)})).is_error
            return 20

        answered = anyio.run(calls)
        time.sleep(0.5 + 0.5)  # one flush interval, and as much again for the write itself
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    db = Database(f"sqlite:///{tmp_path / 'data' / 'gateway.db'}")
    try:
        assert LedgerStore(db).count() == answered
    finally:
        db.close()


def test_rollups_and_pruning_keep_every_report_the_same(database_url: str) -> None:
    """Hours two or more hours old are rolled into hourly totals once; raw rows past retention go;
    every report reads the same before and after, whole hours from the totals, the rest raw."""
    db = Database(database_url)
    try:
        store = LedgerStore(db)
        start = 3600 * 500_000  # an hour boundary
        records = []
        for n in range(60):  # 6 hours, 10 calls each; two consumers, tools and models
            at = start + n * 360 + 7
            if n % 3:
                records.append(_model_call("ann" if n % 2 else "bob", f"0.00{n}", at, input=n, output=2 * n))
            else:
                records.append(CallRecord(kind="tool", consumer=None, team=None, org=None, key_id=None,
                                          api="echo", tool="getItem", error=n % 2 == 0, started_at=at,
                                          latency_ms=float(n)))  # fmt: skip
        store.write(records)
        queries = [("consumer", None, None), ("tool", None, None), ("hour", None, None), ("kind", None, None),
                   ("consumer", start + 1800, start + 4 * 3600 + 900), ("day", start + 3600, None)]  # fmt: skip
        before = {q: [r.public() for r in store.usage(q[0], since=q[1], until=q[2])] for q in queries}
        starts = [0.0, float(start + 3600), float(start + 5 * 3600)]  # whole hours, as budget periods are
        spent = dict(store.spend_since(starts))

        now = start + 6 * 3600 + 60  # hours 0-3 have ended at least 2 hours ago
        assert store.rollup(now) == 4 and store.rolled_through() == start // 3600 + 3
        assert store.rollup(now) == 0  # each hour once
        assert {q: [r.public() for r in store.usage(q[0], since=q[1], until=q[2])] for q in queries} == before

        # Raw rows older than 3 hours and rolled up go, in batches; later ones (not rolled) stay.
        assert store.prune(now, keep_seconds=3 * 3600, batch=7) == 31  # before now - 3 h: hours 0-2, 1 of hour 3
        assert store.count() == 29
        assert store.prune(now, keep_seconds=0, batch=7) == 9  # the rest of hour 3; hours 4-5: not rolled yet
        after = {q: [r.public() for r in store.usage(q[0], since=q[1], until=q[2])] for q in queries[:4]}
        assert dict(store.spend_since(starts)) == spent  # budgets rebuild the same spend after pruning
        assert dict(store.spend_since(starts, where=("consumer", "ann"))) == {
            k: v for k, v in spent.items() if k[0] == "ann"
        }
        assert after == {q: before[q] for q in queries[:4]}
        # A period cut inside a pruned hour can only be told by whole hours now: it counts the hour.
        cut = store.usage("kind", since=start + 1800, until=start + 3600)
        assert sum(r.calls for r in cut) == 0  # no whole hour inside, the raw rows are gone
    finally:
        db.close()


def test_a_running_gateway_rolls_up_and_prunes_its_ledger(tmp_path: Path, upstream: str) -> None:
    config = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
            "metering": {"retention_days": 1},
        }
    )
    db = Database(config.database)
    try:
        old = time.time() - 3 * 86400
        LedgerStore(db).write([_model_call("ann", "0.5", old + n, input=1, output=1) for n in range(5)])
    finally:
        db.close()
    with running_gateway(config) as (_, gateway):
        store = gateway.ledger_store
        deadline = time.monotonic() + 10
        while store.count():  # rolled up, then pruned, at start (then every few minutes)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [(r.group, r.calls, r.cost) for r in store.usage("consumer")] == [("ann", 5, Decimal("2.5"))]
