"""DNS-rebinding protection for the HTTP front door: Host and Origin checks.

The Origin check is always on: a browser page on another site cannot reach the
gateway through the victim's browser. The Host check is on whenever the set of
valid Host values is known: for a loopback bind, or when `allowed_hosts` is
configured. A gateway bound to all interfaces without `allowed_hosts` cannot
know its public names, so it checks Origin only (and says so at start-up).
"""

from __future__ import annotations

import logging

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*",
                    "http://127.0.0.1", "http://localhost", "http://[::1]")  # fmt: skip


def _allowed(value: str, patterns: tuple[str, ...]) -> bool:
    """`patterns` in lower case (see HostOriginGuard)."""
    # Host names and URL schemes are case-insensitive (RFC 3986 §6.2.2.1): "LOCALHOST:80" is
    # "localhost:80". A port must be ASCII digits: str.isdigit() also accepts "²" or "٣".
    value = value.lower()
    for pattern in patterns:
        if value == pattern:
            return True
        if pattern.endswith(":*") and value.startswith(pattern[:-1]):
            port = value[len(pattern) - 1 :]
            if port.isascii() and port.isdigit():
                return True
    return False


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine can reach."""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


class HostOriginGuard:
    """ASGI middleware: 421 for an unknown Host, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, *, bind_host: str, allowed_hosts: list[str], allowed_origins: list[str]) -> None:
        self.app = app
        hosts = list(allowed_hosts)
        if hosts or is_loopback(bind_host):
            hosts.extend(LOOPBACK_HOSTS)
            self.hosts: tuple[str, ...] | None = tuple(host.lower() for host in hosts)
        else:
            self.hosts = None
            logger.warning(
                "bound to %s without allowed_hosts: Host header not checked (Origin still is); "
                "set server.allowed_hosts to your public host names",
                bind_host,
            )
        self.origins = tuple(origin.lower() for origin in (*allowed_origins, *LOOPBACK_ORIGINS))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
                if name == b"host" and host is None:
                    host = value.decode("latin-1")
                elif name == b"origin" and origin is None:
                    origin = value.decode("latin-1")
            if self.hosts is not None and not _allowed(host or "", self.hosts):
                await PlainTextResponse("Invalid Host header", status_code=421)(scope, receive, send)
                return
            if origin and not _allowed(origin, self.origins):
                await PlainTextResponse("Invalid Origin header", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
