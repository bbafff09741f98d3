"""The ledger's writer: batches off the hot path, the crash bound, a failing or slow sink."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import anyio
import pytest

from mcp_gateway.metering import CallRecord
from mcp_gateway.metering.ledger import Ledger

pytestmark = pytest.mark.anyio


def _record(n: int) -> CallRecord:
    return CallRecord(kind="tool", consumer="dev", team=None, org=None, key_id=None, api="echo", tool=f"t{n}")


class Table:
    """A sink keeping what it was given, batch by batch; it can be made to fail or to be slow."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failing = False
        self.delay = 0.0
        self.threads: set[int] = set()

    def write(self, records: Sequence[CallRecord]) -> None:
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("the database is restarting")
        self.batches.append([r.tool or "" for r in records])

    @property
    def rows(self) -> list[str]:
        return [row for batch in self.batches for row in batch]


async def test_records_are_written_within_one_flush_interval_in_order_off_the_event_loop() -> None:
    table = Table()
    ledger = Ledger(table, flush_interval=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.run)
        for n in range(50):
            ledger.record(_record(n))
        assert table.rows == []  # nothing written on the caller's path
        await anyio.sleep(0.5)
        assert table.rows == [f"t{n}" for n in range(50)]
        assert threading.get_ident() not in table.threads
        tg.cancel_scope.cancel()


async def test_a_full_batch_is_written_at_once_and_shutdown_flushes_the_rest() -> None:
    table = Table()
    ledger = Ledger(table, flush_interval=60, max_batch=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.run)
        await anyio.sleep(0.05)
        for n in range(25):
            ledger.record(_record(n))
        with anyio.fail_after(5):
            while len(table.rows) < 20:  # two full batches, long before the 60 s interval
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert table.rows == [f"t{n}" for n in range(25)]  # the last 5 at shutdown
    assert ledger.pending == 0 and ledger.written == 25


async def test_a_failing_sink_keeps_its_records_and_catches_up_in_order(caplog: pytest.LogCaptureFixture) -> None:
    table = Table()
    table.failing = True
    ledger = Ledger(table, flush_interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.run)
        for n in range(5):
            ledger.record(_record(n))
        await anyio.sleep(0.3)
        for n in range(5, 8):
            ledger.record(_record(n))
        assert table.rows == [] and ledger.pending == 8
        table.failing = False
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert table.rows == [f"t{n}" for n in range(8)]
    errors = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.ledger" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the database is restarting" in errors[0]  # once, not every retry


async def test_the_backlog_is_bounded_and_drops_the_oldest() -> None:
    table = Table()
    table.failing = True
    ledger = Ledger(table, flush_interval=0.05, max_pending=100)
    for n in range(250):
        ledger.record(_record(n))
    assert ledger.pending == 100 and ledger.dropped == 150
    await ledger.flush()  # fails: nothing lost beyond the bound
    assert ledger.pending == 100
    table.failing = False
    await ledger.flush()
    assert table.rows == [f"t{n}" for n in range(150, 250)]


async def test_a_slow_sink_never_holds_up_the_callers() -> None:
    table = Table()
    table.delay = 0.5
    ledger = Ledger(table, flush_interval=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.run)
        ledger.record(_record(0))
        await anyio.sleep(0.05)  # the write of t0 has begun and sleeps in its thread
        started = time.perf_counter()
        for n in range(1, 1001):
            ledger.record(_record(n))
            await anyio.sleep(0)
        assert time.perf_counter() - started < 0.4  # the loop kept turning while the sink slept
        with anyio.fail_after(5):
            while len(table.rows) < 1001:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert table.rows == [f"t{n}" for n in range(1001)]


async def test_records_arriving_during_a_write_wait_for_the_next_flush() -> None:
    # Under steady load a flush that also wrote what arrived meanwhile never ended: a stream of
    # tiny batches, each a transaction and a thread hop, instead of one batch per interval.
    table = Table()
    table.delay = 0.3
    ledger = Ledger(table, flush_interval=60)
    for n in range(3):
        ledger.record(_record(n))
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.flush)
        await anyio.sleep(0.1)  # the write of t0-t2 has begun
        for n in range(3, 6):
            ledger.record(_record(n))
    assert table.batches == [["t0", "t1", "t2"]] and ledger.pending == 3
    await ledger.flush()
    assert table.batches == [["t0", "t1", "t2"], ["t3", "t4", "t5"]] and ledger.pending == 0
