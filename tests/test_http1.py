"""The REST upstreams' HTTP/1.1 client (upstream/http1.py behind upstream/client.py), byte for byte.

Each test runs a raw TCP server on loopback that answers with exactly the bytes given, and
checks what the client sent, what it made of the answer and how many connections it used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from mcp_gateway.upstream.client import ClientSettings, HttpClient, UpstreamError
from mcp_gateway.upstream.request import UpstreamRequest

pytestmark = pytest.mark.anyio

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


class RawServer:
    """Answers each request with `answer` (False: close the connection); records what came."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                if not await self.answer(reader, writer, len(self.requests)):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[RawServer, str]]:
    server = RawServer(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def replying(*chunks: bytes, keep: bool = True) -> Answer:
    """An answer of these bytes (written one by one); then keep the connection or close it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        return keep

    return answer


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


def get(base: str, path: str = "/items", headers: list[tuple[str, str]] | None = None) -> UpstreamRequest:
    return UpstreamRequest("GET", base + path, headers or [], None)


async def test_connections_are_kept_alive_and_reused() -> None:
    async with raw_server(replying(OK)) as (server, base):
        client = HttpClient(base, ClientSettings())
        for _ in range(5):
            response = await client.send(get(base))
            assert (response.status, response.body) == (200, b'{"ok":true}')
            assert response.headers["CONTENT-TYPE"] == "application/json"
        await client.aclose()
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0].decode()
    assert first.startswith("GET /items HTTP/1.1\r\nHost: 127.0.0.1:")
    assert "\r\nUser-Agent: mcp-gateway\r\n" in first and "content-length" not in first.lower()


async def test_a_body_is_sent_with_its_length_and_a_bodiless_post_says_zero() -> None:
    async with raw_server(replying(OK)) as (server, base):
        client = HttpClient(base, ClientSettings())
        await client.send(UpstreamRequest("POST", base + "/items", [("Content-Type", "application/json")], b'{"a":1}'))
        await client.send(UpstreamRequest("POST", base + "/items", [], None))
        await client.aclose()
    assert server.requests[0].endswith(b'Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}')
    assert server.requests[1].endswith(b"\r\nContent-Length: 0\r\n\r\n")


async def test_an_idempotent_request_on_a_connection_the_server_closed_is_sent_again() -> None:
    # The server answers once per connection and then closes it, without saying so: the client
    # keeps the connection, finds it closed at the next request, and sends a GET once more on a
    # new one. A POST is not sent again (the server may have acted on it).
    async with raw_server(replying(OK, keep=False)) as (server, base):
        client = HttpClient(base, ClientSettings())
        assert (await client.send(get(base))).status == 200
        await asyncio.sleep(0.1)  # the server's close has arrived
        assert (await client.send(get(base))).status == 200
        assert server.connections == 2
        await client.aclose()


async def test_a_post_on_a_connection_closed_under_it_is_not_sent_twice() -> None:
    closed = asyncio.Event()

    async def once_then_close_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 1:
            writer.write(OK)
            return True
        closed.set()
        return False  # reads the second request, then closes without answering

    async with raw_server(once_then_close_late) as (server, base):
        client = HttpClient(base, ClientSettings())
        await client.send(UpstreamRequest("POST", base + "/items", [], b"1"))
        with pytest.raises(UpstreamError) as refused:
            await client.send(UpstreamRequest("POST", base + "/items", [], b"2"))
        assert refused.value.kind == "closed" and "closed the connection without answering" in str(refused.value)
        assert len(server.requests) == 2 and server.connections == 1
        await client.aclose()


async def test_a_body_delimited_by_the_connections_end() -> None:
    answer = replying(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"until ", b"the end", keep=False)
    async with raw_server(answer) as (server, base):
        client = HttpClient(base, ClientSettings())
        response = await client.send(get(base))
        assert response.body == b"until the end"
        assert (await client.send(get(base))).body == b"until the end"  # a new connection
        assert server.connections == 2
        await client.aclose()


async def test_chunked_bodies_with_trailers_and_interim_responses() -> None:
    answer = replying(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\n\r\n",
        b"5\r\nhello\r\n",
        b"6\r\n world\r\n0\r\nX-Trailer: late\r\n\r\n",
    )
    async with raw_server(answer) as (server, base):
        client = HttpClient(base, ClientSettings())
        for _ in range(2):
            response = await client.send(get(base))
            assert (response.status, response.reason, response.body) == (201, "Created", b"hello world")
            assert response.headers["x-id"] == "7" and "link" not in response.headers
            assert "x-trailer" not in response.headers
        assert server.connections == 1
        await client.aclose()


async def test_an_answer_to_head_ends_at_its_headers() -> None:
    answer = replying(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    async with raw_server(answer) as (_, base):
        client = HttpClient(base, ClientSettings(timeout=5))
        for _ in range(2):
            response = await client.send(UpstreamRequest("HEAD", base + "/items", [], None))
            assert (response.status, response.body, response.headers["content-length"]) == (200, b"", "1000")
        await client.aclose()


async def test_size_caps_declared_and_undeclared() -> None:
    big = b"x" * 2000
    declared = replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + big)
    chunked = replying(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"7d0\r\n" + big + b"\r\n0\r\n\r\n")
    for answer, said in ((declared, "2000 bytes; the limit is 1000"), (chunked, "over the 1000-byte limit")):
        async with raw_server(answer) as (_, base):
            client = HttpClient(base, ClientSettings(max_response_bytes=1000))
            with pytest.raises(UpstreamError) as refused:
                await client.send(get(base))
            assert refused.value.kind == "too-large" and said in str(refused.value)
            await client.aclose()


async def test_an_answer_cut_short_or_garbled() -> None:
    cut = replying(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", keep=False)
    garbled = replying(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
    for answer, kind, said in (
        (cut, "closed", "closed the connection before its answer was complete"),
        (garbled, "protocol", "sent an invalid HTTP response"),
    ):
        async with raw_server(answer) as (_, base):
            client = HttpClient(base, ClientSettings())
            with pytest.raises(UpstreamError) as failed:
                await client.send(get(base))
            assert failed.value.kind == kind and said in str(failed.value), str(failed.value)
            await client.aclose()


async def test_bytes_after_an_answer_retire_the_connection() -> None:
    # A second response nobody asked for must not be read as the answer to the next request.
    answer = replying(OK + b"HTTP/1.1 500 Stale\r\nContent-Length: 0\r\n\r\n")
    async with raw_server(answer) as (server, base):
        client = HttpClient(base, ClientSettings())
        assert (await client.send(get(base))).status == 200
        await asyncio.sleep(0.1)
        assert (await client.send(get(base))).status == 200
        assert server.connections == 2
        await client.aclose()


@pytest.mark.parametrize(
    "header",
    [("X-Key", "a\r\nX-Injected: 1"), ("X-Key", "a\nb"), ("X-Key", "a\x00b"), ("Bad Name", "v"), ("X:Key", "v")],
)
async def test_a_header_that_would_break_its_line_is_never_sent(header: tuple[str, str]) -> None:
    async with raw_server(replying(OK)) as (server, base):
        client = HttpClient(base, ClientSettings())
        with pytest.raises(UpstreamError) as refused:
            await client.send(get(base, headers=[header]))
        assert refused.value.kind == "request" and "would break its line" in str(refused.value)
        assert "a\r\n" not in str(refused.value)
        await client.aclose()
    assert server.requests == []


async def test_idle_connections_expire() -> None:
    async with raw_server(replying(OK)) as (server, base):
        client = HttpClient(base, ClientSettings())
        client._pool.keepalive = 0.2
        await client.send(get(base))
        await client.send(get(base))
        await asyncio.sleep(0.3)
        await client.send(get(base))
        assert server.connections == 2
        await client.aclose()


async def test_concurrent_calls_are_bounded_by_max_connections() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await asyncio.sleep(0.05)
        writer.write(OK)
        return True

    async with raw_server(slow) as (server, base):
        client = HttpClient(base, ClientSettings(max_connections=3))
        responses = await asyncio.gather(*(client.send(get(base)) for _ in range(12)))
        assert {r.status for r in responses} == {200}
        assert server.connections == 3
        await client.aclose()
