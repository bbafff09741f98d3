"""The ledger queries behind the console (store/ledger.py), on SQLite and PostgreSQL: latency
percentiles per bucket (nearest rank, computed by the database; an even sample past max_rows),
recent calls newest first with paging, one call's row."""

from __future__ import annotations

import math
from decimal import Decimal

from mcp_gateway.metering import CallRecord, Usage
from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import LedgerStore

HOUR = 3600.0
START = 1_800_000_000 // 3600 * 3600.0  # an hour's start


def record(at: float, latency: float, consumer: str = "alice") -> CallRecord:
    return CallRecord("tool", consumer, "team", "org", "k1", api="echo", tool="getItem", latency_ms=latency,
                      started_at=at, cost=Decimal("0.25"), usage=Usage(input=3), trace_id=f"t{latency}")  # fmt: skip


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * p / 100) - 1]


def test_percentiles_recent_calls_and_one_call(database_url: str) -> None:
    store = LedgerStore(Database(database_url))
    first = [float(v) for v in range(1, 101)]  # hour 1: 1..100 ms
    second = [5.0, 50.0, 7.0]  # hour 2: three calls
    store.write([record(START + i, v) for i, v in enumerate(first)])
    store.write([record(START + HOUR + i, v, "bob") for i, v in enumerate(second)])
    store.write([record(START + 3 * HOUR, 999.0)])  # outside the window asked for

    found = store.latency_percentiles(START, START + 2 * HOUR)
    assert found == [
        (int(START), nearest_rank(first, 50), nearest_rank(first, 95), 100),
        (int(START + HOUR), 7.0, 50.0, 3),
    ]
    assert (found[0][1], found[0][2]) == (50.0, 95.0)
    # Two-hour buckets: one bucket with all 103 calls.
    (bucket,) = store.latency_percentiles(START, START + 2 * HOUR, bucket_hours=2)
    assert bucket[1:] == (nearest_rank(first + second, 50), nearest_rank(first + second, 95), 103)
    # Past max_rows, every k-th row by id: 103 rows, at most 20 -> every 6th (17 rows).
    sampled = store.latency_percentiles(START, START + 2 * HOUR, max_rows=20)
    assert sum(n for *_, n in sampled) == 17
    assert store.latency_percentiles(START + 10 * HOUR, START + 11 * HOUR) == []

    latest = store.recent(2)
    assert [c["latency_ms"] for c in latest] == [999.0, 7.0]
    older = store.recent(2, before=latest[-1]["id"])
    assert [c["latency_ms"] for c in older] == [50.0, 5.0]
    assert [c["consumer"] for c in store.recent(10, consumer="bob")] == ["bob"] * 3
    one = store.call(latest[0]["id"])
    assert one is not None and one["cost"] == Decimal("0.25") and one["trace_id"] == "t999.0" and one["error"] is False
    assert store.call(10**9) is None
