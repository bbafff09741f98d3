"""The database behind the store: SQLite (one file, WAL mode) or PostgreSQL, shared by CLI and servers.

One SQLAlchemy engine per `Database`; queries are SQLAlchemy Core over the tables of `schema`,
the same for both backends. Each area (registrations, identities, secrets...) keeps a revision
counter that every write bumps in the same transaction, so a running gateway notices changes
made by another process (the CLI, another replica) with one cheap query. Opening a database
brings its schema to the newest migration (`upgrade`). Calls are blocking: async callers run
them in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    URL,
    Connection,
    CursorResult,
    Engine,
    Executable,
    Row,
    Table,
    create_engine,
    event,
    exc,
    make_url,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from mcp_gateway.store import upgrade as migrations
from mcp_gateway.store.schema import meta

logger = logging.getLogger(__name__)

BUSY_SECONDS = 10.0  # how long SQLite waits for another writer, PostgreSQL for a connection
_IMMEDIATE = "mcp_gateway_write"  # execution option: this SQLite transaction writes (BEGIN IMMEDIATE)
SCHEMES = ("sqlite", "postgresql")


class StoreError(Exception):
    """The database cannot be opened or used; the message names it (never its password) and the fix."""


def database_url(target: str | Path) -> URL:
    """The SQLAlchemy URL of `target`: a SQLite file path, `sqlite:///PATH` or `postgresql://...`
    (`postgres://` too), the latter mapped to the psycopg 3 driver."""
    if isinstance(target, Path):
        return URL.create("sqlite", database=str(target))
    try:
        url = make_url(target)
    except exc.ArgumentError:
        raise StoreError(f"database_url {target!r} is not a URL: use sqlite:///PATH or postgresql://...") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql" and driver in ("", "psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite") and url.database not in (None, "", ":memory:"):
        return url.set(drivername="sqlite")
    shown = url.render_as_string(hide_password=True)
    raise StoreError(
        f"unsupported database_url {shown!r}: use sqlite:///PATH (a file) or postgresql://USER:PASSWORD@HOST/DB"
    )


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(
        url, connect_args={"timeout": BUSY_SECONDS, "check_same_thread": False}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own BEGIN handling is off: we emit BEGIN ourselves (below), IMMEDIATE for writes,
        # so two writers never deadlock upgrading a read lock (the busy timeout then just waits).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")

    return engine


def _postgresql_engine(url: URL) -> Engine:
    # A replica's threads share a few connections; pre-ping replaces those a server restart broke.
    return create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_timeout=BUSY_SECONDS,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": int(BUSY_SECONDS)},
        hide_parameters=True,  # errors never show values (sealed blobs, key hashes)
    )


class Database:
    """An engine with transactions and revision counters. Thread-safe (a pool of connections)."""

    def __init__(self, target: str | Path, *, migrate: bool = True) -> None:
        """Open `target` (see `database_url`) and, unless `migrate` is false, upgrade its schema."""
        self.url = database_url(target)
        self.dialect: str = self.url.get_backend_name()
        self.path = Path(self.url.database) if self.dialect == "sqlite" and self.url.database else None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise self._error(error.strerror or str(error)) from None
        self.engine = _sqlite_engine(self.url) if self.dialect == "sqlite" else _postgresql_engine(self.url)
        if migrate:
            self.upgrade()

    @property
    def display(self) -> str:
        """The URL to show: without its password."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.display!r})"

    def _error(self, reason: str) -> StoreError:
        if self.dialect == "postgresql":
            fix = "check that the server is up and the URL's host, port, user, password and database name"
        elif "locked" in reason:
            fix = f"another process held it for over {BUSY_SECONDS:g} s: try again once it is done"
        else:
            fix = "check its folder's permissions, or choose another place with --data-dir or database_url"
        return StoreError(f"cannot use the database {self.display} ({reason}): {fix}")

    def _reason(self, error: exc.SQLAlchemyError) -> str:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        return reason[0] if reason else type(error).__name__

    # -- schema --------------------------------------------------------------

    def upgrade(self) -> tuple[str | None, str]:
        """Bring the schema to the newest migration; returns the revisions before and after."""
        try:
            return migrations.upgrade(self.engine)
        except migrations.UnknownRevision as error:
            raise StoreError(f"the database {self.display} {error}") from None
        except exc.SQLAlchemyError as error:
            raise self._error(self._reason(error)) from None

    def current(self) -> str | None:
        """The schema's migration revision (None: no migration applied)."""
        try:
            return migrations.current(self.engine)
        except exc.SQLAlchemyError as error:
            raise self._error(self._reason(error)) from None

    # -- reading and writing -------------------------------------------------

    def query(self, statement: Executable) -> list[Row[Any]]:
        """Rows of one read."""
        with self.engine.connect() as conn:
            return list(conn.execute(statement))

    @contextmanager
    def transaction(self, counter: str | None = None, *, exclusive: bool = False) -> Iterator[Connection]:
        """A write transaction; bumps `counter` when it commits.

        The counter is bumped first: on PostgreSQL its row lock makes writers of one area wait for
        each other, as SQLite's single writer does, so read-then-write steps stay consistent.
        `exclusive` holds off every counted writer until the end (master-key rotation)."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(**{_IMMEDIATE: True})  # SQLite: one writer at a time anyway
            with conn.begin():
                if exclusive and self.dialect == "postgresql":
                    # PostgreSQL only (SQLite's BEGIN IMMEDIATE already excludes writers): every counted
                    # write updates `meta`, which this lock mode blocks while leaving reads free.
                    conn.exec_driver_sql("LOCK TABLE meta IN EXCLUSIVE MODE")
                if counter is not None:
                    self.upsert(conn, meta, {"key": counter, "value": 1}, {"value": meta.c.value + 1})
                yield conn

    def upsert(
        self, conn: Connection, table: Table, values: Mapping[str, Any], update: Mapping[str, Any]
    ) -> CursorResult[Any]:
        """Insert a row, or when its primary key is taken set `update` on the row there (atomic)."""
        # Both dialects' INSERT ... ON CONFLICT constructs take the same arguments.
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(table).values(**values)
        return conn.execute(stmt.on_conflict_do_update(index_elements=list(table.primary_key.columns), set_=update))

    def revision(self, counter: str) -> int:
        """The current value of a revision counter."""
        rows = self.query(select(meta.c.value).where(meta.c.key == counter))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
