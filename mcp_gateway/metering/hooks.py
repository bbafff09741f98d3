"""Hooks: how instrumentation (metrics now, traces later) hears of what the core does, without the
core knowing who listens.

The core calls an `Observer` at the few points that are not a call record: a limit or budget
refusing a call, spend settled on a budget, a model call retried or falling back. The default,
`NOBODY`, does nothing; `Observers` hands each event to several. Every argument is a name from the
config or the catalog (never a caller's text), so listeners can use them as metric labels.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

Refuser = Literal["limit", "budget"]
Why = Literal["exceeded", "unavailable"]


class Observer:
    """Events from the core; each method must return at once (no I/O). Override what you need."""

    def refused(self, by: Refuser, why: Why, rule: str, kind: str) -> None:
        """A limit or budget refused a `kind` ("tool" or "model") call; `rule` names it ("" when
        the store was unreachable)."""

    def spent(self, budget: str, scope: str, usd: Decimal) -> None:
        """`usd` was settled on budget `budget` (scoped per `scope`: key, consumer, team, org, global)."""

    def retried(self, model: str, reason: str) -> None:
        """A model call is tried again (on the same or the next deployment); `reason` is the error's kind."""

    def fell_back(self, model: str, to: str) -> None:
        """A model call failed on `model` and goes to its fallback `to`."""


NOBODY = Observer()


class Observers(Observer):
    """Several observers as one."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def refused(self, by: Refuser, why: Why, rule: str, kind: str) -> None:
        for observer in self.observers:
            observer.refused(by, why, rule, kind)

    def spent(self, budget: str, scope: str, usd: Decimal) -> None:
        for observer in self.observers:
            observer.spent(budget, scope, usd)

    def retried(self, model: str, reason: str) -> None:
        for observer in self.observers:
            observer.retried(model, reason)

    def fell_back(self, model: str, to: str) -> None:
        for observer in self.observers:
            observer.fell_back(model, to)
