"""`serve --workers N`: N gateway processes on one port, balanced by the kernel.

Each worker binds its own listening socket with SO_REUSEPORT, so Linux spreads
new connections evenly over the workers (a single shared socket lets whichever
process wakes first take a whole burst of connections). Workers are stateless
MCP servers sharing the store; the parent only starts them, restarts one that
dies, and forwards SIGTERM/SIGINT for a graceful stop.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

RESTART_PAUSE = 1.0


def _listen_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def _worker(config_json: str, options: dict[str, Any]) -> None:
    import uvicorn

    from mcp_gateway.cli import setup_logging
    from mcp_gateway.config import GatewayConfig
    from mcp_gateway.gateway import Gateway

    config = GatewayConfig.model_validate_json(config_json)
    setup_logging(config.log_level, config.log_payloads)
    sock = _listen_socket(config.server.host, config.server.port)
    server = uvicorn.Server(uvicorn.Config(Gateway(config).http_app(), **options))
    server.run(sockets=[sock])


def run_workers(config_json: str, host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    """Run `workers` gateway processes on host:port until SIGTERM or SIGINT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("--workers needs SO_REUSEPORT (Linux, BSD, macOS)")
    # Holding the port (bound, not listening) keeps it ours between worker restarts.
    reserve = _listen_socket(host, port)
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_worker, args=(config_json, options), name="mcp-gateway-worker")
        proc.start()
        return proc

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs = [start() for _ in range(workers)]
    try:
        while not stop.wait(0.5):
            for i, proc in enumerate(procs):
                if not proc.is_alive():
                    logger.error("worker %s exited with %s; restarting it", proc.pid, proc.exitcode)
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
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserve.close()
