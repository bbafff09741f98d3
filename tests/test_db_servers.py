"""The test servers of tests/db_servers.py: a real PostgreSQL (the store's tests use it) and a real
redis-server (for issue 11's limits), spoken to in its wire protocol (RESP) without a client library.
Without their binaries, tests that need them fail and name `bash scripts/test`, never skip."""

from __future__ import annotations

import socket

import psycopg
import pytest

from tests.db_servers import PostgresServer, postgres_bin, redis_server_binary
from tests.redis_server import RedisServer


def command(sock: socket.socket, *parts: str) -> bytes:
    """Send one command as a RESP array; return the raw reply (small replies arrive in one read)."""
    encoded = b"".join(b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)
    sock.sendall(b"*%d\r\n" % len(parts) + encoded)
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(65536)
        assert chunk, "redis closed the connection"
        reply += chunk
    return reply


def test_the_redis_server_answers_and_keeps_nothing_on_disk(redis_server: RedisServer) -> None:
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as sock:
        assert command(sock, "PING") == b"+PONG\r\n"
        assert command(sock, "SET", "limits:test", "42") == b"+OK\r\n"
        assert command(sock, "INCRBY", "limits:test", "8") == b":50\r\n"
        assert command(sock, "GET", "limits:test") == b"$2\r\n50\r\n"
        assert command(sock, "CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        assert command(sock, "CONFIG", "GET", "appendonly") == b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
        assert b"tcp_port:%d\r\n" % redis_server.port in command(sock, "INFO", "server")
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_the_postgresql_server_runs_unprivileged_with_a_database_per_test(postgres: PostgresServer) -> None:
    first, second = postgres.database(), postgres.database()
    assert first != second and first.startswith(f"postgresql://postgres@127.0.0.1:{postgres.port}/")
    with psycopg.connect(first, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE only_here (x integer)")
        settings = dict(
            conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'port')").fetchall()
        )
        assert settings == {"fsync": "off", "port": str(postgres.port)}
    with psycopg.connect(second, connect_timeout=10) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    owner = (postgres.data / "PG_VERSION").stat().st_uid
    assert owner != 0  # initdb and the server ran as an ordinary user (PostgreSQL refuses root)


def test_missing_server_binaries_fail_naming_the_setup_command(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("MCP_GATEWAY_PG_BIN", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="bash scripts/test"):
        postgres_bin()
    monkeypatch.delenv("MCP_GATEWAY_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="bash scripts/test"):
        redis_server_binary()
