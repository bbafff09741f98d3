"""One pooled HTTP client per upstream API, with timeouts and a response-size cap.

The client is aiohttp's: on this hot path it costs about a sixth of the CPU per request of an
httpx2 transport, whose pool probes every idle connection's socket on each request (measured
with bench/peers.py; see the README). A failure to get an answer is an `UpstreamError` that
names the host and the kind of failure (DNS, refused, TLS, which timeout, reset...), never the
URL: its query may carry an API key.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from opentelemetry.propagate import inject
from yarl import URL

from mcp_gateway.upstream.request import UpstreamRequest

MAX_REDIRECTS = 5
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
# Message framing and connection headers: the HTTP client sets them from the body and the URL.
# The ingest never makes such header parameters (openapi/wire.py); one coming here anyway is
# refused, since aiohttp would send it as given and mis-frame the request.
_FRAMING = frozenset(
    ("content-length", "transfer-encoding", "host", "connection", "keep-alive", "te", "trailer", "upgrade", "expect")
)
# A "." or ".." path segment, literal or percent-encoded ("%2e%2E"), optionally with ";params"
# (some servers read "..;" as ".."). urljoin leaves these in absolute URLs and httpx2 (or the
# server) resolves them later, so "/api/../admin" passes a prefix check yet reaches "/admin".
_DOT_SEGMENT_RE = re.compile(r"(?:\.|%2e){1,2}(?:;.*)?", re.IGNORECASE)


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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _host(url: str) -> tuple[str, str]:
    """(host, host:port) of a URL, the port defaulted from the scheme."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    shown = f"[{host}]" if ":" in host else host
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return host, f"{shown}:{port}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from or during, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_failure(exc: Exception, url: str, settings: ClientSettings) -> UpstreamError:
    """An aiohttp (or lower) failure of one request as an UpstreamError naming the host and the kind
    (the REST upstreams' client and the model router's are both aiohttp's)."""
    host, address = _host(url)
    causes = list(_causes(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        causes.append(exc.os_error)  # what the connect failed with, not always chained

    def found(kind: type[BaseException]) -> BaseException | None:
        return next((c for c in causes if isinstance(c, kind)), None)

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        dns = found(socket.gaierror)
        why = dns.strerror if isinstance(dns, socket.gaierror) else "no such host"
        return UpstreamError(f"DNS lookup failed for {host} ({why})", address, "dns")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or type(exc.certificate_error).__name__
        return UpstreamError(f"TLS handshake with {host} failed: {reason}", address, "tls")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamError(f"{host} closed the connection without answering", address, "closed")
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError) and not found(ConnectionResetError):
        return UpstreamError(f"{host} sent an invalid HTTP response", address, "protocol")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamError(
            f"connect timeout: {address} did not accept a connection within {settings.connect_timeout:g}s",
            address, "connect-timeout",
        )  # fmt: skip
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return UpstreamError(f"read timeout: {host} sent nothing for {settings.timeout:g}s", address, "read-timeout")
    if isinstance(dns := found(socket.gaierror), socket.gaierror):
        return UpstreamError(f"DNS lookup failed for {host} ({dns.strerror})", address, "dns")
    if found(ConnectionRefusedError):
        return UpstreamError(f"connection refused by {address}", address, "refused")
    if isinstance(tls := found(ssl.SSLError), ssl.SSLError):
        reason = getattr(tls, "verify_message", None) or tls.reason or type(tls).__name__
        return UpstreamError(f"TLS handshake with {host} failed: {reason}", address, "tls")
    if found(ConnectionResetError) or found(BrokenPipeError):
        return UpstreamError(f"connection reset by {host}", address, "reset")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = found(OSError)
        why = os_error.strerror if isinstance(os_error, OSError) and os_error.strerror else "no connection"
        return UpstreamError(f"cannot connect to {address}: {why}", address, "connect")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(f"connection to {host} failed ({type(exc).__name__})", address, "transport")
    # Anything else the HTTP stack raises for one request is this call's failure, never the gateway's.
    return UpstreamError(f"the request to {host} could not be sent ({type(exc).__name__})", address, "request")


def open_session(settings: ClientSettings) -> aiohttp.ClientSession:
    """An aiohttp session with the gateway's request semantics (call it on the event loop: aiohttp
    binds a session to its loop). Used by the REST upstreams and the model router alike.

    No cookie jar: it would be shared by every caller (one agent's upstream session cookie would
    ride along on another's calls). No automatic headers but Host (and the body's Content-Length):
    no Accept-Encoding, so an identity body keeps size caps exact (a compressed body can expand a
    thousandfold inside one chunk before a cap is checked), and no decompression. No proxy from the
    environment. A pool of `max_connections`; callers bound the whole call themselves, and pass
    `allow_redirects=False` (redirects are theirs to follow, or not).
    """
    connector = aiohttp.TCPConnector(
        limit=settings.max_connections,
        limit_per_host=0,
        ssl=settings.ssl_context if settings.ssl_context is not None else True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
        auto_decompress=False,
        trust_env=False,
        # These bound connecting and each read; the whole call is bounded by the caller.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout, sock_read=settings.timeout),
    )


class HttpClient:
    """Sends `UpstreamRequest`s over a keep-alive pool; reads at most `max_response_bytes`.

    Redirects are followed by hand, only within the API's base URL, so a call can
    never be steered to another host, and credentials never travel to another origin.
    """

    def __init__(self, base_url: str, settings: ClientSettings) -> None:
        self.base_url = base_url
        self.settings = settings
        # Made on the event loop at the first request (aiohttp binds a session to its loop);
        # this object may be built in a worker thread.
        self._session: aiohttp.ClientSession | None = None
        self._default_headers = [("User-Agent", settings.user_agent)]
        base = base_url if base_url.endswith("/") else base_url + "/"
        self._base_prefix = base
        self._base_origin = _origin(base_url)

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
        origin = (parts.scheme, (parts.hostname or "").lower(), parts.port)
        return origin == self._base_origin and (url.startswith(self._base_prefix) or url == self.base_url)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send one request; raises UpstreamError for anything that is not an HTTP answer.

        `timeout` bounds the whole call (redirects and body included): aiohttp's own read
        timeout is per read, so an upstream trickling a byte at a time would never trip it.
        """
        limit = self.settings.timeout
        # asyncio's own timeout (the gateway serves on asyncio, as aiohttp needs): a third of
        # anyio.move_on_after's CPU, on every call.
        try:
            async with asyncio.timeout(limit):
                return await self._send(request)
        except TimeoutError:
            host, address = _host(request.url)
            raise UpstreamError(
                f"timeout: {host} did not finish answering within {limit:g}s", address, "timeout"
            ) from None

    async def _send(self, request: UpstreamRequest) -> UpstreamResponse:
        method, url, content = request.method, request.url, request.content
        headers = request.headers
        started = time.perf_counter()
        for _ in range(MAX_REDIRECTS + 1):
            if not self.within_base(url):
                raise UpstreamError(
                    f"refused to send a request outside the API's base URL ({self.base_url})", _host(url)[1], "base-url"
                )
            response = await self._send_once(method, url, headers, content)
            if response.status not in _REDIRECTS or "location" not in response.headers:
                response.elapsed = time.perf_counter() - started
                return response
            url = urljoin(url, response.headers["location"])
            if not self.within_base(url):
                raise UpstreamError(
                    f"upstream redirected (HTTP {response.status}) outside the API's base URL; not followed",
                    _host(url)[1], "redirect",
                )  # fmt: skip
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, content = "GET", None
                headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects", _host(url)[1], "redirect")

    async def _send_once(
        self, method: str, url: str, headers: list[tuple[str, str]], content: bytes | None
    ) -> UpstreamResponse:
        cap = self.settings.max_response_bytes
        # W3C trace context of the current span (the MCP request's, when its client sent one):
        # the only headers besides the operation's own and the User-Agent.
        trace: dict[str, str] = {}
        inject(trace)
        framing = next((name for name, _ in headers if name.lower() in _FRAMING), None)
        if framing is not None:
            raise UpstreamError(
                f"the request to {_host(url)[0]} could not be sent (it sets {framing}, which the HTTP client owns)",
                _host(url)[1], "request",
            )  # fmt: skip
        if self._session is None:
            self._session = open_session(self.settings)
        try:
            # encoded=True: the URL is sent as built (request.py encodes every part), not re-quoted.
            async with self._session.request(
                method, URL(url, encoded=True), headers=[*self._defaults(headers), *trace.items(), *headers],
                data=content, allow_redirects=False,
            ) as resp:  # fmt: skip
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > cap:
                    raise UpstreamError(
                        f"upstream response too large ({declared} bytes; the limit is {cap})",
                        _host(url)[1],
                        "too-large",
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > cap:
                        raise UpstreamError(
                            f"upstream response too large (over the {cap}-byte limit)", _host(url)[1], "too-large"
                        )
                    chunks.append(chunk)
                return UpstreamResponse(resp.status, resp.reason or "", resp.headers, b"".join(chunks), 0.0)
        except UpstreamError:
            raise
        except Exception as exc:
            raise describe_failure(exc, url, self.settings) from None

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
