"""API registrations: survive restarts, shared by the CLI and the servers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from mcp_gateway.config import ApiConfig
from mcp_gateway.store.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apis (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    spec_text   TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""
COUNTER = "revision"  # the registrations' revision counter (its historic name)


@dataclass(frozen=True, slots=True)
class Registration:
    """A stored API registration: its config and, for uploaded specs, the spec text."""

    config: ApiConfig
    spec_text: str | None
    created_at: float
    updated_at: float


class RegistrationStore:
    """Stored API registrations."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(_SCHEMA, COUNTER)

    def revision(self) -> int:
        """A number that changes whenever any registration changes."""
        return self.db.revision(COUNTER)

    def list(self) -> list[Registration]:
        """All registrations, by name."""
        rows = self.db.query("SELECT config, spec_text, created_at, updated_at FROM apis ORDER BY name")
        return [Registration(ApiConfig.model_validate_json(c), t, ca, ua) for c, t, ca, ua in rows]

    def get(self, name: str) -> Registration | None:
        """One registration, or None."""
        rows = self.db.query("SELECT config, spec_text, created_at, updated_at FROM apis WHERE name = ?", (name,))
        return Registration(ApiConfig.model_validate_json(rows[0][0]), *rows[0][1:]) if rows else None

    def put(self, config: ApiConfig, spec_text: str | None = None) -> bool:
        """Insert or replace; returns True when it replaced an existing registration."""
        now = time.time()
        payload = json.dumps(config.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        with self.db.transaction(COUNTER) as tx:
            existed = tx.execute("SELECT 1 FROM apis WHERE name = ?", (config.name,)).fetchone() is not None
            tx.execute(
                "INSERT INTO apis (name, config, spec_text, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET config = excluded.config, spec_text = excluded.spec_text, "
                "updated_at = excluded.updated_at",
                (config.name, payload, spec_text, now, now),
            )
        return existed

    def delete(self, name: str) -> bool:
        """Remove a registration; False when there was none."""
        with self.db.transaction(COUNTER) as tx:
            return tx.execute("DELETE FROM apis WHERE name = ?", (name,)).rowcount > 0
