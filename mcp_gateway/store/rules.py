"""Rules added at run time (CLI, admin API): rate limits and budgets, beside the config file's.

Each write bumps its kind's revision in its transaction: running gateways pick the rules up at
their next store poll and apply them with the config file's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table, delete, exists, insert, select

from mcp_gateway.config.budgets import BudgetRule
from mcp_gateway.config.limits import LimitRule
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import budget_rules, limit_rules

R = TypeVar("R", LimitRule, BudgetRule)


def public_rule(rule: BaseModel, source: str, created_at: float | None = None) -> dict[str, Any]:
    """A rule as JSON for people and the admin API, with where it comes from (`config` or `store`)."""
    return {"name": getattr(rule, "name", None), "source": source, "created_at": created_at,
            **rule.model_dump(mode="json", exclude_defaults=True, exclude={"name"})}  # fmt: skip


class RuleError(ValueError):
    """A rule that cannot be stored (no name, or its name is taken); the message says why."""


@dataclass(frozen=True, slots=True)
class StoredRule(Generic[R]):
    """A rule added at run time, and when."""

    rule: R
    created_at: float


class RuleStore(Generic[R]):
    """Stored rules of one kind (each has a name: it is how they are removed)."""

    def __init__(self, db: Database, table: Table, model: type[R], kind: str, counter: str) -> None:
        self.db = db
        self.table = table
        self.model = model
        self.kind = kind  # "limit", "budget": how messages name a rule
        self.counter = counter  # the revision counter running gateways poll

    def revision(self) -> int:
        """A number that changes whenever a stored rule changes."""
        return self.db.revision(self.counter)

    def list(self) -> list[StoredRule[R]]:
        """Every stored rule, oldest first."""
        t = self.table
        rows = self.db.query(select(t.c.rule, t.c.created_at).order_by(t.c.created_at))
        return [StoredRule(self.model.model_validate_json(rule), created) for rule, created in rows]

    def add(self, rule: R) -> StoredRule[R]:
        """Store a named rule; RuleError when it has no name or the name is taken."""
        if rule.name is None:
            raise RuleError(f"a {self.kind} added at run time needs a name (it is how it is removed)")
        now = time.time()
        payload = json.dumps(rule.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        t = self.table
        with self.db.transaction(self.counter) as tx:
            if tx.scalar(select(exists().where(t.c.name == rule.name))):
                raise RuleError(f"a {self.kind} named {rule.name!r} exists: remove it first")
            tx.execute(insert(t).values(name=rule.name, rule=payload, created_at=now))
        return StoredRule(rule, now)

    def remove(self, name: str) -> bool:
        """Remove a stored rule; False when there was none."""
        with self.db.transaction(self.counter) as tx:
            return bool(tx.execute(delete(self.table).where(self.table.c.name == name)).rowcount)


def limit_store(db: Database) -> RuleStore[LimitRule]:
    """The rate-limit rules added at run time."""
    return RuleStore(db, limit_rules, LimitRule, "limit", "limits")


def budget_store(db: Database) -> RuleStore[BudgetRule]:
    """The budgets added at run time."""
    return RuleStore(db, budget_rules, BudgetRule, "budget", "budgets")
