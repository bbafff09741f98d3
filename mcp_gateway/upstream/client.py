"""One pooled HTTP client per upstream API, with timeouts and a response-size cap.

The connections are upstream/http1.py's: on this hot path it costs about a third of the CPU per
request of aiohttp's client, which cost a sixth of an httpx2 transport's (measured with
bench/peers.py; see the README). A failure to get an answer is an `UpstreamError` that names
the host and the kind of failure (DNS, refused, TLS, which timeout, reset...), never the URL:
its query may carry an API key.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.propagate import inject

from mcp_gateway.upstream.http1 import ConnectionPool, ConnectTimeout, Disconnected, ProtocolError, TooLarge
from mcp_gateway.upstream.request import UpstreamRequest

MAX_REDIRECTS = 5
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
# Message framing and connection headers: the HTTP client sets them from the body and the URL.
# The ingest never makes such header parameters (openapi/wire.py); one coming here anyway is
# refused: sent as given, it would mis-frame the request.
_FRAMING = frozenset(
    ("content-length", "transfer-encoding", "host", "connection", "keep-alive", "te", "trailer", "upgrade", "expect")
)
# A "." or ".." path segment, literal or percent-encoded ("%2e%2E"), optionally with ";params"
# (some servers read "..;" as ".."). urljoin leaves these in absolute URLs and httpx2 (or the
# server) resolves them later, so "/api/../admin" passes a prefix check yet reaches "/admin".
_DOT_SEGMENT_RE = re.compile(r"(?:\.|%2e){1,2}(?:;.*)?", re.IGNORECASE)
# What may be sent as a header name (RFC 9110 token), and what never in a value or the target:
# a CR, LF or NUL would end the line early and let the rest pass for another header or request.
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BREAKS_LINE_RE = re.compile(r"[\r\n\0]")
_UNSAFE_TARGET_RE = re.compile(r"[\x00-\x20\x7f]")
# Methods whose request carries no body unless one is given (others get Content-Length: 0).
_BODILESS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"))


class UpstreamError(Exception):
    """The upstream could not give an answer. The message says why, naming the host (not the URL);
    `host` is `host:port`; `kind` is a word for the logs (dns, refused, tls, connect-timeout, ...)."""

    def __init__(self, message: str, host: str, kind: str) -> None:
        super().__init__(message)
        self.host = host
        self.kind = kind


@dataclass(slots=True)
class UpstreamResponse:
    """A fully read upstream response."""

    status: int
    reason: str
    headers: Mapping[str, str]  # names case-insensitive
    body: bytes
    elapsed: float

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Limits of one upstream API's client."""

    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_response_bytes: int = 5 * 1024 * 1024
    max_connections: int = 100
    user_agent: str = "mcp-gateway"
    # TLS settings of the upstream connections: a client certificate (mutual TLS) and/or a private CA.
    ssl_context: ssl.SSLContext | None = None


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def host_of(url: str) -> tuple[str, str]:
    """(host, host:port) of a URL, the port defaulted from the scheme."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    shown = f"[{host}]" if ":" in host else host
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return host, f"{shown}:{port}"


class HttpClient:
    """Sends `UpstreamRequest`s over a keep-alive pool; reads at most `max_response_bytes`.

    Redirects are followed by hand, only within the API's base URL, so a call can
    never be steered to another host, and credentials never travel to another origin.
    """

    def __init__(self, base_url: str, settings: ClientSettings) -> None:
        """Blocking for an https URL without its own TLS settings (the system's CAs are loaded once)."""
        self.base_url = base_url
        self.settings = settings
        self._default_headers = [("User-Agent", settings.user_agent)]
        base = base_url if base_url.endswith("/") else base_url + "/"
        self._base_prefix = base
        self._base_origin = scheme, host, port = _origin(urlsplit(base_url))
        tls = scheme == "https"
        port = port or (443 if tls else 80)
        # Every request goes to this origin (within_base): one pool, one Host header.
        try:
            name = host.encode("idna").decode("ascii")
        except UnicodeError:
            name = host
        name = f"[{name}]" if ":" in name else name
        self._host_header = name if port == (443 if tls else 80) else f"{name}:{port}"
        self._pool = ConnectionPool(
            host,
            port,
            ssl_context=(settings.ssl_context or _default_tls()) if tls else None,
            connect_timeout=settings.connect_timeout,
            max_connections=settings.max_connections,
        )

    def _defaults(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The gateway's User-Agent, unless the operation sets one itself (a spec's header parameter)."""
        if any(name.lower() == "user-agent" for name, _ in headers):
            return []
        return self._default_headers

    def within_base(self, url: str) -> bool:
        """True when `url` is under this API's base URL (same origin and path prefix)."""
        parts = urlsplit(url)
        path = parts.path
        # A dot segment needs a "." or a "%2e": most paths have neither, and skip the per-segment test.
        if ("." in path or "%2" in path) and any(_DOT_SEGMENT_RE.fullmatch(segment) for segment in path.split("/")):
            return False  # would be resolved to somewhere else after this check (see _DOT_SEGMENT_RE)
        return _origin(parts) == self._base_origin and (url.startswith(self._base_prefix) or url == self.base_url)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send one request; raises UpstreamError for anything that is not an HTTP answer.

        `timeout` bounds the whole call (connecting, redirects and body included), so an
        upstream trickling a byte at a time cannot hold a call past it.
        """
        limit = self.settings.timeout
        try:
            async with asyncio.timeout(limit):
                return await self._send(request)
        except TimeoutError:
            host, address = host_of(request.url)
            raise UpstreamError(
                f"timeout: {host} did not finish answering within {limit:g}s", address, "timeout"
            ) from None

    async def _send(self, request: UpstreamRequest) -> UpstreamResponse:
        method, url, content = request.method, request.url, request.content
        headers = request.headers
        started = time.perf_counter()
        for _ in range(MAX_REDIRECTS + 1):
            if not self.within_base(url):
                where = host_of(url)[1]
                raise UpstreamError(
                    f"refused to send a request outside the API's base URL ({self.base_url})", where, "base-url"
                )
            response = await self._send_once(method, url, headers, content)
            if response.status not in _REDIRECTS or "location" not in response.headers:
                response.elapsed = time.perf_counter() - started
                return response
            url = urljoin(url, response.headers["location"])
            if not self.within_base(url):
                raise UpstreamError(
                    f"upstream redirected (HTTP {response.status}) outside the API's base URL; not followed",
                    host_of(url)[1], "redirect",
                )  # fmt: skip
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, content = "GET", None
                headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects", host_of(url)[1], "redirect")

    async def _send_once(
        self, method: str, url: str, headers: list[tuple[str, str]], content: bytes | None
    ) -> UpstreamResponse:
        cap = self.settings.max_response_bytes
        # W3C trace context of the current span (the MCP request's, when its client sent one):
        # the only headers besides the operation's own and the User-Agent.
        trace: dict[str, str] = {}
        inject(trace)
        message = self._message(method, url, [*self._defaults(headers), *trace.items(), *headers], content)
        try:
            raw = await self._pool.request(method, message, cap)
        except TooLarge as exc:
            said = f"over the {cap}-byte limit" if exc.declared is None else f"{exc.declared} bytes; the limit is {cap}"
            raise UpstreamError(f"upstream response too large ({said})", host_of(url)[1], "too-large") from None
        except Exception as exc:
            raise self._failure(exc, url) from None
        return UpstreamResponse(raw.status, raw.reason, CIMultiDictProxy(CIMultiDict(raw.headers)), raw.body, 0.0)

    def _message(self, method: str, url: str, headers: list[tuple[str, str]], content: bytes | None) -> bytes:
        """The request's bytes: request line, Host, the headers, Content-Length, the body.
        Refuses (UpstreamError) a header the client owns or any part that would break a line."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers:
            if name.lower() in _FRAMING:
                problem = f"it sets {name}, which the HTTP client owns"
            elif not _TOKEN_RE.fullmatch(name) or _BREAKS_LINE_RE.search(value):
                problem = "a header would break its line"
            else:
                lines.append(f"{name}: {value}")
                continue
            host, address = host_of(url)
            raise UpstreamError(f"the request to {host} could not be sent ({problem})", address, "request")
        if not _TOKEN_RE.fullmatch(method) or _UNSAFE_TARGET_RE.search(target):
            host, address = host_of(url)
            problem = "not a valid request line"
            raise UpstreamError(f"the request to {host} could not be sent ({problem})", address, "request")
        if content is not None or method not in _BODILESS:
            lines.append(f"Content-Length: {len(content or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return head + content if content else head

    def _failure(self, exc: Exception, url: str) -> UpstreamError:
        """What a failed exchange comes to, naming the host and the kind."""
        host, address = host_of(url)
        settings = self.settings
        if isinstance(exc, ConnectTimeout):
            return UpstreamError(
                f"connect timeout: {address} did not accept a connection within {settings.connect_timeout:g}s",
                address, "connect-timeout",
            )  # fmt: skip
        if isinstance(exc, Disconnected):
            if exc.partial:
                return UpstreamError(f"{host} closed the connection before its answer was complete", address, "closed")
            return UpstreamError(f"{host} closed the connection without answering", address, "closed")
        if isinstance(exc, ProtocolError):
            return UpstreamError(f"{host} sent an invalid HTTP response", address, "protocol")
        if isinstance(exc, socket.gaierror):
            return UpstreamError(f"DNS lookup failed for {host} ({exc.strerror})", address, "dns")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return UpstreamError(f"TLS handshake with {host} failed: {exc.verify_message}", address, "tls")
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or type(exc).__name__
            return UpstreamError(f"TLS handshake with {host} failed: {reason}", address, "tls")
        if isinstance(exc, ConnectionRefusedError):
            return UpstreamError(f"connection refused by {address}", address, "refused")
        if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return UpstreamError(f"connection reset by {host}", address, "reset")
        if isinstance(exc, OSError):
            return UpstreamError(f"cannot connect to {address}: {exc.strerror or 'no connection'}", address, "connect")
        # Anything else the HTTP stack raises for one request is this call's failure, never the gateway's.
        return UpstreamError(f"the request to {host} could not be sent ({type(exc).__name__})", address, "request")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._pool.aclose()


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The system's CAs, hostname checks on: loaded once, shared by every https upstream without TLS settings."""
    return ssl.create_default_context()
