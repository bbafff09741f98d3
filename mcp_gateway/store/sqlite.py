"""API registrations in SQLite: survive restarts, shared by the CLI and the server.

Every write bumps a revision counter, so a running gateway can notice a change
made by another process (the CLI, another replica) with one cheap query.
Calls are blocking: async callers run them in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mcp_gateway.config import ApiConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apis (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    spec_text   TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""


@dataclass(frozen=True, slots=True)
class Registration:
    """A stored API registration: its config and, for uploaded specs, the spec text."""

    config: ApiConfig
    spec_text: str | None
    created_at: float
    updated_at: float


class RegistrationStore:
    """SQLite-backed registrations (WAL mode: the server reads while the CLI writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def revision(self) -> int:
        """A number that changes whenever any registration changes."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0]) if row else 0

    def list(self) -> list[Registration]:
        """All registrations, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT config, spec_text, created_at, updated_at FROM apis ORDER BY name"
            ).fetchall()
        return [Registration(ApiConfig.model_validate_json(c), t, ca, ua) for c, t, ca, ua in rows]

    def get(self, name: str) -> Registration | None:
        """One registration, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT config, spec_text, created_at, updated_at FROM apis WHERE name = ?", (name,)
            ).fetchone()
        return Registration(ApiConfig.model_validate_json(row[0]), row[1], row[2], row[3]) if row else None

    def put(self, config: ApiConfig, spec_text: str | None = None) -> bool:
        """Insert or replace; returns True when it replaced an existing registration."""
        now = time.time()
        payload = json.dumps(config.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existed = self._db.execute("SELECT 1 FROM apis WHERE name = ?", (config.name,)).fetchone() is not None
                self._db.execute(
                    "INSERT INTO apis (name, config, spec_text, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET config = excluded.config, spec_text = excluded.spec_text, "
                    "updated_at = excluded.updated_at",
                    (config.name, payload, spec_text, now, now),
                )
                self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return existed

    def delete(self, name: str) -> bool:
        """Remove a registration; False when there was none."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = self._db.execute("DELETE FROM apis WHERE name = ?", (name,)).rowcount > 0
                if gone:
                    self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return gone
