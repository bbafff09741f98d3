"""The SQLite database behind the store: one file, WAL mode, shared by CLI and servers.

Each area (registrations, identities) keeps a revision counter that every write
bumps in the same transaction, so a running gateway notices changes made by
another process (the CLI, another replica) with one cheap query. Calls are
blocking: async callers run them in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_META = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class StoreError(Exception):
    """The database cannot be opened or used; the message names the file and the fix."""


class Database:
    """A thread-safe SQLite connection with transactions and revision counters."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_META)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StoreError(
                f"cannot use the database {path} ({reason}): check its folder's permissions, or choose another "
                "place with --data-dir or database_url"
            ) from None

    def migrate(self, schema: str, *counters: str) -> None:
        """Create tables (idempotent DDL) and revision counters."""
        with self._lock:
            self._db.executescript(schema)
            for name in counters:
                self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 0)", (name,))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self, counter: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction; bumps `counter` when it commits."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                if counter is not None:
                    self._db.execute("UPDATE meta SET value = value + 1 WHERE key = ?", (counter,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def revision(self, counter: str) -> int:
        """The current value of a revision counter."""
        rows = self.query("SELECT value FROM meta WHERE key = ?", (counter,))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
