"""The ledger's table: one row per tool or model call, and the usage reports read from it.

Written in batches by metering/ledger.py's writer (never on a call's path) and read by
`mcp-gateway usage` and the admin API. Rows hold names, counts, times and costs only: never
arguments, prompts, answers or secrets. Costs are stored as integer picodollars (exact sums
on every backend) and reported as decimal strings.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import chain
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, case, delete, func, insert, or_, select

from mcp_gateway.metering.records import CallRecord
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import ROLLUP_KEYS, ledger, ledger_hourly, meta

PICO = Decimal("1e12")
ROLLED = "ledger_rolled_hour"  # meta: the last hour whose rows are in ledger_hourly
ROLLUP_LOCK = "ledger_rollup"  # a counter each rollup bumps first: replicas take turns
# An hour is rolled up this long after it ended: a record is written when its call ends (a long
# stream's row lands in the hour it started) and up to a flush interval later.
ROLLUP_GRACE_HOURS = 2
# The subject of a call, as budgets match it: who (consumer, team, org, key) and what (model, api, tool).
SPEND_GROUP = ("consumer", "team", "org", "key_id", "model", "api", "tool")
GROUPS = ("consumer", "team", "org", "key", "kind", "model", "provider", "api", "tool", "hour", "day")
# The ledger's written columns, in the order of a row_of() dict.
COLUMNS = tuple(c.name for c in ledger.columns if c.name != "id")
# SQLite: rows written as multi-row INSERTs of this many rows (31 values each, within SQLite's
# oldest limit of 999 variables). sqlite3's executemany steps the statement once per row, releasing
# and retaking the GIL each time, which under load takes the GIL from the event loop thousands of
# times a second; a multi-row INSERT is one step. Not more rows: the writer's thread holds the GIL
# from one step to the next (building and binding the rows), and the event loop waits that long:
# 100 rows per INSERT put the gateway's p99 at concurrency 1 at 1.2-1.6 ms, 25 at 0.8-0.9 ms, at
# the same cost per row (6.5 us).
SQLITE_ROWS_PER_INSERT = 25
_values = operator.itemgetter(*COLUMNS)  # a row_of() dict's values in COLUMNS order
_PG_COPY = f"COPY ledger ({', '.join(COLUMNS)}) FROM STDIN"


@functools.lru_cache(maxsize=8)
def _sqlite_insert(rows: int) -> str:
    values = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    return f"INSERT INTO ledger ({', '.join(COLUMNS)}) VALUES " + ", ".join([values] * rows)


def to_pusd(cost: Decimal | None) -> int | None:
    """USD as integer picodollars (half-even beyond the twelfth decimal)."""
    return None if cost is None else int((cost * PICO).to_integral_value(ROUND_HALF_EVEN))


def from_pusd(value: int | None) -> Decimal:
    """Integer picodollars as USD, exactly."""
    return Decimal(value or 0) / PICO


def row_of(record: CallRecord) -> dict[str, Any]:
    """The ledger row of one record."""
    u = record.usage
    return {
        "at": record.started_at,
        "hour": int(record.started_at // 3600),
        "kind": record.kind,
        "consumer": record.consumer,
        "team": record.team,
        "org": record.org,
        "key_id": record.key_id,
        "api": record.api,
        "tool": record.tool,
        "model": record.model,
        "provider": record.provider,
        "provider_model": record.provider_model,
        "deployment": record.deployment,
        "status": record.status,
        "error": int(record.error),
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write,
        "reasoning_tokens": u.reasoning,
        "estimated": int(u.estimated),
        "cost_pusd": to_pusd(record.cost),
        "request_bytes": record.request_bytes,
        "response_bytes": record.response_bytes,
        "retries": record.retries,
        "fallbacks": record.fallbacks,
        "streamed": int(record.streamed),
        "endpoint": record.endpoint or None,
        "trace_id": record.trace_id,
    }


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Calls and what they used, for one group (a consumer, a model, a day...)."""

    group: str | int | None
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal
    mean_latency_ms: float
    estimated: int  # calls whose tokens are the gateway's estimate
    last_at: float | None = None  # when the last call started

    def public(self) -> dict[str, Any]:
        """As JSON (cost as a decimal string)."""
        return {
            "group": self.group,
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": str(self.cost),
            "mean_latency_ms": round(self.mean_latency_ms, 3),
            "estimated_calls": self.estimated,
            "last_at": self.last_at,
        }


class LedgerStore:
    """The ledger's rows. Blocking: async callers run it in a worker thread (the writer does)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, records: Sequence[CallRecord]) -> None:
        """Store `records` in one transaction (no revision counter: the ledger wakes no poller)."""
        if not records:
            return
        with self.db.transaction() as tx:
            if self.db.dialect == "sqlite":
                # Each INSERT's rows are built just before it: this runs in a worker thread, and
                # building all the batch's rows first held the GIL (and the event loop) for
                # milliseconds; SQLite's step of each INSERT lets it go.
                for start in range(0, len(records), SQLITE_ROWS_PER_INSERT):
                    chunk = records[start : start + SQLITE_ROWS_PER_INSERT]
                    values = tuple(chain.from_iterable(map(_values, map(row_of, chunk))))
                    tx.exec_driver_sql(_sqlite_insert(len(chunk)), values)
            else:
                # COPY rather than an INSERT of many rows: a fifth of the CPU per row (4.2 against
                # 21 us, SQLAlchemy rendering each row's parameters), and its buffer's writes let
                # the GIL go every hundred-odd rows, where the INSERT held it for the whole batch.
                cursor = tx.connection.driver_connection.cursor()  # psycopg 3's, in this transaction
                with cursor.copy(_PG_COPY) as copy:
                    for record in records:
                        copy.write_row(_values(row_of(record)))

    def usage(
        self,
        by: str,
        *,
        since: float | None = None,
        until: float | None = None,
        consumer: str | None = None,
        key_id: str | None = None,
    ) -> list[UsageRow]:
        """Calls grouped `by` one of GROUPS, between `since` and `until` (epoch seconds), optionally
        of one consumer or key; the costliest group first (by time for hour and day).

        Whole hours already rolled up are read from the hourly totals (their raw rows may have been
        pruned); the rest (hours not rolled yet, and the partial hours at either end) from raw rows.
        """
        if by not in GROUPS:
            raise ValueError(f"cannot group usage by {by!r}: one of {', '.join(GROUPS)}")
        rolled = self.rolled_through()
        # Hours read from the rollups: rolled, and wholly inside [since, until).
        hours = None
        if rolled is not None:
            first = math.ceil(since / 3600) if since is not None else None
            last = math.floor(until / 3600) - 1 if until is not None else None
            hours = (first, min(rolled, last) if last is not None else rolled)
        totals: dict[Any, list[Any]] = {}
        for values in self.db.query(self._raw(by, since, until, consumer, key_id, hours)):
            _add(totals, values)
        if hours is not None:
            for values in self.db.query(self._rolled(by, consumer, key_id, hours)):
                _add(totals, values)
        rows = [_usage_row(by, (group, *sums)) for group, sums in totals.items()]
        if by in ("hour", "day"):
            return sorted(rows, key=lambda r: r.group if isinstance(r.group, int) else 0)
        return sorted(rows, key=lambda r: (-r.cost, r.group is None, str(r.group)))

    def _raw(
        self, by: str, since: float | None, until: float | None, consumer: str | None, key_id: str | None,
        hours: tuple[int | None, int] | None,
    ) -> Select[Any]:  # fmt: skip
        c = ledger.c
        group = _group(ledger, by)
        sums = _sums(c.error, c.cost_pusd, c.latency_ms, c.estimated, count=func.count())
        query = select(group, *sums, func.max(c.at))
        if since is not None:
            query = query.where(c.at >= since)
        if until is not None:
            query = query.where(c.at < until)
        if consumer is not None:
            query = query.where(c.consumer == consumer)
        if key_id is not None:
            query = query.where(c.key_id == key_id)
        if hours is not None:  # the rows of those hours are counted from the rollups
            # As ranges of `at` (hour = at // 3600), so that the index on `at` reads only the rest.
            first, last = hours
            after = c.at >= (last + 1) * 3600
            query = query.where(or_(c.at < first * 3600, after) if first is not None else after)
        return query.group_by(group)

    def _rolled(self, by: str, consumer: str | None, key_id: str | None, hours: tuple[int | None, int]) -> Select[Any]:
        r = ledger_hourly.c
        group = _group(ledger_hourly, by)
        sums = _sums(r.errors, r.cost_pusd, r.latency_ms, r.estimated, count=func.sum(r.calls))
        query = select(group, *sums, func.max(r.last_at))
        query = query.where(_within(r.hour, hours))
        if consumer is not None:
            query = query.where(r.consumer == consumer)
        if key_id is not None:
            query = query.where(r.key_id == key_id)
        return query.group_by(group)

    def recent(
        self, limit: int = 50, *, before: int | None = None, consumer: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest calls (raw rows, newest first), older than row id `before` when given, optionally
        of one consumer: a walk down the primary key, fast at any ledger size."""
        c = ledger.c
        query = select(ledger).order_by(c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(c.id < before)
        if consumer is not None:
            query = query.where(c.consumer == consumer)
        return [_call(row) for row in self.db.query(query)]

    def call(self, call_id: int) -> dict[str, Any] | None:
        """One raw row by id (None when there is none, or it was pruned)."""
        rows = self.db.query(select(ledger).where(ledger.c.id == call_id))
        return _call(rows[0]) if rows else None

    def latency_percentiles(
        self, since: float, until: float, *, bucket_hours: int = 1, max_rows: int = 50_000
    ) -> list[tuple[int, float, float, int]]:
        """(bucket start in epoch seconds, p50 ms, p95 ms, calls counted) per bucket of `bucket_hours`
        between `since` and `until`, from raw rows (nearest rank, computed by the database).

        Percentiles need the raw latencies: hours already pruned have none. Over `max_rows`, every
        k-th row by id is counted (an even sample, unrelated to latency) so that a page stays fast
        over a million rows."""
        c = ledger.c
        window = and_(c.at >= since, c.at < until)
        total = int(self.db.query(select(func.count()).select_from(ledger).where(window))[0][0])
        if not total:
            return []
        step = math.ceil(total / max_rows)
        bucket = c.hour // bucket_hours if bucket_hours > 1 else c.hour
        ranked = select(
            bucket.label("bucket"),
            c.latency_ms,
            func.row_number().over(partition_by=bucket, order_by=c.latency_ms).label("rank"),
            func.count().over(partition_by=bucket).label("n"),
        ).where(window)
        if step > 1:
            ranked = ranked.where(c.id % step == 0)
        r = ranked.subquery()
        query = (
            select(
                r.c.bucket,
                func.max(case((r.c.rank == (r.c.n * 50 + 99) // 100, r.c.latency_ms))),
                func.max(case((r.c.rank == (r.c.n * 95 + 99) // 100, r.c.latency_ms))),
                func.max(r.c.n),
            )
            .group_by(r.c.bucket)
            .order_by(r.c.bucket)
        )
        width = 3600 * bucket_hours
        return [(int(b) * width, float(p50), float(p95), int(n)) for b, p50, p95, n in self.db.query(query)]

    def count(self) -> int:
        """Raw rows in the ledger."""
        return int(self.db.query(select(func.count()).select_from(ledger))[0][0])

    def rolled_through(self) -> int | None:
        """The last hour (epoch hours) whose rows are in the hourly totals; None before the first rollup."""
        rows = self.db.query(select(meta.c.value).where(meta.c.key == ROLLED))
        return int(rows[0][0]) if rows else None

    def spend_since(
        self, starts: Sequence[float], *, where: tuple[str, str] | None = None
    ) -> list[tuple[tuple[str | None, ...], list[int]]]:
        """What calls cost since each of `starts` (epoch seconds, whole hours: budget periods), in
        picodollars, per distinct (consumer, team, org, key_id, model, api, tool) among the calls
        that cost something since the earliest start; `where` (column, value) keeps one subject's.
        Rolled-up hours are read from the hourly totals (their raw rows may be pruned), later
        hours from raw rows: one grouped query each (budgets rebuild their spend from it)."""
        if where is not None and where[0] not in SPEND_GROUP:
            raise ValueError(f"cannot narrow spend by {where[0]!r}: one of {', '.join(SPEND_GROUP)}")
        rolled = self.rolled_through()
        first = min(starts)
        totals: dict[tuple[str | None, ...], list[int]] = {}
        for table, at in ((ledger, ledger.c.at), (ledger_hourly, ledger_hourly.c.hour * 3600)):
            c = table.c
            if table is ledger_hourly and rolled is None:
                continue
            group = [func.nullif(c[name], "") for name in SPEND_GROUP]  # the rollups' '' is the ledger's NULL
            sums = [func.coalesce(func.sum(case((at >= start, c.cost_pusd), else_=0)), 0) for start in starts]
            query = select(*group, *sums).where(c.cost_pusd > 0)
            if rolled is not None:
                # Raw rows: as a range of `at` too (hour = at // 3600), which the index on `at` serves.
                later = and_(c.hour > rolled, ledger.c.at >= (rolled + 1) * 3600)
                query = query.where(later) if table is ledger else query.where(c.hour <= rolled)
            if first > 0:
                # `hour` too, so the (consumer, hour) and (key_id, hour) indexes serve a narrowed query.
                query = query.where(at >= first, c.hour >= int(first // 3600))
            if where is not None:
                query = query.where(c[where[0]] == where[1])
            width = len(SPEND_GROUP)
            for row in self.db.query(query.group_by(*group)):
                key, amounts = tuple(row[:width]), [int(v) for v in row[width:]]
                found = totals.setdefault(key, [0] * len(starts))
                for n, amount in enumerate(amounts):
                    found[n] += amount
        return list(totals.items())

    def rollup(self, now: float) -> int:
        """Add the hours that ended at least ROLLUP_GRACE_HOURS before `now` to the hourly totals,
        each hour once (replicas take turns on a lock); the number of hours rolled."""
        target = int(now // 3600) - 1 - ROLLUP_GRACE_HOURS  # the last hour that ended that long ago
        c = ledger.c
        with self.db.transaction(ROLLUP_LOCK) as tx:
            found = tx.execute(select(meta.c.value).where(meta.c.key == ROLLED)).first()
            done = int(found[0]) if found else None
            if done is None:
                first = tx.execute(select(func.min(c.hour))).scalar()
                done = (int(first) - 1) if first is not None else target
            if target > done:
                keys = [func.coalesce(c[name], "") for name in ROLLUP_KEYS]
                sums = _sums(c.error, c.cost_pusd, c.latency_ms, c.estimated, count=func.count())
                totals = (
                    select(c.hour, *keys, *sums, func.max(c.at))
                    .where(c.hour > done, c.hour <= target)
                    .group_by(c.hour, *keys)
                )
                columns = ["hour", *ROLLUP_KEYS, *_SUM_COLUMNS, "last_at"]
                tx.execute(insert(ledger_hourly).from_select(columns, totals))
            self.db.upsert(tx, meta, {"key": ROLLED, "value": max(done, target)}, {"value": max(done, target)})
        return max(0, target - done)

    def prune(self, now: float, keep_seconds: float, batch: int = 5000) -> int:
        """Delete raw rows older than `keep_seconds` whose hour is rolled up, `batch` at a time (each
        its own short transaction: writers are never held up for long); the number deleted."""
        rolled = self.rolled_through()
        if rolled is None:
            return 0
        c = ledger.c
        deleted = 0
        while True:
            with self.db.transaction() as tx:
                ids = select(c.id).where(c.at < now - keep_seconds, c.hour <= rolled).order_by(c.id).limit(batch)
                gone = tx.execute(delete(ledger).where(c.id.in_(ids.scalar_subquery()))).rowcount or 0
            deleted += gone
            if gone < batch:
                return deleted


def _call(row: Any) -> dict[str, Any]:
    """A raw ledger row as data for people: cost in USD, flags as booleans."""
    out = dict(row._mapping)
    out["cost"] = None if out["cost_pusd"] is None else from_pusd(out.pop("cost_pusd"))
    out.pop("cost_pusd", None)
    for flag in ("error", "estimated", "streamed"):
        out[flag] = bool(out[flag])
    return out


def _within(hour: Any, hours: tuple[int | None, int]) -> ColumnElement[bool]:
    first, last = hours
    return and_(hour >= first, hour <= last) if first is not None else hour <= last


def _group(table: Table, by: str) -> ColumnElement[Any]:
    c = table.c
    if by == "hour":
        return c.hour
    if by == "day":
        return c.hour // 24  # floor division, rendered as each backend does it
    return c.key_id if by == "key" else c[by]


# The sums of a usage row after its group, in this order (raw rows and hourly totals alike).
_SUM_COLUMNS = ("calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens", "cost_pusd", "latency_ms", "estimated")  # fmt: skip


def _sums(errors: Any, cost: Any, latency: Any, estimated: Any, *, count: Any) -> list[ColumnElement[Any]]:
    table = errors.table
    tokens = [func.coalesce(func.sum(table.c[f"{name}_tokens"]), 0)
              for name in ("input", "output", "cache_read", "cache_write", "reasoning")]  # fmt: skip
    return [
        count, func.coalesce(func.sum(errors), 0), *tokens, func.coalesce(func.sum(cost), 0),
        func.coalesce(func.sum(latency), 0.0), func.coalesce(func.sum(estimated), 0),
    ]  # fmt: skip


def _add(totals: dict[Any, list[Any]], values: Sequence[Any]) -> None:
    group, *sums, last = values
    group = None if group == "" else group  # the rollups' '' is the ledger's NULL
    found = totals.get(group)
    if found is None:
        totals[group] = [*sums, last]
        return
    for i, value in enumerate(sums):
        found[i] += value
    if last is not None and (found[-1] is None or last > found[-1]):
        found[-1] = last


def _usage_row(by: str, values: Sequence[Any]) -> UsageRow:
    group, calls, errors, i, o, cr, cw, r, cost, latency, estimated, last = values
    if by in ("hour", "day"):
        group = int(group) * (3600 if by == "hour" else 86400)  # the period's start, epoch seconds
    calls = int(calls)
    return UsageRow(
        group, calls, int(errors), int(i), int(o), int(cr), int(cw), int(r),
        cost=from_pusd(int(cost)), mean_latency_ms=float(latency) / calls if calls else 0.0, estimated=int(estimated),
        last_at=float(last) if last is not None else None,
    )  # fmt: skip
