"""Budgets: the config, calendar periods, and the engine over both backends (this process, and a
real redis-server): all-or-none reservations, settlement to the actual cost, exact amounts past
what a double holds, alerts once per threshold, spend rebuilt from the ledger (SQLite and
PostgreSQL), and two gateways sharing one Redis enforcing one cap."""

from __future__ import annotations

import calendar
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gateway.config import ConfigError, GatewayConfig, load_config
from mcp_gateway.config.budgets import BudgetsConfig
from mcp_gateway.config.limits import LimitsConfig
from mcp_gateway.metering import CallRecord
from mcp_gateway.metering.budgets import (
    Balance,
    BudgetExceeded,
    Budgets,
    BudgetsUnavailable,
    LedgerSpend,
    budgets_for,
    period_bounds,
)
from mcp_gateway.metering.limits import BackendDown, Subject
from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import LedgerStore
from tests.limits_helpers import limits_config
from tests.redis_server import RedisServer

ALICE = Subject(consumer="alice", team="payments", org="acme", key="k1", api="echo", tool="getItem")
BOB = Subject(consumer="bob", team="web", org="acme", key="k2", api="echo", tool="getItem")
BACKENDS = ["local", "redis"]

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(backend name, Redis URL): each engine test runs in-process and on a real redis-server."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "local", None


def limits_for(backend: str, redis_url: str | None, **extra: Any) -> LimitsConfig:
    """The limits' settings that place the accounts: this process, or the test's Redis under a prefix of its own."""
    return limits_config(backend, redis_url, [], **extra)


class Recorder:
    """An Alerter that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, Decimal]] = []

    def crossed(self, balance: Balance, percent: int) -> None:
        account = balance.account
        self.seen.append((account.budget.name, account.value, percent, Decimal(balance.spent) / 10**12))


def engine(
    rules: list[dict[str, Any]], limits: LimitsConfig, source: LedgerSpend | None = None, **budgets: Any
) -> tuple[Budgets, Recorder]:
    alerts = Recorder()
    found = budgets_for(BudgetsConfig.model_validate({"rules": rules, **budgets}), limits, source, alerts)
    assert found is not None
    return found, alerts


# -- configuration ----------------------------------------------------------------------------------


def test_budgets_keep_exact_amounts_and_name_themselves(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "budgets:\n"
        "  - {scope: consumer, usd: 0.1}\n"
        "  - {scope: team, match: {team: payments}, usd: '12.000000000001', period: day, alert_at: [90, 50]}\n"
        "  - {scope: consumer, usd: 5, period: day}\n"
        "  - {scope: consumer, usd: 5, period: day}\n"
        "apis:\n"
        "  - {name: a, spec: s.yaml, cost: 0.002, tool_costs: {'get*': {header: X-Cost, reserve: 0.05}}}\n"
    )
    config = load_config(path)
    rules = config.budgets.rules
    assert [r.name for r in rules] == ["consumer-month", "team-day", "consumer-day", "consumer-day-4"]
    assert rules[0].usd == Decimal("0.1") and rules[1].usd == Decimal("12.000000000001")  # YAML's float, exactly
    assert config.budgets.thresholds(rules[1]) == [50, 90] and config.budgets.thresholds(rules[0]) == [50, 80, 100]
    api = config.apis[0]
    assert api.cost is not None and api.cost.usd == Decimal("0.002") and api.cost.reserved == Decimal("0.002")
    priced = api.tool_costs["get*"]
    assert priced.header == "X-Cost" and priced.usd == 0 and priced.reserved == Decimal("0.05")


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"budgets": [{"scope": "consumer"}]}, "usd"),
        ({"budgets": [{"scope": "consumer", "usd": 0}]}, "usd must be more than 0"),
        ({"budgets": [{"scope": "consumer", "usd": "-1"}]}, "0 or more"),
        ({"budgets": [{"scope": "consumer", "usd": "0.0000000000001"}]}, "at most 12 decimal places"),
        ({"budgets": [{"scope": "consumer", "usd": "lots"}]}, "a number or a decimal string"),
        ({"budgets": [{"scope": "consumer", "usd": 1, "period": "year"}]}, "period"),
        ({"budgets": [{"scope": "everyone", "usd": 1}]}, "scope"),
        ({"budgets": [{"scope": "consumer", "usd": 1, "name": "a:b"}]}, "name must match"),
        ({"budgets": [{"name": "x", "scope": "org", "usd": 1}, {"name": "x", "scope": "team", "usd": 1}]}, "duplicate"),
        ({"budgets": {"alerts": {"webhook_secret": "plain-text-secret"}}}, "must be a reference"),
        ({"budgets": {"alerts": {"webhook_url": "ftp://x"}}}, "http(s) URL"),
        ({"apis": [{"name": "a", "spec": "s", "cost": {"header": "X-Cost", "pointer": "/c"}}]}, "not both"),
        ({"apis": [{"name": "a", "spec": "s", "cost": {"pointer": "cost"}}]}, "JSON pointer"),
    ],
)
def test_bad_budgets_and_costs_are_refused_with_the_reason(tmp_path: Path, config: dict, problem: str) -> None:
    import yaml

    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert problem in str(error.value)
    assert "plain-text-secret" not in str(error.value)


def test_periods_are_calendar_periods_in_utc() -> None:
    def at(*parts: int) -> int:
        return calendar.timegm((*parts, 0, 0, 0)[:6])

    now = at(2026, 12, 31, 23, 59, 59) + 0.5  # a Thursday
    assert period_bounds("day", now) == (at(2026, 12, 31), at(2027, 1, 1))
    assert period_bounds("week", now) == (at(2026, 12, 28), at(2027, 1, 4))  # Monday to Monday
    assert period_bounds("month", now) == (at(2026, 12, 1), at(2027, 1, 1))
    assert period_bounds("total", now) == (0, 0)
    monday = at(2026, 12, 28)
    assert period_bounds("week", monday) == (monday, at(2027, 1, 4))
    assert period_bounds("month", at(2028, 2, 29, 12)) == (at(2028, 2, 1), at(2028, 3, 1))
    # An engine's accounts follow the clock across a boundary (its periods are cached per day).
    budgets, _ = engine([{"name": "m", "scope": "consumer", "usd": 1}], limits_for("local", None))
    before, after = budgets.accounts(ALICE, now - 1), budgets.accounts(ALICE, now + 1)
    assert [(a.start, a.end) for a in before + after] == [
        (at(2026, 12, 1), at(2027, 1, 1)), (at(2027, 1, 1), at(2027, 2, 1))
    ]  # fmt: skip
    assert budgets.accounts(ALICE, now - 1)[0].key != after[0].key


# -- the engine, on both backends ---------------------------------------------------------------------


async def test_a_call_must_fit_every_budget_and_a_refused_one_reserves_nothing(backend: tuple[str, str | None]) -> None:
    rules = [
        {"name": "each", "scope": "consumer", "usd": "1.00", "period": "day"},
        {"name": "payments", "scope": "team", "match": {"team": "payments"}, "usd": "0.25"},
    ]
    budgets, _ = engine(rules, limits_for(*backend))
    try:
        first = await budgets.admit(ALICE, Decimal("0.1"))
        assert first is not None
        assert [(b.account.budget.name, b.reserved, b.remaining) for b in first.balances] == [
            ("each", 10**11, 9 * 10**11),
            ("payments", 10**11, 15 * 10**10),
        ]
        second = await budgets.admit(ALICE, Decimal("0.1"))
        assert second is not None
        before = time.time()
        with pytest.raises(BudgetExceeded) as refused:
            await budgets.admit(ALICE, Decimal("0.1"))  # 0.2 of 0.25 reserved: 0.05 left
        assert [b.account.budget.name for b in refused.value.balances if b.refused] == ["payments"]
        message = refused.value.message
        assert message.startswith(
            "Budget exceeded: budget 'payments' (USD 0.25 per month for team payments) has USD 0.05 left; it resets at "
        )
        assert message.endswith("; this call reserves up to USD 0.1")
        month_end = period_bounds("month", before)[1]
        assert refused.value.retry_after is not None
        assert month_end - time.time() - 2 <= refused.value.retry_after <= month_end - before
        # bob is not in payments; alice's own budget did not move for the refusals.
        assert await budgets.admit(BOB, Decimal("0.9")) is not None
        mine = {b.account.budget.name: b for b in await budgets.mine(ALICE)}
        assert (mine["each"].reserved, mine["payments"].reserved) == (2 * 10**11, 2 * 10**11)
    finally:
        await budgets.aclose()


async def test_settling_returns_the_unused_reservation_and_counts_what_was_spent(
    backend: tuple[str, str | None],
) -> None:
    budgets, _ = engine([{"name": "b", "scope": "consumer", "usd": "1", "period": "week"}], limits_for(*backend))
    try:
        hold = await budgets.admit(ALICE, Decimal("0.6"))
        assert hold is not None
        with pytest.raises(BudgetExceeded):  # 0.6 more does not fit the 0.4 left
            await budgets.admit(ALICE, Decimal("0.6"))
        hold.spend(Decimal("0.05"))
        hold.spend(Decimal("0.000000000002"))
        hold.spend(None)  # a record with no known price
        await hold.release()
        await hold.release()  # once only
        [balance] = await budgets.mine(ALICE)
        assert (balance.spent, balance.reserved) == (50_000_000_002, 0)
        assert (
            balance.public()["spent_usd"] == "0.050000000002" and balance.public()["remaining_usd"] == "0.949999999998"
        )
        again = await budgets.admit(ALICE, Decimal("0.6"))
        assert again is not None
        again.spend(Decimal("0.9"))  # more than reserved: the budget takes what was spent
        await again.release()
        [balance] = await budgets.mine(ALICE)
        assert balance.spent == 950_000_000_002 and balance.remaining == 49_999_999_998
        with pytest.raises(BudgetExceeded):
            await budgets.admit(ALICE, Decimal("0.05"))
        # Nothing left at all: even a free call is refused.
        spent = await budgets.admit(ALICE, Decimal("0.049999999998"))
        assert spent is not None
        spent.spend(Decimal("0.049999999998"))
        await spent.release()
        with pytest.raises(BudgetExceeded) as refused:
            await budgets.admit(ALICE, 0)
        assert "has USD 0 left" in refused.value.message and "reserves" not in refused.value.message
    finally:
        await budgets.aclose()


async def test_amounts_stay_exact_past_what_a_double_holds(backend: tuple[str, str | None]) -> None:
    """USD 10,000.000000000001 is 10**16 + 1 picodollars: past 2**53, where a double (Lua's numbers)
    would round. The Redis scripts keep microdollars and picodollars apart."""
    budgets, _ = engine([{"name": "big", "scope": "org", "usd": "10000.000000000001"}], limits_for(*backend))
    try:
        hold = await budgets.admit(ALICE, Decimal("9999.999999999999"))
        assert hold is not None
        with pytest.raises(BudgetExceeded) as refused:
            await budgets.admit(ALICE, Decimal("0.000000000003"))
        assert "has USD 0.000000000002 left" in refused.value.message
        last = await budgets.admit(ALICE, Decimal("0.000000000002"))
        assert last is not None and last.balances[0].remaining == 0
        hold.spend(Decimal("9999.999999999998"))
        await hold.release()
        [balance] = await budgets.mine(ALICE)
        assert (balance.spent, balance.reserved, balance.remaining) == (9_999_999_999_999_998, 2, 1)
    finally:
        await budgets.aclose()


async def test_alerts_fire_once_per_threshold_per_period(backend: tuple[str, str | None]) -> None:
    rules = [{"name": "b", "scope": "consumer", "usd": "10", "period": "day", "alert_at": [50, 80, 100]}]
    budgets, alerts = engine(rules, limits_for(*backend))
    try:
        for cost in ("4.99", "0.01", "1", "2.5", "0.5", "3"):  # 5: 50%; 8.5: 80%; 12: 100%
            hold = await budgets.admit(ALICE, 0)
            assert hold is not None
            hold.spend(Decimal(cost))
            await hold.release()
        assert alerts.seen == [
            ("b", "alice", 50, Decimal("5")),
            ("b", "alice", 80, Decimal("8.5")),
            ("b", "alice", 100, Decimal("12")),
        ]
        with pytest.raises(BudgetExceeded):
            await budgets.admit(ALICE, 0)
        assert len(alerts.seen) == 3
    finally:
        await budgets.aclose()


async def test_concurrent_calls_never_pass_the_cap_beyond_what_is_in_flight(backend: tuple[str, str | None]) -> None:
    """32 calls at once, each reserving 0.01 of a 0.10 cap: exactly 10 are admitted. When each
    then costs 0.03 (more than it reserved), spend passes the cap by at most what the calls in
    flight cost beyond their reservations: 10 x 0.02."""
    rules = [{"name": "b", "scope": "team", "usd": "0.10", "period": "day"}]
    budgets, _ = engine(rules, limits_for(*backend))
    try:
        for team, cost, passed_by in (("first", "0.01", Decimal(0)), ("second", "0.03", Decimal("0.2"))):
            subject = Subject(consumer="alice", team=team)
            admitted: list[int] = []
            refused: list[int] = []
            release = anyio.Event()

            async def call(subject: Subject = subject, cost: str = cost, release: anyio.Event = release,
                           admitted: list[int] = admitted, refused: list[int] = refused) -> None:  # fmt: skip
                try:
                    hold = await budgets.admit(subject, Decimal("0.01"))
                except BudgetExceeded:
                    refused.append(1)
                    return
                assert hold is not None
                admitted.append(1)
                await release.wait()
                hold.spend(Decimal(cost))
                await hold.release()

            async with anyio.create_task_group() as tg:
                for _ in range(32):
                    tg.start_soon(call)
                while len(admitted) + len(refused) < 32:
                    await anyio.sleep(0.01)
                in_flight = len(admitted)
                release.set()
            assert (in_flight, len(refused)) == (10, 22)
            [balance] = [b for b in await budgets.everyone() if b.account.value == team]
            overshoot = Decimal(balance.spent) / 10**12 - Decimal("0.10")
            # The bound: what the calls in flight spent beyond their reservations.
            assert overshoot <= in_flight * (Decimal(cost) - Decimal("0.01"))
            assert overshoot == passed_by and balance.reserved == 0
    finally:
        await budgets.aclose()


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_redis_down_follows_the_failure_mode(redis_server: RedisServer, mode: str) -> None:
    limits = limits_for("redis", redis_server.url, redis_failure=mode, redis_timeout=0.2)
    budgets, _ = engine([{"scope": "consumer", "usd": 1}], limits)
    try:
        assert await budgets.admit(ALICE, Decimal("0.1")) is not None
        redis_server.stop()
        started = time.monotonic()
        if mode == "fail_closed":
            with pytest.raises(BudgetsUnavailable) as down:
                await budgets.admit(ALICE, Decimal("0.1"))
            assert "Budgets cannot be checked right now" in down.value.message
        else:
            assert await budgets.admit(ALICE, Decimal("0.1")) is None  # let through, unchecked
        assert time.monotonic() - started < 0.7 and budgets.unchecked == 1
    finally:
        await budgets.aclose()


# -- spend rebuilt from the ledger ------------------------------------------------------------------------


def _record(consumer: str, cost: str, at: float, **more: Any) -> CallRecord:
    team = more.pop("team", "payments")
    return CallRecord(kind="tool", consumer=consumer, team=team, org="acme", key_id=f"key-{consumer}", api="echo",
                      tool="getItem", cost=Decimal(cost), started_at=at, **more)  # fmt: skip


def _ledger_with_spend(database_url: str) -> tuple[Database, LedgerStore, float]:
    db = Database(database_url)
    store = LedgerStore(db)
    now = time.time()
    day_start = period_bounds("day", now)[0]
    store.write(
        [
            _record("alice", "0.30", now - 5),
            _record("alice", "0.000000000001", now - 4),
            _record("alice", "0.50", day_start - 10),  # yesterday (this month, unless today is the 1st)
            _record("bob", "0.25", now - 3, team="web"),
            _record("bob", "0", now - 2, team="web"),
        ]
    )
    return db, store, now


async def test_spend_is_rebuilt_from_the_ledger_at_start(database_url: str) -> None:
    db, store, now = _ledger_with_spend(database_url)
    month_start, day_start = period_bounds("month", now)[0], period_bounds("day", now)[0]
    yesterday = Decimal("0.50") if day_start - 10 >= month_start else Decimal(0)
    rules = [
        {"name": "daily", "scope": "consumer", "usd": "1", "period": "day"},
        {"name": "monthly", "scope": "team", "usd": "2", "period": "month"},
        {"name": "ever", "scope": "global", "usd": "100", "period": "total"},
    ]
    try:
        budgets, alerts = engine(rules, limits_for("local", None), LedgerSpend(store))
        assert await budgets.rebuild() == 5  # alice, bob daily; payments, web monthly; everyone total
        spent = {(b.account.budget.name, b.account.value): b.public()["spent_usd"] for b in await budgets.everyone()}
        assert spent == {
            ("daily", "alice"): "0.300000000001",
            ("daily", "bob"): "0.25",
            ("monthly", "payments"): str(Decimal("0.300000000001") + yesterday),
            ("monthly", "web"): "0.25",
            ("ever", "*"): "1.050000000001",
        }
        # What the ledger holds counts: 0.7 more does not fit alice's day.
        with pytest.raises(BudgetExceeded) as refused:
            await budgets.admit(ALICE, Decimal("0.7"))
        assert "has USD 0.699999999999 left" in refused.value.message
        # Thresholds the ledger's spend had reached were sent before the restart: not again.
        hold = await budgets.admit(Subject(consumer="bob", team="web"), 0)
        assert hold is not None
        hold.spend(Decimal("0.01"))
        await hold.release()
        assert alerts.seen == []
        await budgets.aclose()
    finally:
        db.close()


async def test_a_redis_without_the_account_rebuilds_it_from_the_ledger(
    database_url: str, redis_server: RedisServer
) -> None:
    db, store, now = _ledger_with_spend(database_url)
    rules = [{"name": "daily", "scope": "consumer", "usd": "1", "period": "day", "alert_at": [20, 50]}]
    limits = limits_for("redis", redis_server.url)
    try:
        budgets, alerts = engine(rules, limits, LedgerSpend(store))
        hold = await budgets.admit(ALICE, Decimal("0.1"))  # the account is new: built from the ledger
        assert hold is not None and hold.balances[0].spent == 300_000_000_001
        hold.spend(Decimal("0.1"))
        await hold.release()
        store.write([_record("alice", "0.1", now)])  # the ledger row of that call
        assert alerts.seen == []  # 20% was passed before the account was built
        # Redis restarts, empty: the next call rebuilds alice's day from the ledger.
        redis_server.stop()
        with pytest.raises(BackendDown):
            await budgets.mine(ALICE)
        redis_server.start()
        await anyio.sleep(1.05)  # the pause after a failure
        [balance] = await budgets.mine(ALICE)
        assert (balance.spent, balance.reserved) == (400_000_000_001, 0)
        # Two gateways on one Redis: one cap. The other replica's call sees this one's spend.
        other, _ = engine(rules, limits, LedgerSpend(store))
        bob = Subject(consumer="bob", team="web")
        taken = await other.admit(bob, Decimal("0.5"))
        assert taken is not None and taken.balances[0].spent == 250_000_000_000
        with pytest.raises(BudgetExceeded):
            await budgets.admit(bob, Decimal("0.26"))
        taken.spend(Decimal("0.5"))
        await taken.release()
        assert [(b.account.value, b.spent) for b in await budgets.everyone()] == [
            ("alice", 400_000_000_001),
            ("bob", 750_000_000_000),
        ]
        assert alerts.seen == [] and len(other.alerter.seen) == 1  # type: ignore[union-attr]
        await budgets.aclose()
        await other.aclose()
    finally:
        db.close()


def test_budgets_without_rules_are_off() -> None:
    assert not budgets_for(BudgetsConfig(), LimitsConfig()).active
    assert GatewayConfig.model_validate({}).budgets.rules == []
