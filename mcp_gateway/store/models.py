"""Model registrations: models added at run time (CLI, admin API), shared by the CLI and the servers.

Each write bumps the `models` revision in its transaction, so running gateways notice a change
made by another process with one cheap query per store poll.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import delete, exists, select

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import models

COUNTER = "models"
_COLUMNS = (models.c.config, models.c.created_at, models.c.updated_at)


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

    def revision(self) -> int:
        """A number that changes whenever any model registration changes."""
        return self.db.revision(COUNTER)

    def list(self) -> list[ModelRegistration]:
        """All registrations, oldest first (a request is served by the first glob that matches)."""
        rows = self.db.query(select(*_COLUMNS).order_by(models.c.created_at, models.c.name))
        return [_row(*row) for row in rows]

    def get(self, name: str) -> ModelRegistration | None:
        """One registration, or None."""
        rows = self.db.query(select(*_COLUMNS).where(models.c.name == name))
        return _row(*rows[0]) if rows else None

    def put(self, config: ModelConfig) -> bool:
        """Insert or replace (keeping its registration time); True when it replaced one."""
        now = time.time()
        payload = json.dumps(config.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        with self.db.transaction(COUNTER) as tx:
            existed = bool(tx.scalar(select(exists().where(models.c.name == config.name))))
            row = dict(name=config.name, config=payload, created_at=now, updated_at=now)
            self.db.upsert(tx, models, row, {"config": payload, "updated_at": now})
        return existed

    def delete(self, name: str) -> ModelRegistration | None:
        """Remove a registration; returns what was removed, or None when there was none."""
        with self.db.transaction(COUNTER) as tx:
            row = tx.execute(select(*_COLUMNS).where(models.c.name == name)).first()
            if row is None:
                return None
            tx.execute(delete(models).where(models.c.name == name))
        return _row(*row)
