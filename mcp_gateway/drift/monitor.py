"""The drift monitor: samples upstream responses on the hot path, checks them off it.

Each API's upstream gets an observer (`observer_for`) that the REST upstream calls with every
response, after secrets are scrubbed from it. For an unsampled response the observer does one
clock read and one dict lookup. A sampled one (the first response of a tool, then at most one
per `drift_sample_seconds`) is put on a bounded queue (in samples and in body bytes), never
waiting: when the queue is full the sample is dropped and counted. One worker thread takes
samples off the queue, checks them with openapi-core (drift/check.py) and records the findings
in the store (store/drift.py).

Why sampling by time per tool, not a rate: the checking cost stays bounded by the number of
tools, whatever the traffic, and a rarely called tool is still checked (1% of ten calls a day
would almost never be).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.to_thread

from mcp_gateway.catalog import ApiEntry, Catalog, Change
from mcp_gateway.definitions import SpecError, ToolDefinition
from mcp_gateway.drift.sample import Sample
from mcp_gateway.openapi.load import UPLOAD_SCHEME
from mcp_gateway.store.drift import DriftStore, Finding
from mcp_gateway.upstream.client import UpstreamResponse

if TYPE_CHECKING:
    from mcp_gateway.drift.check import ApiChecker

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256
# ... and at most this many body bytes waiting in it: samples hold the responses' bodies.
QUEUE_BYTES = 16 * 1024 * 1024
# Larger bodies are not checked: validating megabytes of JSON would hold the worker (and the GIL) for long.
MAX_CHECKED_BYTES = 1024 * 1024
# How often the worker wakes when idle, to record dropped counts and notice a stop.
IDLE_SECONDS = 1.0
# A spec that could not be loaded for checking is tried again after this long.
SPEC_RETRY_SECONDS = 300.0

Observer = Callable[[ToolDefinition, UpstreamResponse], None]
_STOP = object()


class DriftMonitor:
    """Samples responses of every API with `drift_check` on, and checks them in one worker thread."""

    def __init__(
        self,
        store: DriftStore,
        catalog: Catalog,
        spec_text: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        """`spec_text(name)`: the uploaded spec text of a registered API (blocking, called in the worker)."""
        self.store = store
        self.catalog = catalog
        self.spec_text = spec_text
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_SIZE)
        self._queued_bytes = 0
        self._dropped: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # the byte count and the dropped counts (event loop and worker)
        self._checkers: dict[str, ApiChecker] = {}
        self._unloadable: dict[str, tuple[ApiEntry, float, str]] = {}  # api -> (entry, retry at, why)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- the hot path ------------------------------------------------------

    def observer_for(self, entry: ApiEntry) -> Observer | None:
        """The response observer of one API's upstream; None when drift checking is off for it."""
        if not entry.config.drift_check:
            return None
        interval = entry.config.drift_sample_seconds
        due: dict[str, float] = {}
        put = self._queue.put_nowait

        def observe(tool: ToolDefinition, response: UpstreamResponse) -> None:
            now = time.monotonic()
            name = tool.source_name or tool.name
            if now < due.get(name, 0.0):
                return
            due[name] = now + interval
            size = len(response.body)
            if size > MAX_CHECKED_BYTES:
                return
            sample = Sample(entry, name, tool.operation, response.status, response.headers.get("content-type", ""),
                            response.headers, response.body, time.time())  # fmt: skip
            with self._lock:
                try:
                    if self._queued_bytes + size > QUEUE_BYTES:
                        raise queue.Full
                    put(sample)
                    self._queued_bytes += size
                except queue.Full:
                    self._dropped[(entry.name, name)] = self._dropped.get((entry.name, name), 0) + 1

        self._start()
        return observe

    # -- the worker --------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mcp-gateway-drift", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                item = None
            if isinstance(item, Sample):
                with self._lock:
                    self._queued_bytes -= len(item.body)
                try:
                    self._check(item)
                except Exception as exc:  # one bad sample must not end the worker
                    # The type only: a message or traceback could quote the response.
                    logger.error("drift check of %s %s failed: %s", item.entry.name, item.tool, type(exc).__name__)
            self._record_dropped()

    def _checker(self, entry: ApiEntry) -> ApiChecker | str:
        """The API's checker, built on first use; or why the spec cannot be loaded."""
        checker = self._checkers.get(entry.name)
        if checker is not None and checker.entry is entry:
            return checker
        failed = self._unloadable.get(entry.name)
        if failed is not None and failed[0] is entry and failed[1] > time.monotonic():
            return failed[2]
        text = self.spec_text(entry.name) if entry.config.spec.startswith(f"{UPLOAD_SCHEME}:") else None
        # Imported by Gateway.start on its own thread (importing openapi-core here first raced other
        # threads' imports); here it is a lookup, and keeps this module light for the CLI.
        from mcp_gateway.drift.check import ApiChecker
        from mcp_gateway.openapi.documents import spec_error_in

        try:
            checker = self._checkers[entry.name] = ApiChecker(entry, text)
        except Exception as exc:
            cause = spec_error_in(exc)
            why = str(cause) if isinstance(cause, SpecError) else f"{type(exc).__name__}"
            logger.warning("API %s: responses cannot be checked against the spec: %s", entry.name, why)
            self._unloadable[entry.name] = (entry, time.monotonic() + SPEC_RETRY_SECONDS, why)
            return why
        self._unloadable.pop(entry.name, None)
        return checker

    def _check(self, sample: Sample) -> None:
        # A sample of an API that was removed or replaced since is stale: its spec is not served.
        if self.catalog.snapshot.apis.get(sample.entry.name) is not sample.entry:
            return
        checker = self._checker(sample.entry)
        if isinstance(checker, str):
            found = [Finding("spec", "", f"the spec could not be loaded to check responses: {checker}")]
        else:
            found = checker.check(sample)
        self.store.record(sample.entry.name, sample.tool, sample.status, found, sample.at)

    def _record_dropped(self) -> None:
        with self._lock:
            counts, self._dropped = self._dropped, {}
        if counts:
            try:
                self.store.add_dropped(counts)
            except Exception as exc:
                logger.error("recording dropped drift samples failed: %s", exc)

    # -- lifecycle ---------------------------------------------------------

    async def on_change(self, change: Change) -> None:
        """Catalog listener: an API removed or replaced loses its checker and what was found for it
        (the findings were against a spec that is no longer served)."""
        gone = change.removed | change.replaced
        for name in gone:
            self._checkers.pop(name, None)
            self._unloadable.pop(name, None)
        for name in sorted(gone):
            await anyio.to_thread.run_sync(self.store.clear, name)

    async def aclose(self) -> None:
        """Stop the worker (after the sample it is checking) and record what was dropped."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # (a full queue: the worker is busy, and sees the event next)
            self._queue.put_nowait(_STOP)  # wakes an idle worker at once
        await anyio.to_thread.run_sync(thread.join, 10.0)
        self._record_dropped()
