"""A lean HTTP/1.1 client for the REST upstreams: keep-alive connections to one origin.

A tool call's upstream exchange is one small request and one response read whole, under a size
cap, on connections kept open between calls. aiohttp spent about 40 us of Python per such
request on machinery this never uses (its request and response objects, header multidicts,
stream readers, per-read timers, tracing signals); this module is an asyncio protocol around
llhttp, the parser uvicorn reads requests with (httptools), and a pool of idle connections.
The parsing, TLS and name resolution are llhttp's, OpenSSL's and the event loop's.

What it does, and deliberately no more: one request at a time per connection (no pipelining),
bodies sent whole (never chunked), responses delimited by Content-Length, chunked coding or the
connection's end, interim (1xx) responses skipped, a response to HEAD taken at its headers.
No redirects, cookies, proxies, decompression or retries of non-idempotent requests: the caller
(upstream/client.py) follows redirects within the API's base URL itself, and sends no
Accept-Encoding, so a size cap is exact.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass

import httptools

# An idle connection older than this is closed, not reused. Under the 5 s after which uvicorn and
# Node close an idle connection (and httpx stops reusing one): reused just as the server closes it,
# a POST fails with a reset and cannot be sent again. (It was aiohttp's 15 s: after a 5 s lull a
# replica test's call failed so.)
KEEPALIVE_SECONDS = 4.0
# Methods a request may be sent again for when a kept-alive connection turns out closed before any
# byte of an answer (RFC 9110 §9.2.2): the server cannot have acted on it twice.
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class Disconnected(Exception):
    """The server closed the connection before its answer was complete; `partial`: some of it came."""

    def __init__(self, partial: bool) -> None:
        super().__init__("closed before the response was complete" if partial else "closed without answering")
        self.partial = partial


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response (or ask to switch protocols)."""


class TooLarge(Exception):
    """The response is over the cap: `declared` when its Content-Length said so, else None."""

    def __init__(self, declared: int | None) -> None:
        super().__init__("response too large")
        self.declared = declared


class ConnectTimeout(Exception):
    """No connection (TLS included) within the connect timeout."""


@dataclass(slots=True)
class RawResponse:
    """A response read whole: header names as sent, values decoded as UTF-8 (invalid bytes replaced)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection; at most one exchange in flight (`exchange`)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._start(0, False)

    def _start(self, cap: int, head_only: bool) -> None:
        self._cap = cap
        self._head_only = head_only
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._received = False  # any byte of the answer (interim responses included)
        self._in_body = False  # headers complete: later header callbacks are trailers
        self._until_close = False  # no length given: the body ends with the connection
        self._status = 0
        self.keep_alive = False

    async def exchange(self, request: bytes, cap: int, head_only: bool) -> RawResponse:
        """Send `request` (head and body) and read the answer; raises what ended it otherwise.
        Cancelled or failed, the connection is closed: its state is unknown."""
        self._start(cap, head_only)
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        transport = self.transport
        assert transport is not None
        try:
            transport.write(request)
            await waiter
        except BaseException:
            self._waiter = None
            self.close()
            raise
        return RawResponse(self._status, self._reason.decode("latin-1"), self._headers, b"".join(self._body))

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: whatever comes next on it cannot be trusted
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(str(exc)))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._waiter is None or self._waiter.done():
            return
        if exc is None and self._until_close:
            self._complete()  # a body delimited by the connection's end
        elif exc is not None:
            self._fail(exc)
        else:
            self._fail(Disconnected(self._received))

    # llhttp callbacks (httptools). Once the answer is complete (or failed) they change nothing:
    # the bytes that made it may carry more, and the answer must stay as it was.

    def on_message_begin(self) -> None:
        if self._waiter is None:
            self.close()  # another response in the same bytes, unasked for: retire the connection

    def on_status(self, status: bytes) -> None:
        if self._waiter is not None:
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._waiter is not None and not self._in_body:
            self._headers.append((name.decode("latin-1"), value.decode("utf-8", "replace")))

    def on_headers_complete(self) -> None:
        if self._waiter is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # interim: its message completes next, and the real answer follows
        self._status = status
        self._in_body = True
        length = chunked = None
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered == "transfer-encoding":
                chunked = value
        if length is not None and length.strip().isdigit() and int(length) > self._cap:
            self._fail(TooLarge(int(length)))
        elif self._head_only:
            self._complete()  # no body follows an answer to HEAD, whatever its headers say
        elif length is None and chunked is None and status not in (204, 304):
            self._until_close = True

    def on_body(self, body: bytes) -> None:
        if self._waiter is None:
            return  # failed already
        self._size += len(body)
        if self._size > self._cap:
            self._fail(TooLarge(None))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None:
            return
        if not self._in_body:  # an interim response: start over for the final one
            self._reason, self._headers = b"", []
            return
        self.keep_alive = self.parser.should_keep_alive() and not self._head_only
        self._complete()

    def _complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()  # mid-answer: the connection cannot carry another exchange
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class ConnectionPool:
    """Keep-alive connections to one origin, at most `max_connections` at a time.

    Idle connections are reused most recent first (the warmest); one idle for longer than
    `keepalive` seconds is closed instead (servers close theirs after a while, and a request
    sent just as they do is lost). A request that finds a reused connection closed before any
    byte of an answer is sent once more on a new one when its method is idempotent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        max_connections: int,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def request(self, method: str, request: bytes, cap: int) -> RawResponse:
        """Send one request (its head and body, as bytes) and read the response whole, at most
        `cap` bytes of body. Raises ConnectTimeout, TooLarge, Disconnected, ProtocolError or
        what connecting or the connection failed with (OSError, ssl.SSLError...)."""
        head_only = method == "HEAD"
        async with self._slots:
            connection = self._take()
            if connection is not None:
                try:
                    response = await connection.exchange(request, cap, head_only)
                except Disconnected as exc:
                    if exc.partial or method not in IDEMPOTENT:
                        raise
                    # The server had closed it while it was idle: once more, on a new connection.
                else:
                    self._give_back(connection)
                    return response
            connection = await self._connect()
            response = await connection.exchange(request, cap, head_only)
            self._give_back(connection)
            return response

    def _take(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost and not connection.closing() and now - connection.idle_since < self.keepalive:
                return connection
            connection.close()
        return None

    def _give_back(self, connection: _Connection) -> None:
        if not connection.keep_alive or connection.lost or self._closed:
            connection.close()
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        self._idle.append(connection)
        while now - self._idle[0].idle_since >= self.keepalive:  # the oldest first
            self._idle.popleft().close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout() from None
        return connection

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their exchange ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
