"""A log handler that writes lines in batches, not one write and flush per line.

Every call logs an access line at INFO. Written one at a time, each line cost a `write(2)` and a
flush on the event loop, between one answer and the next request (served, the access line was
about 30 us of a call's CPU at concurrency 1). This handler keeps the records and writes them
together, formatted, at most `interval` seconds later (the idea of nginx's `access_log ...
buffer= flush=`), `chunk` lines per turn of the event loop, so that requests that came meanwhile
are read between chunks (a tenth of a second's lines in one go held the loop for milliseconds).
It writes at once, with everything pending before it and in order:

- a WARNING or worse (what an operator must see is never held back);
- a record logged where no event loop runs (the CLI, worker threads: no timer would come back);
- when `capacity` records wait;
- at `flush()` and `close()`: `logging.shutdown()` calls both at exit;
- from `write_through()` on: a server calls it when it begins to stop, since a process may end
  without `logging.shutdown()` (uvicorn re-raises SIGTERM once it has stopped gracefully).

A process killed outright (SIGKILL, `os._exit`) loses at most `interval` seconds of INFO lines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

INTERVAL = 0.1  # seconds an INFO line may wait
CAPACITY = 1000  # records that may wait
CHUNK = 32  # lines formatted and written per turn of the event loop


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A `StreamHandler` (same stream, formatter, filters) that writes in batches."""

    def __init__(
        self, stream: TextIO | None = None, *, interval: float = INTERVAL, capacity: int = CAPACITY, chunk: int = CHUNK
    ) -> None:
        super().__init__(stream)
        self.interval = interval
        self.capacity = capacity
        self.chunk = chunk
        self._pending: list[logging.LogRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # whose timer will flush the pending records
        self._through = False  # every record written at once (the process is stopping)

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds self.lock here (an RLock: flush() may take it again).
        self._pending.append(record)
        if self._through or record.levelno >= logging.WARNING or len(self._pending) >= self.capacity:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._loop is None:
            self._loop = loop
            loop.call_later(self.interval, self._flush_some, loop)
        elif self._loop is not loop:  # a timer on another loop (or thread) may never come
            self.flush()

    def write_through(self) -> None:
        """Write what waits, and from now on every record as it comes."""
        with self.lock:
            self._through = True
            self.flush()

    def flush(self) -> None:
        """Write every pending record, in order, in one write."""
        with self.lock:
            records, self._pending, self._loop = self._pending, [], None
            self._write(records)

    def _flush_some(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer's turn: the oldest `chunk` records in one write; the rest on the loop's next turn."""
        with self.lock:
            records, self._pending = self._pending[: self.chunk], self._pending[self.chunk :]
            if not self._pending:
                self._loop = None  # the next record sets a timer again
            elif self._loop is loop:
                loop.call_soon(self._flush_some, loop)
            self._write(records)

    def _write(self, records: list[logging.LogRecord]) -> None:
        if records:
            lines = []
            for record in records:
                try:
                    lines.append(self.format(record) + self.terminator)
                except Exception:
                    self.handleError(record)
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(records[-1])

    def close(self) -> None:
        """Write what waits, then close as a StreamHandler does (the stream itself stays open)."""
        self.flush()
        super().close()


def write_through() -> None:
    """`write_through()` on each batched handler of the root logger: the process is stopping."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BatchedStreamHandler):
            handler.write_through()
