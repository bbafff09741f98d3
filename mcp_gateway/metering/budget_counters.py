"""Budget accounts in this process: the budgets each gateway process enforces on its own (no Redis).

The same semantics as the Redis accounts (metering/budget_redis.py), in Python integers
(picodollars, exact at any size). A check and its reservations happen with no await in
between, so on one event loop they are atomic without a lock. Accounts of periods that have
ended are swept now and then.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mcp_gateway.metering.budgets import Account, Balance, Crossed, refuses

SWEEP_SECONDS = 600.0
KEPT_AFTER_END = 86400  # seconds an ended period's accounts stay (for calls that straddled its end)


class _Entry:
    __slots__ = ("account", "alerted", "reserved", "spent")

    def __init__(self, account: Account, spent: int = 0) -> None:
        self.account = account
        self.spent = spent
        self.reserved = 0
        self.alerted: set[int] = set(account.budget.reached(spent))  # reached before: sent before


class LocalSpend:
    """A process's accounts, by key."""

    remote = False

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._sweep_at = time.monotonic() + SWEEP_SECONDS

    def _entry(self, account: Account) -> _Entry:
        entry = self._entries.get(account.key)
        if entry is None:
            entry = self._entries[account.key] = _Entry(account)
        return entry

    async def reserve(self, accounts: Sequence[Account], amount: int) -> list[Balance]:
        """Reserve on every account, or none (see SpendBackend.reserve)."""
        if time.monotonic() >= self._sweep_at:
            self._sweep()
        balances = []
        for account in accounts:
            entry = self._entries.get(account.key)
            spent, reserved = (entry.spent, entry.reserved) if entry is not None else (0, 0)
            balances.append(Balance(account, spent, reserved, refuses(spent, reserved, amount, account.budget.cap)))
        if not any(b.refused for b in balances):
            for balance in balances:
                self._entry(balance.account).reserved += amount
                balance.reserved += amount
        return balances

    async def settle(self, accounts: Sequence[Account], reserved: int, spent: int) -> list[Crossed]:
        """Take back `reserved`, add `spent` (see SpendBackend.settle)."""
        crossed: list[Crossed] = []
        for account in accounts:
            entry = self._entries.get(account.key)
            if entry is None:  # swept: its period ended long ago
                continue
            entry.reserved = max(0, entry.reserved - reserved)
            entry.spent += spent
            for percent in account.budget.reached(entry.spent):
                if percent not in entry.alerted:
                    entry.alerted.add(percent)
                    crossed.append((account, percent, entry.spent))
        return crossed

    async def balances(self, accounts: Sequence[Account]) -> list[Balance]:
        """The accounts as they stand (one never used has spent nothing)."""
        out = []
        for account in accounts:
            entry = self._entries.get(account.key)
            out.append(Balance(account, entry.spent, entry.reserved) if entry else Balance(account, 0, 0))
        return out

    async def seed(self, accounts: Sequence[Account], spent: Sequence[int]) -> None:
        """Load the ledger's spend (at start, before any call)."""
        for account, amount in zip(accounts, spent, strict=True):
            if account.key not in self._entries:
                self._entries[account.key] = _Entry(account, amount)

    async def known(self) -> list[str]:
        """Every account's key."""
        return list(self._entries)

    def _sweep(self) -> None:
        now = time.time()
        self._entries = {
            k: e for k, e in self._entries.items() if not e.account.end or e.account.end + KEPT_AFTER_END > now
        }
        self._sweep_at = time.monotonic() + SWEEP_SECONDS

    async def aclose(self) -> None:
        """Nothing to close."""
