"""Pooled, streaming HTTP to model providers.

One httpx2 transport per deployment (a keep-alive pool to its origin). A request returns once
the provider's status and headers have arrived, bounded by `first_byte_timeout`; the body is
then read whole or streamed, the whole call bounded by `timeout`. No redirects are followed
(a provider that redirects is misconfigured, and credentials must not travel), no cookies are
kept, and the environment's proxies are not used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import httpx2
from opentelemetry.propagate import inject

from mcp_gateway.upstream.client import ClientSettings, UpstreamError, describe_failure


@dataclass(slots=True)
class ProviderRequest:
    """One HTTP request to a provider, credentials included (so never logged)."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(repr=False)
    content: bytes = field(default=b"", repr=False)


class ProviderResponse:
    """A provider's answer: status and headers now, the body read whole or as it comes."""

    def __init__(self, response: httpx2.Response, deadline: float, started: float, url: str, limit: float) -> None:
        self._response = response
        self._chunks = response.aiter_raw()
        self._deadline = deadline
        self._url = url
        self._host = host_of(url)
        self._limit = limit
        self.status = response.status_code
        self.headers = response.headers
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
            with anyio.fail_after(max(0.0, self._deadline - time.monotonic())):
                async for chunk in self._chunks:
                    size += len(chunk)
                    if size > cap:
                        raise UpstreamError(f"the provider's answer is over {cap} bytes", self._host, "too-large")
                    chunks.append(chunk)
        except TimeoutError:
            raise self._late() from None
        except UpstreamError:
            raise
        except Exception as exc:
            raise _failure(exc, self._url) from None
        finally:
            await self.aclose()
        return b"".join(chunks)

    def _late(self) -> UpstreamError:
        return UpstreamError(f"the provider did not finish within {self._limit:g}s", self._host, "read-timeout")

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive; the response is closed at the end (or when cancelled)."""
        late = self._late()
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
                        chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise late from None
                except Exception as exc:
                    raise _failure(exc, self._url) from None
                if chunk:
                    yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Release the connection (idempotent)."""
        await self._response.aclose()


def _failure(exc: Exception, url: str) -> UpstreamError:
    return describe_failure(exc, url, ClientSettings())


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
        self._transport = httpx2.AsyncHTTPTransport(
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,
        )
        # httpx2's read timeout is per read: a stream's quiet spells (a model thinking) are bounded
        # by the whole call's `timeout` instead, checked around every read.
        self._timeouts = {"connect": connect_timeout, "read": timeout, "write": timeout, "pool": first_byte_timeout}
        self._user_agent = user_agent

    async def send(self, request: ProviderRequest) -> ProviderResponse:
        """Send `request`; returns when the status and headers are in. UpstreamError otherwise."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        trace: dict[str, str] = {}
        inject(trace)  # W3C trace context of the current span, if any
        outgoing = httpx2.Request(
            request.method,
            request.url,
            headers=[("User-Agent", self._user_agent), *trace.items(), *request.headers],
            content=request.content,
            extensions={"timeout": self._timeouts},
        )
        try:
            with anyio.fail_after(min(self.first_byte_timeout, self.timeout)):
                response = await self._transport.handle_async_request(outgoing)
        except TimeoutError:
            raise UpstreamError(
                f"the provider sent no answer within {min(self.first_byte_timeout, self.timeout):g}s",
                host_of(request.url),
                "first-byte-timeout",
            ) from None
        except Exception as exc:  # every failure of one request is this call's, never the gateway's
            raise _failure(exc, request.url) from None
        return ProviderResponse(response, deadline, started, request.url, self.timeout)

    async def aclose(self) -> None:
        """Close the pool."""
        await self._transport.aclose()
