"""The upstream used by the benchmarks: one JSON endpoint on a bare uvloop + httptools server.

Deliberately lean (no framework), so that on a 2-core machine the benchmark's
CPU goes to the gateway being measured, not to the upstream it calls.

    python bench/upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs

import httptools
import uvloop


class _Handler(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path, _, query = self.url.partition(b"?")
        self.url = b""
        if not path.startswith(b"/items/"):
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        q = parse_qs(query.decode()).get("q", [None])[0]
        body = json.dumps({"id": path[7:].decode(), "q": q, "name": "widget"}).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        self.transport.write(head + body)  # type: ignore[attr-defined]
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Handler, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
