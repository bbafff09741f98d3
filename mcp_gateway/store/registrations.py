"""API registrations: survive restarts, shared by the CLI and the servers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import delete, exists, select

from mcp_gateway.config import ApiConfig
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import apis

COUNTER = "revision"  # the registrations' revision counter (its historic name)
_COLUMNS = (apis.c.config, apis.c.spec_text, apis.c.created_at, apis.c.updated_at)


@dataclass(frozen=True, slots=True)
class Registration:
    """A stored API registration: its config and, for uploaded specs, the spec text."""

    config: ApiConfig
    spec_text: str | None
    created_at: float
    updated_at: float


def _row(config: str, spec_text: str | None, created_at: float, updated_at: float) -> Registration:
    return Registration(ApiConfig.model_validate_json(config), spec_text, created_at, updated_at)


class RegistrationStore:
    """Stored API registrations."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def revision(self) -> int:
        """A number that changes whenever any registration changes."""
        return self.db.revision(COUNTER)

    def list(self) -> list[Registration]:
        """All registrations, by name."""
        return [_row(*row) for row in self.db.query(select(*_COLUMNS).order_by(apis.c.name))]

    def get(self, name: str) -> Registration | None:
        """One registration, or None."""
        rows = self.db.query(select(*_COLUMNS).where(apis.c.name == name))
        return _row(*rows[0]) if rows else None

    def put(self, config: ApiConfig, spec_text: str | None = None) -> bool:
        """Insert or replace; returns True when it replaced an existing registration."""
        now = time.time()
        payload = json.dumps(config.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        with self.db.transaction(COUNTER) as tx:
            existed = bool(tx.scalar(select(exists().where(apis.c.name == config.name))))
            row = dict(name=config.name, config=payload, spec_text=spec_text, created_at=now, updated_at=now)
            self.db.upsert(tx, apis, row, {"config": payload, "spec_text": spec_text, "updated_at": now})
        return existed

    def delete(self, name: str) -> bool:
        """Remove a registration; False when there was none."""
        with self.db.transaction(COUNTER) as tx:
            return tx.execute(delete(apis).where(apis.c.name == name)).rowcount > 0
