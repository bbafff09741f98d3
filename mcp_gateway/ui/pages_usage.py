"""The console's ledger pages: the overview's charts, usage by group (and its CSV export), and
recent calls with their details. Every query is LedgerStore's: indexed columns and the hourly
rollups, so that they stay fast over a million rows."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.store.ledger import UsageRow
from mcp_gateway.ui.app import Console, Context
from mcp_gateway.ui.charts import Series, bar_chart, line_chart, number
from mcp_gateway.ui.render import SECURITY_HEADERS, usd

# name -> (seconds, bucket): hours up to a week, days beyond.
PERIODS = {"24h": (86400, "hour"), "7d": (7 * 86400, "hour"), "30d": (30 * 86400, "day"), "90d": (90 * 86400, "day")}
GROUPS = ("consumer", "team", "org", "model", "api", "tool", "key", "provider", "kind")
CSV_COLUMNS = (
    *("group", "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"),
    *("reasoning_tokens", "cost_usd", "mean_latency_ms", "estimated_calls", "last_at"),
)
PAGE_SIZE = 50


def period_of(request: Request, default: str = "24h") -> str:
    """The period picked (`?period=`), one of PERIODS."""
    chosen = request.query_params.get("period", default)
    return chosen if chosen in PERIODS else default


def totals(rows: Sequence[UsageRow]) -> dict[str, Any]:
    """Sums over usage rows, for the overview's figures."""
    calls = sum(r.calls for r in rows)
    return {
        "calls": calls,
        "errors": sum(r.errors for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost": sum((r.cost for r in rows), Decimal(0)),
        "mean_latency_ms": sum(r.mean_latency_ms * r.calls for r in rows) / calls if calls else 0.0,
    }


def _safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (names come from callers)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def routes(console: Console) -> list[Route]:
    """/ui/ (overview), /ui/usage, /ui/usage.csv, /ui/calls, /ui/calls/{id}."""
    ledger = console.services.ledger

    async def overview(request: Request, ctx: Context) -> Response:
        period = period_of(request)
        span, bucket = PERIODS[period]
        now = time.time()
        step = 3600 if bucket == "hour" else 86400

        def read() -> tuple[list[UsageRow], list[tuple[int, float, float, int]]]:
            rows = ledger.usage(bucket, since=now - span, until=now)
            return rows, ledger.latency_percentiles(now - span, now, bucket_hours=step // 3600)

        rows, latency = await anyio.to_thread.run_sync(read)
        points = [(float(r.group), r) for r in rows if isinstance(r.group, int)]
        charts = [
            line_chart("Calls and errors", [Series("calls", [(x, r.calls) for x, r in points]),
                                            Series("errors", [(x, r.errors) for x, r in points])], step=step),
            line_chart("Latency (ms)", [Series("p50", [(x, p50) for x, p50, _, _ in latency]),
                                        Series("p95", [(x, p95) for x, _, p95, _ in latency])], step=step),
            line_chart("Tokens", [Series("input", [(x, r.input_tokens) for x, r in points]),
                                  Series("output", [(x, r.output_tokens) for x, r in points])], step=step),
            line_chart("Cost (USD)", [Series("cost", [(x, float(r.cost)) for x, r in points])],
                       lambda v: usd(Decimal(str(v))) if v < 1 else f"${number(v)}", step=step),
        ]  # fmt: skip
        return console.render(
            request, ctx, "overview.html", period=period, periods=PERIODS, totals=totals(rows), charts=charts,
            sampled=sum(n for *_, n in latency),
        )  # fmt: skip

    def usage_rows(request: Request) -> tuple[str, str, list[UsageRow]]:
        by = request.query_params.get("by", "consumer")
        by = by if by in GROUPS else "consumer"
        period = period_of(request, "7d")
        now = time.time()
        return by, period, ledger.usage(by, since=now - PERIODS[period][0], until=now)

    async def usage(request: Request, ctx: Context) -> Response:
        by, period, rows = await anyio.to_thread.run_sync(usage_rows, request)
        costly = any(r.cost for r in rows)
        bars = [(str(r.group) if r.group is not None else "(none)", float(r.cost) if costly else r.calls)
                for r in rows[:20]]  # fmt: skip
        chart = bar_chart(f"{'Cost (USD)' if costly else 'Calls'} by {by}", bars)
        return console.render(
            request, ctx, "usage.html", by=by, groups=GROUPS, period=period, periods=PERIODS, rows=rows, chart=chart
        )

    async def usage_csv(request: Request, ctx: Context) -> Response:
        by, period, rows = await anyio.to_thread.run_sync(usage_rows, request)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            data = row.public()
            writer.writerow([_safe_cell(data[c]) for c in CSV_COLUMNS])
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="usage-by-{by}-{period}.csv"'}
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

    async def calls(request: Request, ctx: Context) -> Response:
        before = request.query_params.get("before")
        consumer = request.query_params.get("consumer") or None
        found = await anyio.to_thread.run_sync(
            lambda: ledger.recent(
                PAGE_SIZE, before=int(before) if before and before.isdigit() else None, consumer=consumer
            )
        )
        older = found[-1]["id"] if len(found) == PAGE_SIZE else None
        return console.render(request, ctx, "calls.html", calls=found, consumer=consumer, older=older)

    async def call(request: Request, ctx: Context) -> Response:
        raw = request.path_params["call_id"]
        found = await anyio.to_thread.run_sync(ledger.call, int(raw)) if raw.isdigit() else None
        if found is None:
            return console.render(request, ctx, "call.html", 404, call=None)
        return console.render(request, ctx, "call.html", call=found)

    return [
        Route("/", console.get(overview), methods=["GET"]),
        Route("/usage", console.get(usage), methods=["GET"]),
        Route("/usage.csv", console.get(usage_csv), methods=["GET"]),
        Route("/calls", console.get(calls), methods=["GET"]),
        Route("/calls/{call_id}", console.get(call), methods=["GET"]),
    ]
