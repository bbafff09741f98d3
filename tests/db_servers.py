"""Throwaway PostgreSQL and Redis servers for tests, on free loopback ports, stopped by pid.

`bash scripts/test` installs their Debian packages (postgresql, redis-server) where missing;
a test that needs one and cannot find its binaries fails, naming that command. PostgreSQL
refuses to run as root: as root, its commands run as the `postgres` user, on a data dir under
/tmp that user owns (pytest's own tmp dirs are private to root).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.servers import free_port

INSTALL = "run `bash scripts/test` once: it installs the Debian packages postgresql and redis-server"


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl): `$MCP_GATEWAY_PG_BIN`, Debian's
    newest `/usr/lib/postgresql/*/bin`, else the PATH."""
    if os.environ.get("MCP_GATEWAY_PG_BIN"):
        given = Path(os.environ["MCP_GATEWAY_PG_BIN"])
        if not (given / "pg_ctl").is_file():
            pytest.fail(f"$MCP_GATEWAY_PG_BIN={given} has no pg_ctl: {INSTALL}, or unset it", pytrace=False)
        return given
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        pytest.fail(f"PostgreSQL's pg_ctl was not found (nor $MCP_GATEWAY_PG_BIN): {INSTALL}", pytrace=False)
    return Path(on_path).parent


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder; `database()` makes a fresh database per test."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="mcp-gateway-pg-", dir="/tmp"))
        self.dir.chmod(0o755)
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = 0
        self._names = itertools.count(1)

    def _run(self, *argv: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        done = subprocess.run(
            [*prefix, *argv], cwd=self.dir, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        """initdb, then start on a free port (tried again if another process took it meanwhile)."""
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--locale=C", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        # Durability is not under test: no fsync makes CREATE DATABASE and commits fast.
        options = (
            "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            f"-c dynamic_shared_memory_type=mmap -c max_connections=300 -k {self.dir}"
        )
        for attempt in range(3):
            self.port = free_port()
            try:
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                    "-t", "60", "-o", f"{options} -p {self.port}", "start",
                )  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2:
                    log = (self.dir / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start; its log ends:\n{log}") from None
        with self.admin() as conn:
            # Per-test databases are copies of this one (CREATE DATABASE ... TEMPLATE): fast.
            conn.execute("CREATE DATABASE gw_template")

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and delete its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres", *, user: str = "postgres") -> str:
        """A `postgresql://` URL of one of its databases."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        """An autocommit superuser connection to the `postgres` database."""
        return psycopg.connect(self.url(), autocommit=True, connect_timeout=10)

    def database(self) -> str:
        """The URL of a new, empty database (no table until the store migrates it)."""
        name = f"gw_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE gw_template")
        return self.url(name)


def redis_server_binary() -> str:
    """`$MCP_GATEWAY_REDIS_SERVER`, else `redis-server` on the PATH."""
    binary = os.environ.get("MCP_GATEWAY_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None or not Path(binary).is_file():
        pytest.fail(f"redis-server was not found (nor $MCP_GATEWAY_REDIS_SERVER): {INSTALL}", pytrace=False)
    return binary
