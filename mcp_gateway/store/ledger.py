"""The ledger's table: one row per tool or model call, and the usage reports read from it.

Written in batches by metering/ledger.py's writer (never on a call's path) and read by
`mcp-gateway usage` and the admin API. Rows hold names, counts, times and costs only: never
arguments, prompts, answers or secrets. Costs are stored as integer picodollars (exact sums
on every backend) and reported as decimal strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, insert, select

from mcp_gateway.metering.records import CallRecord
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import ledger

PICO = Decimal("1e12")
GROUPS = ("consumer", "team", "org", "key", "kind", "model", "provider", "api", "tool", "hour", "day")


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
        }


class LedgerStore:
    """The ledger's rows. Blocking: async callers run it in a worker thread (the writer does)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, records: Sequence[CallRecord]) -> None:
        """Store `records` in one transaction (no revision counter: the ledger wakes no poller)."""
        if records:
            with self.db.transaction() as tx:
                tx.execute(insert(ledger), [row_of(r) for r in records])

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
        of one consumer or key; the costliest group first (by time for hour and day)."""
        c = ledger.c
        group = _group(by)
        cost = func.coalesce(func.sum(c.cost_pusd), 0)
        query = select(
            group.label("grp"),
            func.count(),
            func.sum(c.error),
            func.sum(c.input_tokens),
            func.sum(c.output_tokens),
            func.sum(c.cache_read_tokens),
            func.sum(c.cache_write_tokens),
            func.sum(c.reasoning_tokens),
            cost.label("cost"),
            func.avg(c.latency_ms),
            func.sum(c.estimated),
        )
        if since is not None:
            query = query.where(c.at >= since)
        if until is not None:
            query = query.where(c.at < until)
        if consumer is not None:
            query = query.where(c.consumer == consumer)
        if key_id is not None:
            query = query.where(c.key_id == key_id)
        query = query.group_by(group)
        ordered = query.order_by(group) if by in ("hour", "day") else query.order_by(cost.desc(), group)
        return [_usage_row(by, values) for values in self.db.query(ordered)]

    def count(self) -> int:
        """Rows in the ledger."""
        return int(self.db.query(select(func.count()).select_from(ledger))[0][0])

    def spend_since(
        self, starts: Sequence[float], *, where: tuple[str, str] | None = None
    ) -> list[tuple[tuple[str | None, ...], list[int]]]:
        """What calls cost since each of `starts` (epoch seconds), in picodollars, per distinct
        (consumer, team, org, key_id, model, api, tool) among the calls that cost something since
        the earliest start; `where` (column, value) keeps one subject's. One query, one scan of
        the rows since the earliest start (budgets rebuild their spend from it)."""
        c = ledger.c
        group = [c[name] for name in SPEND_GROUP]
        sums = [func.coalesce(func.sum(case((c.at >= start, c.cost_pusd), else_=0)), 0) for start in starts]
        query = select(*group, *sums).where(c.cost_pusd > 0)
        first = min(starts)
        if first > 0:
            # `hour` too, so the (consumer, hour) and (key_id, hour) indexes serve a narrowed query.
            query = query.where(c.at >= first, c.hour >= int(first // 3600))
        if where is not None:
            if where[0] not in SPEND_GROUP:
                raise ValueError(f"cannot narrow spend by {where[0]!r}: one of {', '.join(SPEND_GROUP)}")
            query = query.where(c[where[0]] == where[1])
        found = self.db.query(query.group_by(*group))
        width = len(SPEND_GROUP)
        return [(tuple(row[:width]), [int(v) for v in row[width:]]) for row in found]


# The subject of a call, as budgets match it: who (consumer, team, org, key) and what (model, api, tool).
SPEND_GROUP = ("consumer", "team", "org", "key_id", "model", "api", "tool")


def _group(by: str) -> ColumnElement[Any]:
    c = ledger.c
    if by == "hour":
        return c.hour
    if by == "day":
        return c.hour // 24  # floor division, rendered as each backend does it
    if by == "key":
        return c.key_id
    if by in GROUPS:
        return c[by]
    raise ValueError(f"cannot group usage by {by!r}: one of {', '.join(GROUPS)}")


def _usage_row(by: str, values: Sequence[Any]) -> UsageRow:
    group, calls, errors, *tokens, total, latency, estimated = values
    if by in ("hour", "day"):
        group = int(group) * (3600 if by == "hour" else 86400)  # the period's start, epoch seconds
    return UsageRow(
        group,
        int(calls),
        int(errors or 0),
        *(int(t or 0) for t in tokens),
        cost=from_pusd(int(total)),
        mean_latency_ms=float(latency or 0.0),
        estimated=int(estimated or 0),
    )
