"""`serve --workers N`: one set of metrics for N processes.

The parent makes a fresh directory and names it in `PROMETHEUS_MULTIPROC_DIR` before the workers
start (they inherit it; prometheus-client reads it when first imported); each worker writes its
values to its own files there. When a worker exits its live gauges are dropped (its counters stay:
what it counted happened); the directory goes when the parent stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from mcp_gateway.observe.metrics import MULTIPROC_ENV


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A new, empty metrics directory in the environment of the processes started inside; removed after."""
    path = tempfile.mkdtemp(prefix="mcp-gateway-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int | None, path: str | None) -> None:
    """Drop the live gauges (the ledger's backlog) of a worker that is gone."""
    if pid is None or path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)
