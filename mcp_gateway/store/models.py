"""Model registrations: models added at run time (CLI, admin API), shared by the CLI and the servers.

Each write bumps the `models` revision in its transaction, so running gateways notice a change
made by another process with one cheap query per store poll.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.store.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""
COUNTER = "models"


@dataclass(frozen=True, slots=True)
class ModelRegistration:
    """A stored model and when it was registered and last replaced."""

    config: ModelConfig
    created_at: float
    updated_at: float


def _row(config: str, created_at: float, updated_at: float) -> ModelRegistration:
    return ModelRegistration(ModelConfig.model_validate_json(config), created_at, updated_at)


class ModelStore:
    """Stored model registrations."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(_SCHEMA, COUNTER)

    def revision(self) -> int:
        """A number that changes whenever any model registration changes."""
        return self.db.revision(COUNTER)

    def list(self) -> list[ModelRegistration]:
        """All registrations, oldest first (a request is served by the first glob that matches)."""
        rows = self.db.query("SELECT config, created_at, updated_at FROM models ORDER BY created_at, name")
        return [_row(*row) for row in rows]

    def get(self, name: str) -> ModelRegistration | None:
        """One registration, or None."""
        rows = self.db.query("SELECT config, created_at, updated_at FROM models WHERE name = ?", (name,))
        return _row(*rows[0]) if rows else None

    def put(self, config: ModelConfig) -> bool:
        """Insert or replace (keeping its registration time); True when it replaced one."""
        now = time.time()
        payload = json.dumps(config.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        with self.db.transaction(COUNTER) as tx:
            existed = tx.execute("SELECT 1 FROM models WHERE name = ?", (config.name,)).fetchone() is not None
            tx.execute(
                "INSERT INTO models (name, config, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                (config.name, payload, now, now),
            )
        return existed

    def delete(self, name: str) -> ModelRegistration | None:
        """Remove a registration; returns what was removed, or None when there was none."""
        with self.db.transaction(COUNTER) as tx:
            row = tx.execute("SELECT config, created_at, updated_at FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            tx.execute("DELETE FROM models WHERE name = ?", (name,))
        return _row(*row)
