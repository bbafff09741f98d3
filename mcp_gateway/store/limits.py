"""Rate-limit rules added at run time (CLI, admin API), shared by the CLI and the servers.

Each write bumps the `limits` revision in its transaction: running gateways pick the rules up at
their next store poll and apply them with the config file's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, insert, select

from mcp_gateway.config.limits import LimitRule
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import limit_rules

COUNTER = "limits"


def public_rule(rule: LimitRule, source: str, created_at: float | None = None) -> dict[str, Any]:
    """A rule as JSON for people and the admin API, with where it comes from (`config` or `store`)."""
    return {"name": rule.name, "source": source, "created_at": created_at,
            **rule.model_dump(mode="json", exclude_defaults=True, exclude={"name"})}  # fmt: skip


class LimitRuleError(ValueError):
    """A rule that cannot be stored (its name is taken); the message says why."""


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule added at run time, and when."""

    rule: LimitRule
    created_at: float


class LimitStore:
    """Stored rate-limit rules (each has a name: it is how they are removed)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def revision(self) -> int:
        """A number that changes whenever a stored rule changes."""
        return self.db.revision(COUNTER)

    def list(self) -> list[StoredRule]:
        """Every stored rule, oldest first."""
        rows = self.db.query(select(limit_rules.c.rule, limit_rules.c.created_at).order_by(limit_rules.c.created_at))
        return [StoredRule(LimitRule.model_validate_json(rule), created) for rule, created in rows]

    def add(self, rule: LimitRule) -> StoredRule:
        """Store a named rule; LimitRuleError when the name is taken."""
        if rule.name is None:
            raise LimitRuleError("a rule added at run time needs a name (it is how it is removed)")
        now = time.time()
        payload = json.dumps(rule.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        with self.db.transaction(COUNTER) as tx:
            if tx.scalar(select(exists().where(limit_rules.c.name == rule.name))):
                raise LimitRuleError(f"a limit named {rule.name!r} exists: remove it first")
            tx.execute(insert(limit_rules).values(name=rule.name, rule=payload, created_at=now))
        return StoredRule(rule, now)

    def remove(self, name: str) -> bool:
        """Remove a stored rule; False when there was none."""
        with self.db.transaction(COUNTER) as tx:
            return bool(tx.execute(delete(limit_rules).where(limit_rules.c.name == name)).rowcount)
