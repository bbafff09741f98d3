"""One access line per call, tool or model: who, what, how it went, how long, what it used and
cost, and its trace id. Never arguments, prompts or answers: a call record holds none.

The line is text for people; its fields also ride on the log record (`record.call()`, made only
when asked: the text format does not), which the JSON format (observe/json_log.py) writes as keys
of the line's object.

Tool calls' lines are made in batches. Served, making a line as its call ended cost about 25 us
of CPU at concurrency 1, on the event loop between one answer and the next request (a tenth of
such a call); made together, much less (the logging code stays warm). A call's record waits at
most `interval` seconds (the event loop's timer), and its line carries the time the call was
recorded, not the time it was written. The timer makes `chunk` lines per turn of the event loop
and comes back on the next turn for the rest: a tenth of a second's lines made in one go held
the loop for milliseconds (the gateway's p99 at concurrency 1 was ten times its median), while
between chunks the requests that came meanwhile are read. Lines are made at once where no event
loop runs (no timer would come back), when `capacity` records wait, and at `flush()` (the
gateway's stop). A
process killed outright loses at most `interval` seconds of lines; the ledger and the metrics do
not depend on them. A model call's line is made at once: such a call spends milliseconds at its
provider, and the line is a small part of it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from functools import partial
from typing import Any

from mcp_gateway.metering.records import CallRecord

tool_logger = logging.getLogger("mcp_gateway.calls")
model_logger = logging.getLogger("mcp_gateway.models")


def call_fields(record: CallRecord) -> dict[str, Any]:
    """The access line's fields: names, counts and times only."""
    fields: dict[str, Any] = {
        "kind": record.kind,
        "consumer": record.consumer,
        "status": record.status,
        "error": record.error,
        "duration_ms": round(record.latency_ms, 3),
        "cost": None if record.cost is None else str(record.cost),
        "trace_id": record.trace_id,
        "bytes_in": record.request_bytes,
        "bytes_out": record.response_bytes,
    }
    if record.kind == "tool":
        fields.update(api=record.api, tool=record.tool)
    else:
        u = record.usage
        fields.update(
            model=record.model,
            provider=record.provider,
            deployment=record.deployment,
            tokens={"input": u.input, "output": u.output, "cache_read": u.cache_read,
                    "cache_write": u.cache_write, "reasoning": u.reasoning, "estimated": u.estimated},
            ttft_ms=None if record.ttft_ms is None else round(record.ttft_ms, 3),
            retries=record.retries,
            fallbacks=record.fallbacks,
            stream=record.streamed,
        )  # fmt: skip
    if record.error_kind is not None:
        fields["error_kind"] = record.error_kind
    return fields


INTERVAL = 0.1  # seconds a call's record may wait for its line
CAPACITY = 1000  # records that may wait
CHUNK = 32  # lines made per turn of the event loop (about 0.1 ms)


class AccessLog:
    """A Meter writing one INFO line per call to `mcp_gateway.calls` (tools, in batches: see the
    module's text) or `mcp_gateway.models`."""

    def __init__(self, *, interval: float = INTERVAL, capacity: int = CAPACITY, chunk: int = CHUNK) -> None:
        self.interval = interval
        self.capacity = capacity
        self.chunk = chunk
        self._pending: list[tuple[CallRecord, float]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # whose timer will make the pending lines
        self._lock = threading.Lock()  # records may come from threads too

    def record(self, record: CallRecord) -> None:
        if record.kind != "tool":
            # A model call takes milliseconds at its provider: its line is made at once.
            if model_logger.isEnabledFor(logging.INFO):
                _line(record, time.time())
            return
        if not tool_logger.isEnabledFor(logging.INFO):
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._pending.append((record, time.time()))
            now = loop is None or len(self._pending) >= self.capacity or (self._loop not in (None, loop))
            if not now and self._loop is None:
                self._loop = loop
                loop.call_later(self.interval, self._flush_some, loop)  # type: ignore[union-attr]
        if now:  # no timer would come back (no loop, or one on another loop), or enough wait
            self.flush()

    def flush(self) -> None:
        """Write the lines of every record that waits, in order."""
        with self._lock:
            pending, self._pending, self._loop = self._pending, [], None
        for record, at in pending:
            _line(record, at)

    def _flush_some(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer's turn: the lines of the oldest `chunk` records; the rest on the loop's next turn."""
        with self._lock:
            some, self._pending = self._pending[: self.chunk], self._pending[self.chunk :]
            if not self._pending:
                self._loop = None  # the next record sets a timer again
            elif self._loop is loop:
                loop.call_soon(self._flush_some, loop)
        for record, at in some:
            _line(record, at)


def _line(record: CallRecord, at: float) -> None:
    logger = tool_logger if record.kind == "tool" else model_logger
    trace = record.trace_id or "-"
    if record.kind == "tool":
        message = "tool=%s api=%s consumer=%s error=%s status=%d ms=%.1f bytes_in=%d bytes_out=%d cost=%s trace_id=%s"
        args: tuple[object, ...] = (
            record.tool, record.api, record.consumer, record.error, record.status, record.latency_ms,
            record.request_bytes, record.response_bytes, "-" if record.cost is None else record.cost, trace,
        )  # fmt: skip
    else:
        u = record.usage
        message = (
            "model=%s deployment=%s consumer=%s status=%d in=%d out=%d cache_read=%d cache_write=%d reasoning=%d%s "
            "cost=%s ms=%.1f ttft_ms=%s retries=%d fallbacks=%d stream=%s trace_id=%s"
        )
        args = (
            record.model, record.deployment, record.consumer, record.status, u.input, u.output, u.cache_read,
            u.cache_write, u.reasoning, " estimated" if u.estimated else "",
            "-" if record.cost is None else f"{record.cost:.6f}", record.latency_ms,
            "-" if record.ttft_ms is None else f"{record.ttft_ms:.1f}", record.retries, record.fallbacks,
            record.streamed, trace,
        )  # fmt: skip
    line = logger.makeRecord(
        logger.name, logging.INFO, "(unknown file)", 0, message, args, None, "(unknown function)",
        extra={"call": partial(call_fields, record)},
    )  # fmt: skip
    # Stamped when the call was recorded, not when its batch is written.
    line.created, line.msecs = at, (at - int(at)) * 1000
    line.relativeCreated = (at - logging._startTime) * 1000
    logger.handle(line)
