"""A real redis-server for tests, on a free loopback port, without persistence.

`redis_url` is one server for the whole session (tests keep apart by key prefix);
`RedisServer` is one a test can stop and start again (Redis down, Redis restarted). A missing
redis-server fails the tests that need it, pointing at scripts/test, which installs it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.db_servers import redis_server_binary
from tests.servers import free_port


class RedisServer:
    """A redis-server process on 127.0.0.1:`port`."""

    def __init__(self, port: int | None = None, *args: str) -> None:
        self.binary = redis_server_binary()  # $MCP_GATEWAY_REDIS_SERVER or the PATH's; fails naming scripts/test
        self.port = port or free_port()
        self.args = args  # more redis-server options (`--requirepass`, ...)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it (as a crash would: no shutdown courtesy)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """`redis://127.0.0.1:PORT/0` of a redis-server shared by the session."""
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, running; the test may stop and start it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
