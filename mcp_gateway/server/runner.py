"""Running the HTTP front door with uvicorn.

The port is bound before anything else, so a busy port or a wrong host is one clear
line, not a traceback after every spec has been ingested. Readiness is reported once
the port is bound and the APIs are loaded; a gateway whose configured APIs all failed
to load stops with `EXIT_UNSERVABLE` instead of serving nothing.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from mcp_gateway.observe.batched_log import write_through

logger = logging.getLogger(__name__)

# A worker that stops with one of these must not be restarted: it would fail the same way.
EXIT_UNSERVABLE = 2
EXIT_STARTUP_FAILURE = 3  # uvicorn's own, when the app's startup raised
FATAL_EXITS = frozenset((EXIT_UNSERVABLE, EXIT_STARTUP_FAILURE))

UVICORN_OPTIONS: dict[str, Any] = {"log_config": None, "lifespan": "on", "timeout_graceful_shutdown": 5}


class ServeError(Exception):
    """The front door cannot start; the message names the problem and the fix."""


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port (not yet listening). `reuse_port` lets worker processes share it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise ServeError(f"cannot listen on {host!r}: not an address or a known host name (check --host)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(_bind_problem(exc, host, port)) from None
    sock.set_inheritable(True)
    return sock


def check_free(host: str, port: int) -> None:
    """Raise ServeError when host:port is taken. Workers bind with SO_REUSEPORT, which would let them
    share a port with another such server of the same user: a plain bind finds that out first."""
    bind(host, port).close()


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use: stop what holds it, or choose another with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: choose another with --host"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} (ports below 1024 need privileges): choose another with --port"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def bound_url(sock: socket.socket, path: str = "/mcp") -> str:
    """The http URL of a bound socket (its real port, when 0 was asked for)."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{path}"


class _Server(uvicorn.Server):
    """uvicorn, plus a check once the app has started and the sockets listen."""

    def __init__(
        self, config: uvicorn.Config, unservable: Callable[[], str | None], on_ready: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._unservable = unservable
        self._on_ready = on_ready
        self.exit_status = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        problem = self._unservable()
        if problem is not None:
            logger.error("%s", problem)
            self.exit_status = EXIT_UNSERVABLE
            self.should_exit = True
            return
        self._on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Logs written at once from here: uvicorn ends the process by re-raising the signal once
        # it has stopped, and lines still waiting for their batch would be lost.
        write_through()
        await super().shutdown(sockets)


def serve(app: ASGIApp, sock: socket.socket, unservable: Callable[[], str | None], on_ready: Callable[[], None]) -> int:
    """Serve `app` on `sock` until SIGINT/SIGTERM; returns the exit status."""
    server = _Server(uvicorn.Config(app, **UVICORN_OPTIONS), unservable, on_ready)
    server.run(sockets=[sock])
    return server.exit_status
