"""aiohttp sessions for the model router's providers, and what their failures mean.

Model calls stream (server-sent events), which the REST upstreams' lean client
(upstream/http1.py) does not do; they go over aiohttp with the same request semantics, and
a failure becomes the same `UpstreamError`, naming the host and the kind, never the URL.
"""

from __future__ import annotations

import socket
import ssl

import aiohttp

from mcp_gateway.exceptions import causes
from mcp_gateway.upstream.client import ClientSettings, UpstreamError, host_of


def describe_failure(exc: Exception, url: str, settings: ClientSettings) -> UpstreamError:
    """An aiohttp (or lower) failure of one request to a model provider as an UpstreamError naming
    the host and the kind."""
    host, address = host_of(url)
    chain = list(causes(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        chain.append(exc.os_error)  # what the connect failed with, not always chained

    def found(kind: type[BaseException]) -> BaseException | None:
        return next((c for c in chain if isinstance(c, kind)), None)

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
