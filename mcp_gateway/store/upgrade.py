"""Schema migrations: Alembic revisions shipped in `store/migrations/`, applied when a store opens.

Opening a database costs one query when its schema is current. Otherwise the upgrade runs in one
transaction, serialised between processes: on PostgreSQL under an advisory lock (replicas that
start together wait for the first, then find nothing to do), on SQLite under its write lock.
A database made before migrations existed (tables from `CREATE TABLE IF NOT EXISTS`, no
`alembic_version`) is adopted by the first revision, which keeps the tables it finds.

A new revision, after changing `schema.py`: see migrations/env.py (`alembic revision
--autogenerate` against a scratch database at the current head; `alembic check` says whether
schema.py and the migrations agree, as tests/test_store_migrations.py does).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: any constant shared by every gateway process ("mcpgw" in ASCII).
LOCK_KEY = 0x6D63706777


class UnknownRevision(Exception):
    """The database's schema is at a revision this version does not know (a newer gateway's)."""


def config() -> Config:
    """Alembic's configuration, without an ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache
def head() -> str:
    """The newest revision this version ships."""
    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None, "no migrations shipped"
    return found


def current(engine: Engine) -> str | None:
    """The database's revision (None: no migration applied yet)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to the newest revision; returns the revisions before and after (equal: nothing done)."""
    now = current(engine)
    if now == head():
        return now, now
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(mcp_gateway_write=True)  # BEGIN IMMEDIATE (see database.py)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                # Released at commit; a process that waited here reads the revision anew below.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
            before = MigrationContext.configure(conn).get_current_revision()
            cfg = config()
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as error:
                if before is not None and "Can't locate revision" in str(error):
                    raise UnknownRevision(
                        f"has schema revision {before}, which this version of mcp-gateway does not know "
                        f"(its newest is {head()}): a newer version migrated it; upgrade mcp-gateway"
                    ) from None
                raise
    return before, head()
