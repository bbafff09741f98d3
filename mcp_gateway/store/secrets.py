"""Sealed credentials in the gateway's database: the `secrets` table, and the sealed values of every table.

This module stores and finds blobs; it never sees a key or a plaintext (the vault
seals and opens them). Every write of a secret bumps the `secrets` revision, so
gateways that cache resolved credentials know when to drop them.

Other tables hold sealed values too (per-user OAuth tokens...): their columns are
marked in the schema (store/schema.py), so a master-key rotation run from the CLI
re-encrypts every one of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, delete, select, update

from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import row_id, sealed_tables, secrets

COUNTER = "secrets"
TABLE = "secrets"
COLUMN = "value"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
_COLUMNS = (secrets.c.name, secrets.c.value, secrets.c.description, secrets.c.created_at, secrets.c.updated_at)


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
    """A table with sealed columns; each value's AAD holds its row id (the primary key, NUL-joined)."""

    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SealedCell:
    """One sealed value as found by a scan; `key` (the primary key's values) addresses it for an update."""

    table: str
    key: tuple[object, ...]
    row_id: str
    column: str
    blob: bytes = field(repr=False)


class SecretStore:
    """The `secrets` table and the declarations of other sealed columns."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def revision(self) -> int:
        """Changes whenever a secret is written, removed or re-encrypted."""
        return self.db.revision(COUNTER)

    def get(self, name: str) -> SecretRow | None:
        """One secret (sealed), or None."""
        rows = self.db.query(select(*_COLUMNS).where(secrets.c.name == name))
        return SecretRow(*rows[0]) if rows else None

    def list(self) -> list[SecretRow]:
        """Every secret (sealed), by name."""
        return [SecretRow(*r) for r in self.db.query(select(*_COLUMNS).order_by(secrets.c.name))]

    def put(self, name: str, blob: bytes, description: str | None) -> tuple[SecretRow, bool]:
        """Create or replace a secret; returns it and whether it was created.

        A replacement without a description keeps the one stored.
        """
        now = time.time()
        with self.db.transaction(COUNTER) as tx:
            old = tx.execute(select(secrets.c.description, secrets.c.created_at).where(secrets.c.name == name)).first()
            if old is None:
                tx.execute(
                    secrets.insert().values(
                        name=name, value=blob, description=description, created_at=now, updated_at=now
                    )
                )
                return SecretRow(name, blob, description, now, now), True
            description = description if description is not None else old[0]
            tx.execute(
                update(secrets)
                .where(secrets.c.name == name)
                .values(value=blob, description=description, updated_at=now)
            )
            return SecretRow(name, blob, description, old[1], now), False

    def delete(self, name: str) -> bool:
        """Remove a secret; False when there is none."""
        with self.db.transaction(COUNTER) as tx:
            return tx.execute(delete(secrets).where(secrets.c.name == name)).rowcount > 0

    # -- sealed values of every table -----------------------------------------------

    @staticmethod
    def sealed_tables() -> list[SealedTable]:
        """Every table with sealed columns (the secrets table among them), by name."""
        return [
            SealedTable(table.name, tuple(c.name for c in table.primary_key.columns), tuple(c.name for c in columns))
            for table, columns in sealed_tables()
        ]

    def scan(self, tx: Connection) -> Iterator[SealedCell]:
        """Every non-null sealed value in every sealed table, read inside `tx`."""
        for table, columns in sealed_tables():
            key = tuple(table.primary_key.columns)
            for row in tx.execute(select(*key, *columns)):
                values = tuple(row[: len(key)])
                for column, blob in zip(columns, row[len(key) :], strict=True):
                    if blob is not None:
                        yield SealedCell(table.name, values, row_id(*values), column.name, bytes(blob))

    def update_cell(self, tx: Connection, cell: SealedCell, blob: bytes) -> None:
        """Replace one sealed value found by `scan`, inside the same transaction."""
        table = secrets.metadata.tables[cell.table]
        where = and_(*(c == v for c, v in zip(table.primary_key.columns, cell.key, strict=True)))
        tx.execute(update(table).where(where).values({cell.column: blob}))
