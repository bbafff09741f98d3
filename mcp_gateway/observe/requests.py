"""Requests and their duration per front door: an ASGI middleware, outermost, so refusals by
the Host/Origin guard or a credential check are counted too."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.observe.metrics import PrometheusMeter

_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))


def door_of(path: str) -> str:
    """`mcp`, `llm`, `admin` or `other` (health checks, /metrics, OAuth): a path's front door."""
    if path == "/mcp" or path.startswith("/mcp/"):
        return "mcp"
    if path.startswith("/v1/"):
        return "llm"
    if path == "/admin" or path.startswith("/admin/"):
        return "admin"
    return "other"


class RequestMetrics:
    """Counts each HTTP request by front door, method and status class, and times it (a stream:
    until its last byte). Methods outside the standard ones count as `other`."""

    def __init__(self, app: ASGIApp, *, meter: PrometheusMeter) -> None:
        self.app = app
        self.requests = meter.requests
        self.seconds = meter.request_seconds
        # Label lookups take a lock each: the children of each label set are kept here.
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._times: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before starting a response

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            door = door_of(scope["path"])
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (door, method, status // 100)
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = self.requests.labels(door, method, f"{status // 100}xx")
            count.inc()
            timer = self._times.get(door)
            if timer is None:
                timer = self._times[door] = self.seconds.labels(door)
            timer.observe(time.perf_counter() - started)
