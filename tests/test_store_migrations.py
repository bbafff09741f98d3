"""The store's schema migrations: applied at open and by `mcp-gateway db upgrade`, on both backends;
a database made before migrations existed is adopted without losing anything; replicas starting
together against one PostgreSQL migrate it once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from mcp_gateway.config import ApiConfig
from mcp_gateway.store.connections import ConnectionStore
from mcp_gateway.store.database import Database, StoreError
from mcp_gateway.store.identities import IdentityStore
from mcp_gateway.store.registrations import RegistrationStore
from mcp_gateway.store.schema import metadata
from mcp_gateway.store.upgrade import head
from mcp_gateway.vault import Vault
from tests.db_servers import PostgresServer

REPO = Path(__file__).resolve().parent.parent


def gateway_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mcp_gateway.cli", *args]
    return subprocess.run(command, env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_migrations_make_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert db.current() == head()
        with db.engine.connect() as conn:
            # What `alembic revision --autogenerate` would write: nothing, or schema.py lacks a revision.
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
            tables = set(inspect(conn).get_table_names())
        assert differences == []
        assert tables == {*metadata.tables, "alembic_version"}
    finally:
        db.close()


def test_db_upgrade_and_current(database_url: str, tmp_path: Path) -> None:
    env = {"MCP_GATEWAY_DATABASE_URL": database_url, "MCP_GATEWAY_DATA_DIR": str(tmp_path / "data")}
    before = gateway_cli("db", "current", env=env)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith(f"none (the newest is {head()}: run `mcp-gateway db upgrade`)")
    upgraded = gateway_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0 and f"from revision none to {head()}" in upgraded.stdout, upgraded.stderr
    again = gateway_cli("db", "upgrade", env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    shown = json.loads(gateway_cli("db", "current", "--json", env=env).stdout)
    assert shown["revision"] == shown["newest"] == head()


def test_a_schema_newer_than_this_version_is_refused_clearly(database_url: str) -> None:
    db = Database(database_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    db.close()
    with pytest.raises(StoreError, match=r"revision 9999, which this version of mcp-gateway does not know"):
        Database(database_url)


def test_errors_never_show_the_password(postgres: PostgresServer) -> None:
    password = "hunter2-not-to-be-shown"
    closed = f"postgresql://gw:{password}@127.0.0.1:1/gateway"
    with pytest.raises(StoreError) as caught:
        Database(closed)
    assert password not in str(caught.value) and "gw:***@127.0.0.1:1/gateway" in str(caught.value)
    missing = postgres.url("no_such_database").replace("postgres@", f"postgres:{password}@")
    with pytest.raises(StoreError, match="no_such_database") as caught:
        Database(missing)
    assert password not in str(caught.value)
    for url in (closed, missing, f"mysql://gw:{password}@127.0.0.1/x"):
        out = gateway_cli("db", "upgrade", env={"MCP_GATEWAY_DATABASE_URL": url})
        assert out.returncode == 2 and out.stderr.startswith("error: ") and password not in out.stderr + out.stdout


# Racing without a lock (PostgreSQL's advisory lock, SQLite's write lock taken by BEGIN IMMEDIATE),
# these processes fail on "relation already exists" or a duplicate type; with it, one migrates and
# the others find the work done.
STARTER = """
import sys
from mcp_gateway.store.database import Database
Database(sys.argv[1]).close()
"""


def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    url = database_url
    starters = [
        subprocess.Popen([sys.executable, "-c", STARTER, url], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in starters]
    assert [p.returncode for p in starters] == [0] * 6, "\n".join(errors)
    db = Database(url, migrate=False)
    try:
        assert db.query(text("SELECT version_num FROM alembic_version")) == [(head(),)]
    finally:
        db.close()


# -- a database made before migrations: main's DDL as it was, copied here -------------------------

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS apis (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, spec_text TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY, team TEXT, org TEXT, disabled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, consumer TEXT NOT NULL REFERENCES consumers(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL, description TEXT, created_at REAL NOT NULL, expires_at REAL, revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_consumer ON api_keys(consumer);
CREATE TABLE IF NOT EXISTS policies (
    id INTEGER PRIMARY KEY AUTOINCREMENT, subject_kind TEXT NOT NULL, subject TEXT NOT NULL, effect TEXT NOT NULL,
    selector TEXT NOT NULL, description TEXT, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY, value BLOB NOT NULL, description TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sealed_columns (table_name TEXT PRIMARY KEY, id_sql TEXT NOT NULL, columns TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_connections (
    consumer TEXT NOT NULL, api TEXT NOT NULL, access_token BLOB NOT NULL, refresh_token BLOB, expires_at REAL,
    issued_at REAL NOT NULL, scope TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (consumer, api)
);
CREATE TABLE IF NOT EXISTS oauth_pending (
    key_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, consumer TEXT NOT NULL, api TEXT NOT NULL, verifier BLOB,
    expires_at REAL NOT NULL
);
"""
# Not created: `models` and the drift tables, as in a database last used before those existed.


def make_old_database(path: Path, vault: Vault) -> None:
    """What main's code left on disk: tables, counters, rows, values sealed by (table, row id, column)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    registration = ApiConfig(name="pets", spec="https://pets.test/openapi.json", prefix="p")
    sealed_secret = vault.seal("secrets", "gh-token", "value", "ghp-secret-value")
    sealed_access = vault.seal("oauth_connections", "alice\0gh", "access_token", "user-access-token")
    with db:
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("revision", 7), ("identities", 3), ("secrets", 2)])
        db.execute(
            "INSERT INTO apis VALUES ('pets', ?, 'openapi: 3.1.0', 1.5, 2.5)",
            (registration.model_dump_json(exclude_defaults=True),),
        )
        db.execute("INSERT INTO consumers VALUES ('alice', 'blue', 'acme', 0, 1.0)")
        db.execute("INSERT INTO api_keys VALUES ('k1', 'alice', 'hash', 'laptop', 1.0, NULL, NULL)")
        db.execute("INSERT INTO policies VALUES (41, 'consumer', 'alice', 'allow', '{}', NULL, 1.0)")
        db.execute("INSERT INTO secrets VALUES ('gh-token', ?, 'GitHub', 1.0, 1.0)", (sealed_secret,))
        db.execute(
            "INSERT INTO oauth_connections VALUES ('alice', 'gh', ?, NULL, NULL, 1.0, 'repo', 1.0, 1.0)",
            (sealed_access,),
        )
        db.execute("INSERT INTO sealed_columns VALUES ('oauth_connections', 'consumer || char(0) || api', 'a,b')")
    db.close()


def test_a_database_made_before_migrations_is_adopted_with_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "gateway.db"
    keys = Vault.open(Database(tmp_path / "scratch.db"), data_dir, {}, create_key=True)  # master.key in data_dir
    make_old_database(path, keys)

    upgraded = gateway_cli("db", "upgrade", env={"MCP_GATEWAY_DATA_DIR": str(data_dir)})
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from revision none to {head()}" in upgraded.stdout

    db = Database(path)
    try:
        assert db.current() == head()
        tables = set(inspect(db.engine).get_table_names())
        assert {"models", "drift_tools", "drift_findings"} <= tables and "sealed_columns" not in tables
        registrations = RegistrationStore(db)
        pets = registrations.get("pets")
        assert pets is not None and pets.config.prefix == "p" and pets.spec_text == "openapi: 3.1.0"
        assert (pets.created_at, pets.updated_at) == (1.5, 2.5)
        assert registrations.revision() == 7  # counters go on from where they were
        identities = IdentityStore(db)
        assert identities.consumer("alice").team == "blue" and identities.key("k1").description == "laptop"  # type: ignore[union-attr]
        assert [p.id for p in identities.policies()] == [41]
        identities.add_consumer("bob")
        assert identities.revision() == 4
        vault = Vault.open(db, data_dir, {})
        assert vault.get("gh-token") == "ghp-secret-value" and vault.revision() == 2
        connections = ConnectionStore(db, vault)
        token = connections.load("alice", "gh")
        assert token is not None and token.access_token == "user-access-token" and token.scope == "repo"
        # Rotation finds the old rows' sealed values by their primary key, as they were sealed.
        assert vault.rotate_master() == 2
        assert vault.get("gh-token") == "ghp-secret-value"
        assert connections.load("alice", "gh").access_token == "user-access-token"  # type: ignore[union-attr]
    finally:
        db.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
