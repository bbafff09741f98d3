"""The ledger's writer: records batched in memory, written off the hot path.

`record()` only appends to a list (no I/O, no lock: it runs on the event loop). A background
task hands the batch to the sink in a worker thread every `flush_interval` seconds, or sooner
when `max_batch` records wait, and once more at shutdown. So a crash (kill -9, power) loses
at most the records of the last `flush_interval` plus the batch being written; a clean stop
loses none.

A sink that fails (a database restarting) keeps its batch: it is retried at the next flush,
oldest records first. The backlog is bounded (`max_pending`): past it, the oldest records are
dropped and counted, and the count is logged, so a dead database never exhausts memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import anyio

from mcp_gateway.metering.records import CallRecord

logger = logging.getLogger("mcp_gateway.ledger")


class LedgerSink(Protocol):
    """Where batches of records are stored (a database table)."""

    def write(self, records: Sequence[CallRecord]) -> None:
        """Store `records` in one transaction; blocking (called in a worker thread). Raises on failure."""
        ...


class Ledger:
    """A Meter that writes records to `sink` in batches, off the hot path."""

    def __init__(
        self,
        sink: LedgerSink,
        *,
        flush_interval: float = 1.0,
        max_batch: int = 1000,
        max_pending: int = 200_000,
    ) -> None:
        self.sink = sink
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped = 0  # records given up because the backlog was full
        self.written = 0
        self._pending: list[CallRecord] = []
        self._wake = anyio.Event()
        self._lock = anyio.Lock()  # one write at a time: batches land in order
        self._failing_since: float | None = None
        self._dropped_logged_at = -10.0

    @property
    def pending(self) -> int:
        """Records waiting to be written (the queue depth)."""
        return len(self._pending)

    def record(self, record: CallRecord) -> None:
        """Take one record; returns at once."""
        self._pending.append(record)
        if len(self._pending) > self.max_pending:
            self._drop(len(self._pending) - self.max_pending)
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    async def run(self) -> None:
        """Flush every `flush_interval` (sooner when a batch is full) until cancelled; then flush once more."""
        try:
            while True:
                with anyio.move_on_after(self.flush_interval):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> None:
        """Write everything pending now (in batches of `max_batch`); a failing sink keeps it for later."""
        async with self._lock:
            # Only what is pending now: records keep arriving while a batch is written, and writing
            # those too would never end under steady load (a stream of tiny batches, each a
            # transaction and a thread hop, instead of one batch per interval).
            due = len(self._pending)
            while due > 0 and self._pending:
                batch = self._pending[: min(self.max_batch, due)]
                del self._pending[: len(batch)]
                due -= len(batch)
                try:
                    await anyio.to_thread.run_sync(self.sink.write, batch)
                except Exception as exc:
                    self._pending[:0] = batch
                    if len(self._pending) > self.max_pending:
                        self._drop(len(self._pending) - self.max_pending)
                    self._failed(exc)
                    return
                self.written += len(batch)
                if self._failing_since is not None:
                    logger.warning("ledger: writing again after %.0fs", time.monotonic() - self._failing_since)
                    self._failing_since = None

    def _failed(self, exc: Exception) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.error(
                "ledger: cannot write %d record(s) (%s: %s); kept and retried every %gs",
                len(self._pending), type(exc).__name__, exc, self.flush_interval,
            )  # fmt: skip

    def _drop(self, count: int) -> None:
        del self._pending[:count]
        self.dropped += count
        now = time.monotonic()
        if now - self._dropped_logged_at >= 10:  # a line per 10 s, not per call
            self._dropped_logged_at = now
            logger.error(
                "ledger: the oldest records are being dropped, %d were waiting (%d dropped so far)",
                self.max_pending, self.dropped,
            )  # fmt: skip
