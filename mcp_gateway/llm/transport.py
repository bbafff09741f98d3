"""Pooled, streaming HTTP to model providers.

One aiohttp session per deployment (a keep-alive pool to its origin), made as the REST upstreams'
are (`upstream.sessions.open_session`). A request returns once the provider's status and headers
have arrived, bounded by `first_byte_timeout`; the body is then read whole or streamed, the whole
call bounded by `timeout`. No redirects are followed (a provider that redirects is misconfigured,
and credentials must not travel), no cookies are kept, nothing is decompressed, the URL is sent
as built, and the environment's proxies are not used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from opentelemetry.propagate import inject
from yarl import URL

from mcp_gateway.upstream.client import ClientSettings, UpstreamError
from mcp_gateway.upstream.sessions import describe_failure, open_session


@dataclass(slots=True)
class ProviderRequest:
    """One HTTP request to a provider, credentials included (so never logged)."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(repr=False)
    content: bytes = field(default=b"", repr=False)


class ProviderResponse:
    """A provider's answer: status and headers now, the body read whole or as it comes."""

    def __init__(
        self, response: aiohttp.ClientResponse, deadline: float, started: float, url: str, settings: ClientSettings
    ) -> None:
        self._response = response
        self._body = response.content
        self._deadline = deadline
        self._url = url
        self._host = host_of(url)
        self._settings = settings
        self.status = response.status
        self.headers = response.headers  # names case-insensitive
        self.started = started
        self.first_byte_at = time.perf_counter()

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read(self, cap: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (at most `cap` bytes), within the call's time limit (one timer for all
        its reads: a per-chunk one costs more than a small answer's whole relay)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(max(0.0, self._deadline - time.monotonic())):
                while chunk := await self._body.readany():
                    size += len(chunk)
                    if size > cap:
                        raise UpstreamError(f"the provider's answer is over {cap} bytes", self._host, "too-large")
                    chunks.append(chunk)
        except TimeoutError:
            raise self._late() from None
        except UpstreamError:
            raise
        except Exception as exc:
            raise describe_failure(exc, self._url, self._settings) from None
        finally:
            await self.aclose()
        return b"".join(chunks)

    def _late(self) -> UpstreamError:
        limit = self._settings.timeout
        return UpstreamError(f"the provider did not finish within {limit:g}s", self._host, "read-timeout")

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive; the response is closed at the end (or when cancelled)."""
        late = self._late()
        body = self._body
        try:
            while True:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise late
                # One read at a time under the deadline: a cancel scope must not span a yield.
                # asyncio's own timeout (the gateway serves on asyncio): half the cost of
                # anyio.fail_after, paid for every event of every stream.
                try:
                    async with asyncio.timeout(left):
                        chunk = await body.readany()
                except TimeoutError:
                    raise late from None
                except Exception as exc:
                    raise describe_failure(exc, self._url, self._settings) from None
                if not chunk:
                    return  # the end of the body
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Let go of the response (idempotent): a connection whose body was read whole went back
        to the pool already; one read partly (a client that left mid-stream) is closed."""
        self._response.close()


def host_of(url: str) -> str:
    """`host:port` of a URL: what errors and logs name (a URL's query may hold a key)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname or ''}:{port}"


class ProviderTransport:
    """A keep-alive pool to one provider endpoint."""

    def __init__(
        self,
        *,
        timeout: float,
        connect_timeout: float,
        first_byte_timeout: float,
        max_connections: int,
        user_agent: str,
    ) -> None:
        self.timeout = timeout
        self.first_byte_timeout = first_byte_timeout
        # aiohttp's read timeout is per read: a stream's quiet spells (a model thinking) are bounded
        # by the whole call's `timeout` instead, checked around every read.
        self._settings = ClientSettings(
            timeout=timeout, connect_timeout=connect_timeout, max_connections=max_connections, user_agent=user_agent
        )
        # Made on the event loop at the first request (aiohttp binds a session to its loop);
        # providers are built in a worker thread.
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: ProviderRequest) -> ProviderResponse:
        """Send `request`; returns when the status and headers are in. UpstreamError otherwise."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        trace: dict[str, str] = {}
        inject(trace)  # W3C trace context of the current span, if any
        if self._session is None:
            self._session = open_session(self._settings)
        first_byte = min(self.first_byte_timeout, self.timeout)
        try:
            async with asyncio.timeout(first_byte):
                # encoded=True: the URL is sent as the provider built it (Bedrock's is signed as is).
                response = await self._session.request(
                    request.method,
                    URL(request.url, encoded=True),
                    headers=[("User-Agent", self._settings.user_agent), *trace.items(), *request.headers],
                    data=request.content or None,
                    allow_redirects=False,
                )
        except TimeoutError:
            raise UpstreamError(
                f"the provider sent no answer within {first_byte:g}s", host_of(request.url), "first-byte-timeout"
            ) from None
        except Exception as exc:  # every failure of one request is this call's, never the gateway's
            raise describe_failure(exc, request.url, self._settings) from None
        return ProviderResponse(response, deadline, started, request.url, self._settings)

    async def aclose(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
