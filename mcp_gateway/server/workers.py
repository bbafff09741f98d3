"""`serve --workers N`: N gateway processes on one port, balanced by the kernel.

Each worker binds its own listening socket with SO_REUSEPORT, so Linux spreads
new connections evenly over the workers (a single shared socket lets whichever
process wakes first take a whole burst of connections). Workers are stateless
MCP servers sharing the store; the parent only starts them, reports when all are
ready, restarts one that dies, stops them all when one cannot start (it would fail
the same way again), and forwards SIGTERM/SIGINT for a graceful stop.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from mcp_gateway.observe.multiprocess import shared_metrics_dir, worker_exited
from mcp_gateway.server.runner import EXIT_UNSERVABLE, FATAL_EXITS, ServeError, bind, check_free

logger = logging.getLogger(__name__)

RESTART_PAUSE = 1.0


def _worker(config_json: str, ready: Any) -> None:
    import os
    import sys

    from mcp_gateway.cli.common import setup_logging
    from mcp_gateway.config import GatewayConfig
    from mcp_gateway.gateway import Gateway
    from mcp_gateway.server.runner import serve

    config = GatewayConfig.model_validate_json(config_json)
    setup_logging(config.log_level, config.log_payloads, config.log_format)
    try:
        sock = bind(config.server.host, config.server.port, reuse_port=True)
    except ServeError as exc:
        logger.error("%s", exc)
        sys.exit(EXIT_UNSERVABLE)
    gateway = Gateway(config, own_process=True)
    sys.exit(serve(gateway.http_app(), sock, gateway.unservable, lambda: ready.put(os.getpid())))


def run_workers(
    config_json: str, host: str, port: int, workers: int, on_ready: Callable[[], None], *, metrics: bool = False
) -> int:
    """Run `workers` gateway processes on host:port until SIGTERM or SIGINT; returns the exit status.
    `on_ready` is called once, when the first worker has started. With `metrics`, the workers share
    a metrics directory (`/metrics` in any of them reports all)."""
    with shared_metrics_dir() if metrics else nullcontext() as metrics_dir:
        return _run(config_json, host, port, workers, on_ready, metrics_dir)


def _run(
    config_json: str, host: str, port: int, workers: int, on_ready: Callable[[], None], metrics_dir: str | None
) -> int:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ServeError("--workers needs SO_REUSEPORT (Linux, BSD, macOS): run one worker")
    check_free(host, port)
    # Holding the port (bound, not listening) keeps it ours between worker restarts.
    reserve = bind(host, port, reuse_port=True)
    ctx = multiprocessing.get_context("spawn")
    ready: Any = ctx.Queue()
    stop = threading.Event()

    def start() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_worker, args=(config_json, ready), name="mcp-gateway-worker")
        proc.start()
        return proc

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs = [start() for _ in range(workers)]
    started: set[int] = set()
    announced = False
    status = 0
    try:
        while not stop.wait(0.2):
            while True:
                try:
                    started.add(ready.get_nowait())
                except queue.Empty:
                    break
            # The port answers once one worker is ready (the others follow within moments).
            if not announced and started:
                announced = True
                on_ready()
            for i, proc in enumerate(procs):
                if proc.is_alive():
                    continue
                if proc.exitcode in FATAL_EXITS:
                    logger.error("a worker could not start (see above); stopping")
                    status = EXIT_UNSERVABLE
                    stop.set()
                    break
                logger.error("worker %s exited with %s; restarting it", proc.pid, proc.exitcode)
                worker_exited(proc.pid, metrics_dir)
                time.sleep(RESTART_PAUSE)
                procs[i] = start()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn drains in-flight requests
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            worker_exited(proc.pid, metrics_dir)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserve.close()
    return status
