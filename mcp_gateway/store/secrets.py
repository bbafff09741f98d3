"""Sealed credentials in the gateway's database: the `secrets` table and the list of sealed columns.

This module stores and finds blobs; it never sees a key or a plaintext (the vault
seals and opens them). Every write of a secret bumps the `secrets` revision, so
gateways that cache resolved credentials know when to drop them.

Other tables may hold sealed values too (per-user OAuth tokens...). They are
declared in `sealed_columns`, in the database rather than in memory, so a
master-key rotation run from the CLI re-encrypts what a running gateway declared.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from mcp_gateway.store.database import Database

COUNTER = "secrets"
TABLE = "secrets"
COLUMN = "value"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    description TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sealed_columns (
    table_name TEXT PRIMARY KEY,
    id_sql     TEXT NOT NULL,
    columns    TEXT NOT NULL
);
"""


def valid_name(name: str) -> bool:
    """Whether `name` may name a secret: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`."""
    return bool(_NAME.match(name))


@dataclass(frozen=True, slots=True)
class SecretRow:
    """One stored secret; its sealed value is left out of the repr."""

    name: str
    value: bytes = field(repr=False)
    description: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class SealedTable:
    """A table with sealed columns; `id_sql` gives the row id that is part of each value's AAD."""

    table: str
    id_sql: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SealedCell:
    """One sealed value as found by a scan; `rowid` addresses it for an update."""

    table: str
    rowid: int
    row_id: str
    column: str
    blob: bytes = field(repr=False)


class SecretStore:
    """The `secrets` table and the declarations of other sealed columns."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(_SCHEMA, COUNTER)

    def revision(self) -> int:
        """Changes whenever a secret is written, removed or re-encrypted."""
        return self.db.revision(COUNTER)

    def get(self, name: str) -> SecretRow | None:
        """One secret (sealed), or None."""
        rows = self.db.query(
            "SELECT name, value, description, created_at, updated_at FROM secrets WHERE name = ?", (name,)
        )
        return SecretRow(*rows[0]) if rows else None

    def list(self) -> list[SecretRow]:
        """Every secret (sealed), by name."""
        rows = self.db.query("SELECT name, value, description, created_at, updated_at FROM secrets ORDER BY name")
        return [SecretRow(*r) for r in rows]

    def put(self, name: str, blob: bytes, description: str | None) -> tuple[SecretRow, bool]:
        """Create or replace a secret; returns it and whether it was created.

        A replacement without a description keeps the one stored.
        """
        now = time.time()
        with self.db.transaction(COUNTER) as tx:
            old = tx.execute("SELECT description, created_at FROM secrets WHERE name = ?", (name,)).fetchone()
            if old is None:
                tx.execute(
                    "INSERT INTO secrets (name, value, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (name, blob, description, now, now),
                )
                return SecretRow(name, blob, description, now, now), True
            description = description if description is not None else old[0]
            tx.execute(
                "UPDATE secrets SET value = ?, description = ?, updated_at = ? WHERE name = ?",
                (blob, description, now, name),
            )
            return SecretRow(name, blob, description, old[1], now), False

    def delete(self, name: str) -> bool:
        """Remove a secret; False when there is none."""
        with self.db.transaction(COUNTER) as tx:
            return tx.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount > 0

    # -- sealed columns of any table -------------------------------------------

    def register_sealed(self, table: str, id_sql: str, columns: Sequence[str]) -> None:
        """Declare (or re-declare) a table whose `columns` hold sealed values.

        `id_sql` is an SQL expression over a row that gives the row id its values were
        sealed with. The table must be an ordinary (rowid) table.
        """
        if not _IDENTIFIER.match(table) or table in (TABLE, "sealed_columns"):
            raise ValueError(f"cannot declare sealed table {table!r}")
        if not columns or not all(_IDENTIFIER.match(c) for c in columns):
            raise ValueError("sealed columns must be plain SQL identifiers")
        if not id_sql.strip() or ";" in id_sql:
            raise ValueError("id_sql must be one SQL expression")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO sealed_columns (table_name, id_sql, columns) VALUES (?, ?, ?)",
                (table, id_sql, ",".join(columns)),
            )

    def sealed_tables(self) -> list[SealedTable]:
        """The secrets table, then every declared table."""
        rows = self.db.query("SELECT table_name, id_sql, columns FROM sealed_columns ORDER BY table_name")
        return [SealedTable(TABLE, "name", (COLUMN,)), *(SealedTable(t, i, tuple(c.split(","))) for t, i, c in rows)]

    def scan(self, tx: sqlite3.Connection) -> Iterator[SealedCell]:
        """Every non-null sealed value in every sealed table, read inside `tx`."""
        for sealed in self.sealed_tables():
            exists = tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (sealed.table,))
            if exists.fetchone() is None:
                continue  # declared by a component whose table was never created here
            columns = ", ".join(f'"{c}"' for c in sealed.columns)
            rows = tx.execute(f'SELECT rowid, ({sealed.id_sql}), {columns} FROM "{sealed.table}"').fetchall()
            for rowid, row_id, *values in rows:
                for column, blob in zip(sealed.columns, values, strict=True):
                    if isinstance(blob, bytes):
                        yield SealedCell(sealed.table, rowid, str(row_id), column, blob)

    def update_cell(self, tx: sqlite3.Connection, cell: SealedCell, blob: bytes) -> None:
        """Replace one sealed value found by `scan`, inside the same transaction."""
        tx.execute(f'UPDATE "{cell.table}" SET "{cell.column}" = ? WHERE rowid = ?', (blob, cell.rowid))
