"""Budgets: which caps apply to a call, one atomic reservation against all of them, and the
settlement to what the call cost.

A budget holds, per subject its scope names (a consumer, a team...; one for everyone with
`global`) and per period (a UTC day, a week from Monday, a calendar month, or all time), what
was spent and what calls in flight have reserved, in integer picodollars (exact: the ledger's
unit). A call fits when its reservation fits in what every budget that applies has left
(cap - spent - reserved); then it is reserved on all of them, else on none. When the call's
record is made (a stream's at its end), the reservation is settled: taken back and replaced by
the actual cost, in the period the call started in (as the ledger dates it). A budget with
nothing left refuses every call under it, free ones too.

So spend never passes a cap by more than what calls in flight cost beyond their reservation:
zero when every reservation is a true maximum (a flat tool cost; a model call with max_tokens,
whose prompt estimate is not low). Periods are on this gateway's clock, as the ledger's times.
Spend outlives a restart: counters in this process are rebuilt from the ledger at start;
counters in Redis outlive the gateway, and one missing from Redis (a new period, a restarted
Redis) is rebuilt from the ledger on first use.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from mcp_gateway.config.budgets import BudgetRule, BudgetsConfig
from mcp_gateway.config.limits import LimitsConfig
from mcp_gateway.metering.hooks import NOBODY, Observer
from mcp_gateway.metering.limits import (
    MAX_CACHED_SUBJECTS,
    BackendDown,
    Criteria,
    Subject,
    Unchecked,
    call_kind,
    scope_value,
)
from mcp_gateway.store.ledger import LedgerStore, from_pusd, to_pusd

if TYPE_CHECKING:  # the Redis module imports this one; only its type is needed here
    from mcp_gateway.metering.redis import RedisLink

logger = logging.getLogger("mcp_gateway.budgets")

DAY = 86400
IDENTITY_SCOPES = ("key", "consumer", "team", "org")


def period_bounds(period: str, now: float) -> tuple[int, int]:
    """(start, end) in epoch seconds of the `period` ("day", "week", "month") around `now`, in UTC;
    (0, 0) for "total"."""
    if period == "total":
        return 0, 0
    days = int(now // DAY)
    if period == "day":
        return days * DAY, (days + 1) * DAY
    if period == "week":
        start = (days - (days + 3) % 7) * DAY  # 1970-01-01 was a Thursday: 3 days after a Monday
        return start, start + 7 * DAY
    moment = datetime.fromtimestamp(now, UTC)
    start = calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return start, calendar.timegm((year, month, 1, 0, 0, 0))


def decimal_text(pusd: int) -> str:
    """Picodollars as a decimal string of USD: exact, without trailing zeros (`1.25`, `0`)."""
    return f"{from_pusd(pusd).normalize():f}"


def usd(pusd: int) -> str:
    """Picodollars as `USD 1.25`."""
    return f"USD {decimal_text(pusd)}"


def moment(epoch: int) -> str:
    """`2026-12-01T00:00:00Z`."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Budget:
    """A configured budget, ready to match calls."""

    name: str
    scope: str
    criteria: Criteria
    cap: int  # picodollars
    period: str
    thresholds: tuple[int, ...]  # alert percentages
    tag: str  # changes when scope, match or period do: counters kept under another definition are not reused

    @classmethod
    def of(cls, rule: BudgetRule, thresholds: Iterable[int]) -> Budget:
        """Compile a configured budget."""
        assert rule.name is not None  # BudgetsConfig names every rule
        criteria = tuple(rule.match.criteria())
        tag = hashlib.sha256(repr((rule.scope, criteria, rule.period)).encode()).hexdigest()[:8]
        cap = to_pusd(rule.usd)
        assert cap is not None
        return cls(rule.name, rule.scope, criteria, cap, rule.period, tuple(thresholds), tag)

    def counted_as(self, subject: Subject) -> str | None:
        """The value this budget holds `subject`'s spend under; None when it does not apply."""
        return scope_value(self.scope, self.criteria, subject)

    def describe(self) -> str:
        """`USD 20 per month`, `USD 100 in total`."""
        return f"{usd(self.cap)} {'in total' if self.period == 'total' else 'per ' + self.period}"

    def alert_amounts(self) -> list[tuple[int, int]]:
        """(percentage, the spend that reaches it, in picodollars) per alert threshold."""
        return [(p, -(-self.cap * p // 100)) for p in self.thresholds]

    def reached(self, spent: int) -> list[int]:
        """The alert percentages `spent` has reached."""
        return [p for p, amount in self.alert_amounts() if spent >= amount]


@dataclass(frozen=True, slots=True)
class Account:
    """One budget's counter for one subject in one period."""

    budget: Budget
    value: str  # what the scope names ("*" for global)
    start: int  # the period's start, epoch seconds (0: total)
    end: int  # the period's end (0: total, never)

    @property
    def key(self) -> str:
        """The counter's identity in the backend."""
        return f"{self.budget.name}:{self.budget.tag}:{self.start}:{self.value}"

    def whose(self) -> str:
        """`consumer alice`, `everyone`."""
        return "everyone" if self.budget.scope == "global" else f"{self.budget.scope} {self.value}"


@dataclass(slots=True)
class Balance:
    """An account as one operation left it, in picodollars."""

    account: Account
    spent: int
    reserved: int  # by calls in flight
    refused: bool = False  # this budget is why the call was refused

    @property
    def remaining(self) -> int:
        """What the cap still allows."""
        return max(0, self.account.budget.cap - self.spent - self.reserved)

    def public(self) -> dict[str, Any]:
        """As JSON (amounts as decimal strings)."""
        account = self.account
        return {
            "budget": account.budget.name,
            "scope": account.budget.scope,
            "subject": account.value,
            "period": account.budget.period,
            "period_start": account.start or None,
            "period_end": account.end or None,
            "cap_usd": decimal_text(account.budget.cap),
            "spent_usd": decimal_text(self.spent),
            "reserved_usd": decimal_text(self.reserved),
            "remaining_usd": decimal_text(self.remaining),
        }


def refuses(spent: int, reserved: int, amount: int, cap: int) -> bool:
    """Whether an account refuses a reservation of `amount`: it does not fit, or nothing is left."""
    return spent + reserved + amount > cap or spent + reserved >= cap


Crossed = tuple[Account, int, int]  # an account, the alert percentage its spend reached, the spend


class Missing(Exception):
    """Accounts the backend does not hold (Redis: a new period, or a Redis that lost them): to be
    rebuilt from the ledger (`seed`) before the operation is tried again."""

    def __init__(self, accounts: list[Account]) -> None:
        super().__init__(f"{len(accounts)} account(s) to rebuild from the ledger")
        self.accounts = accounts


class SpendBackend(Protocol):
    """Where accounts live. Amounts are picodollars."""

    remote: bool  # over the network (its calls may suspend, fail and time out)

    async def reserve(self, accounts: Sequence[Account], amount: int) -> list[Balance]:
        """Reserve `amount` on every account if each has room for it (then none is `refused`), else
        on none. Raises BackendDown when the accounts cannot be reached, Missing (having changed
        nothing) when some are not held."""
        ...

    async def settle(self, accounts: Sequence[Account], reserved: int, spent: int) -> list[Crossed]:
        """A call ended: take back its reservation, add what it spent (to accounts still held); the
        alert thresholds its spending reached first (each once per account)."""
        ...

    async def balances(self, accounts: Sequence[Account]) -> list[Balance]:
        """The accounts as they stand (Missing as for `reserve`)."""
        ...

    async def seed(self, accounts: Sequence[Account], spent: Sequence[int]) -> None:
        """Hold `accounts`, with what the ledger says each has spent, unless held already (another
        replica got there first); the alert thresholds that spend reached count as sent."""
        ...

    async def known(self) -> list[str]:
        """The keys of the accounts it holds (any period)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections."""
        ...


SpendRows = list[tuple[Subject, list[int]]]  # a group of calls' subject, its cost (pUSD) since each start


class SpendSource(Protocol):
    """What the ledger says was spent (LedgerSpend)."""

    def rows(self, starts: Sequence[int], where: tuple[str, str] | None = None) -> SpendRows:
        """Blocking: the calls that cost something since the earliest of `starts`, grouped by
        subject, with their cost since each start; `where`: only those whose (field, value) match."""
        ...


class BudgetExceeded(Exception):
    """A call refused by one or more budgets. The message names each, what is left and when it resets."""

    def __init__(self, balances: list[Balance], amount: int) -> None:
        self.balances = balances
        refused = [b for b in balances if b.refused]
        parts = []
        for balance in refused:
            account = balance.account
            budget = account.budget
            reset = f"it resets at {moment(account.end)}" if account.end else "it does not reset"
            parts.append(
                f"budget {budget.name!r} ({budget.describe()} for {account.whose()}) has {usd(balance.remaining)} "
                f"left; {reset}"
            )
        # What a client could wait for: the latest reset among the refusing budgets (none for totals).
        ends = [b.account.end for b in refused]
        self.retry_after: int | None = None if 0 in ends else max(1, int(max(ends) - time.time()))
        needs = f"; this call reserves up to {usd(amount)}" if amount else ""
        super().__init__("Budget exceeded: " + "; ".join(parts) + needs)
        self.message = str(self)


class BudgetsUnavailable(Exception):
    """The budgets cannot be checked (Redis unreachable) and the configured mode refuses the call."""

    def __init__(self) -> None:
        super().__init__(
            "Budgets cannot be checked right now (the counters' store is unreachable), and this gateway refuses "
            "calls under a budget until it is back (limits.redis_failure: fail_closed); retry shortly"
        )
        self.message = str(self)
        self.retry_after = 1


class Alerter(Protocol):
    """Told when an account's spend reaches an alert threshold (metering/alerts.py)."""

    def crossed(self, balance: Balance, percent: int) -> None:
        """Must return at once."""
        ...


class Hold:
    """An admitted call's reservation on its budgets, until `release` settles it."""

    __slots__ = ("_budgets", "_released", "accounts", "balances", "reserved", "spent")

    def __init__(self, budgets: Budgets, balances: list[Balance], reserved: int) -> None:
        self._budgets = budgets
        self.balances = balances
        self.accounts = [b.account for b in balances]
        self.reserved = reserved  # picodollars, on each account
        self.spent = Decimal(0)  # USD, as the call's records say
        self._released = False

    def spend(self, cost: Decimal | None) -> None:
        """Count what one record of the call cost (None: no price known, nothing)."""
        if cost:
            self.spent += cost

    async def release(self) -> None:
        """The call ended (done, failed or cancelled): settle the reservation to what it spent.
        Once; shielded from cancellation and bounded in time."""
        if self._released:
            return
        self._released = True
        await self._budgets.settle(self)


class Budgets:
    """The configured budgets over a backend: `admit` each call with its reservation, settle after."""

    def __init__(
        self,
        config: BudgetsConfig,
        limits: LimitsConfig,
        backend: SpendBackend,
        source: SpendSource | None = None,
        alerter: Alerter | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.source = source  # the ledger, where spend is rebuilt from
        self.alerter = alerter
        self.budgets = [Budget.of(r, config.thresholds(r)) for r in config.rules]
        self.fail_open = limits.redis_failure == "fail_open"
        self.timeout = limits.redis_timeout * 4  # a settlement: connecting and a command, with room
        self.skipped = Unchecked("budgets", limits)
        self._plans: dict[Subject, tuple[tuple[Budget, str], ...]] = {}
        self._periods: dict[str, tuple[int, int]] = {}
        self._period_from, self._period_until = 0, 0  # the day the cached periods are for
        self.observer: Observer = NOBODY  # told of refusals and settled spend (metrics)

    @property
    def active(self) -> bool:
        """Some budget is set (without one, `admit` reserves nothing)."""
        return bool(self.budgets)

    async def set_rules(self, rules: Sequence[BudgetRule]) -> None:
        """Apply `rules` from the next call on (the config file's and those added at run time).

        An account keeps its spend while its budget keeps its name, scope, match and period (a new
        cap applies to what was spent). Counters in this process for budgets that are new here are
        loaded from the ledger before the budgets apply, so a budget added at run time counts the
        period's earlier spend (all but the ledger's unflushed second); in Redis, missing counters
        are rebuilt on first use as always."""
        budgets = [Budget.of(r, self.config.thresholds(r)) for r in rules]
        old = {(b.name, b.tag) for b in self.budgets}
        fresh = [b for b in budgets if (b.name, b.tag) not in old]
        if fresh and not self.backend.remote and self.source is not None:
            found = await self._spent(fresh)
            await self.backend.seed([account for account, _ in found], [spent for _, spent in found])
        self.budgets = budgets
        self._plans = {}

    @property
    def unchecked(self) -> int:
        """Calls the budgets could not check (Redis unreachable)."""
        return self.skipped.count

    def _period(self, period: str, now: float) -> tuple[int, int]:
        # The periods around `now`, worked out again only when `now` leaves the day they are for.
        if not self._period_from <= now < self._period_until:
            self._periods = {p: period_bounds(p, now) for p in ("day", "week", "month", "total")}
            self._period_from, self._period_until = self._periods["day"]
        return self._periods[period]

    def plan(self, subject: Subject) -> tuple[tuple[Budget, str], ...]:
        """The budgets that apply to a call by `subject`, and the value each holds it under."""
        plan = self._plans.get(subject)
        if plan is None:
            plan = tuple((b, v) for b in self.budgets if (v := b.counted_as(subject)) is not None)
            if len(self._plans) >= MAX_CACHED_SUBJECTS:
                self._plans.clear()
            self._plans[subject] = plan
        return plan

    def accounts(self, subject: Subject, now: float | None = None) -> list[Account]:
        """The accounts a call by `subject` made `now` is charged to."""
        now = time.time() if now is None else now
        return [Account(b, v, *self._period(b.period, now)) for b, v in self.plan(subject)]

    async def admit(self, subject: Subject, cost: Decimal | int = 0) -> Hold | None:
        """Reserve `cost` (USD, or picodollars as an int) on every budget that applies to a call.
        None when none applies (or fail_open let the call through unchecked).

        Raises BudgetExceeded when one refuses the call, BudgetsUnavailable when they cannot be
        checked and the mode is fail_closed."""
        if not self.budgets:
            return None
        accounts = self.accounts(subject)
        if not accounts:
            return None
        amount = cost if isinstance(cost, int) else (to_pusd(cost) or 0)
        try:
            try:
                balances = await self.backend.reserve(accounts, amount)
            except Missing as missing:
                await self._seed(missing.accounts)
                balances = await self.backend.reserve(accounts, amount)
        except BackendDown as exc:
            self.skipped.note(str(exc))
            if not self.fail_open:
                self.observer.refused("budget", "unavailable", "", call_kind(subject))
                raise BudgetsUnavailable() from None
            return None
        if any(b.refused for b in balances):
            name = next(b.account.budget.name for b in balances if b.refused)
            self.observer.refused("budget", "exceeded", name, call_kind(subject))
            raise BudgetExceeded(balances, amount)
        return Hold(self, balances, amount)

    async def settle(self, hold: Hold) -> None:
        """Settle `hold` (Hold.release): its reservation back, what it spent on; alerts for the
        thresholds that spending reached."""
        spent = to_pusd(hold.spent) or 0
        if not hold.reserved and not spent:
            return
        if hold.spent:
            for account in hold.accounts:
                self.observer.spent(account.budget.name, account.budget.scope, hold.spent)
        crossed: list[Crossed] = []
        try:
            if not self.backend.remote:  # never suspends: a cancellation cannot cut it short
                crossed = await self.backend.settle(hold.accounts, hold.reserved, spent)
            else:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                    crossed = await self.backend.settle(hold.accounts, hold.reserved, spent)
        except BackendDown as exc:  # the ledger keeps the cost; the reservation goes with its period
            logger.warning("budgets: could not settle a call's reservation: %s", exc)
        if self.alerter is not None:
            for account, percent, total in crossed:
                self.alerter.crossed(Balance(account, total, 0), percent)

    async def mine(self, subject: Subject) -> list[Balance]:
        """The balances of the budgets that apply to every call of `subject`'s caller: those scoped
        to the key, consumer, team or org, matched on nothing else (for GET /v1/usage)."""
        identity = Subject(subject.consumer, subject.team, subject.org, subject.key)
        accounts = [
            a
            for a in self.accounts(identity)
            if a.budget.scope in IDENTITY_SCOPES and all(f in IDENTITY_SCOPES for f, _ in a.budget.criteria)
        ]
        return await self._balances(accounts)

    async def everyone(self) -> list[Balance]:
        """Every account of the current periods: those the backend holds and those the ledger saw
        spend in (for GET /admin/budgets), by budget and subject."""
        now = time.time()
        found: dict[str, Account] = {}
        if self.source is not None and self.budgets:
            starts = sorted({self._period(b.period, now)[0] for b in self.budgets})
            rows = await anyio.to_thread.run_sync(self.source.rows, starts)
            found = {key: account for key, (account, _) in self.tally(rows, starts, now).items()}
        current = {(b.name, b.tag, self._period(b.period, now)[0]): b for b in self.budgets}
        for key in await self.backend.known():
            name, tag, start, value = key.split(":", 3)
            budget = current.get((name, tag, int(start)))
            if budget is not None:
                found.setdefault(key, Account(budget, value, *self._period(budget.period, now)))
        return await self._balances(sorted(found.values(), key=lambda a: (a.budget.name, a.value)))

    async def _balances(self, accounts: list[Account]) -> list[Balance]:
        if not accounts:
            return []
        try:
            return await self.backend.balances(accounts)
        except Missing as missing:
            await self._seed(missing.accounts)
        return await self.backend.balances(accounts)

    def tally(
        self, rows: SpendRows, starts: Sequence[int], now: float, budgets: Sequence[Budget] | None = None
    ) -> dict[str, tuple[Account, int]]:
        """What each account of the periods around `now` has spent, by key, from ledger rows (whose
        costs are since each of `starts`, which hold those periods' starts); of `budgets` (default:
        every budget)."""
        column = {s: i for i, s in enumerate(starts)}
        out: dict[str, tuple[Account, int]] = {}
        for subject, costs in rows:
            if budgets is None:
                accounts = self.accounts(subject, now)
            else:
                accounts = [Account(b, v, *self._period(b.period, now)) for b in budgets
                            if (v := b.counted_as(subject)) is not None]  # fmt: skip
            for account in accounts:
                _, before = out.get(account.key, (account, 0))
                out[account.key] = (account, before + costs[column[account.start]])
        return out

    async def _spent(self, budgets: Sequence[Budget]) -> list[tuple[Account, int]]:
        """The accounts of `budgets` in the current periods that the ledger saw spend in, and that spend."""
        assert self.source is not None
        now = time.time()
        starts = sorted({self._period(b.period, now)[0] for b in budgets})
        rows = await anyio.to_thread.run_sync(self.source.rows, starts)
        return list(self.tally(rows, starts, now, budgets).values())

    async def rebuild(self) -> int:
        """Load what every account of the current periods has spent from the ledger (counters in
        this process, at start); the number of accounts with spend."""
        if self.source is None or not self.budgets:
            return 0
        found = await self._spent(self.budgets)
        await self.backend.seed([account for account, _ in found], [spent for _, spent in found])
        return len(found)

    async def _seed(self, accounts: list[Account]) -> None:
        """Rebuild `accounts` in the backend from the ledger (BackendDown when it cannot be read)."""
        spent = [0] * len(accounts)
        if self.source is not None:
            starts = sorted({a.start for a in accounts})
            # Narrowed to the subject when every account names the same one (the usual case: one
            # new consumer, team...), so the ledger's indexes do the work.
            scopes = {(a.budget.scope, a.value) for a in accounts}
            where = next(iter(scopes)) if len(scopes) == 1 and accounts[0].budget.scope != "global" else None
            try:
                rows = await anyio.to_thread.run_sync(self.source.rows, starts, where)
            except Exception as exc:  # a database that is down: as if the counters were
                raise BackendDown(f"the ledger cannot be read to rebuild spend ({type(exc).__name__})") from None
            column = {s: i for i, s in enumerate(starts)}
            for subject, costs in rows:
                for i, account in enumerate(accounts):
                    if account.budget.counted_as(subject) == account.value:
                        spent[i] += costs[column[account.start]]
        await self.backend.seed(accounts, spent)

    async def aclose(self) -> None:
        """Close the backend."""
        await self.backend.aclose()


class LedgerSpend:
    """The ledger as a SpendSource: its calls that cost something, grouped by subject."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    def rows(self, starts: Sequence[int], where: tuple[str, str] | None = None) -> SpendRows:
        """See SpendSource.rows."""
        found = self.store.spend_since(starts, where=(_COLUMN.get(where[0], where[0]), where[1]) if where else None)
        return [(Subject(*group), costs) for group, costs in found]


_COLUMN = {"key": "key_id"}  # Subject fields named otherwise in the ledger


def budgets_for(
    config: BudgetsConfig,
    limits: LimitsConfig,
    source: SpendSource | None = None,
    alerter: Alerter | None = None,
    link: RedisLink | None = None,
) -> Budgets:
    """The budgets `config` sets, their accounts in Redis with `limits.redis_url`, else in this
    process. Without rules it reserves nothing (one truth test per call) until rules are added at
    run time."""
    backend: SpendBackend
    if limits.redis_url:
        from mcp_gateway.metering.budget_redis import RedisSpend

        backend = RedisSpend(limits, link)
    else:
        from mcp_gateway.metering.budget_counters import LocalSpend

        backend = LocalSpend()
    return Budgets(config, limits, backend, source, alerter)
