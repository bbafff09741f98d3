"""`mcp-gateway usage`: calls, tokens and cost from the ledger, grouped one way."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from typing import Any

from mcp_gateway.cli.common import add_common, add_json, config_of, iso, leaf, print_json, print_table, setup_logging
from mcp_gateway.durations import parse_moment
from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import GROUPS, LedgerStore, UsageRow

_COLUMNS = ("calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
            "reasoning_tokens", "cost_usd", "mean_latency_ms", "estimated_calls")  # fmt: skip


def moment(text: str) -> float:
    """An argparse type: a duration ago (`7d`, `12h`), epoch seconds, or an ISO date or date-time
    (UTC unless it says)."""
    try:
        return parse_moment(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _usage(args: argparse.Namespace) -> int:
    """Print usage grouped by `--by`."""
    setup_logging("warning")
    db = Database(config_of(args).database)
    try:
        rows = LedgerStore(db).usage(args.by, since=args.since, until=args.until, consumer=args.consumer)
    finally:
        db.close()
    if args.json:
        print_json({"by": args.by, "since": args.since, "until": args.until, "rows": [r.public() for r in rows]})
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow([args.by, *_COLUMNS])
        for row in rows:
            data = row.public()
            writer.writerow([_label(args.by, row), *(data[c] for c in _COLUMNS)])
    else:
        print_table(
            [args.by, "calls", "errors", "input", "output", "cache read", "cost usd", "mean ms"],
            (
                [
                    _label(args.by, r),
                    r.calls,
                    r.errors,
                    r.input_tokens,
                    r.output_tokens,
                    r.cache_read_tokens,
                    f"{r.cost:.6f}",
                    f"{r.mean_latency_ms:.1f}",
                ]
                for r in rows
            ),
            "no calls in the ledger for that period",
        )
    return 0


def _label(by: str, row: UsageRow) -> Any:
    if by == "day" and isinstance(row.group, int):
        return iso(row.group)[:10]
    if by == "hour" and isinstance(row.group, int):
        return iso(row.group)[:13] + ":00Z"
    return row.group


def add_parsers(sub: Any) -> None:
    """The `usage` command."""
    usage = leaf(
        sub, "usage", _usage, "calls, tokens and cost from the ledger",
        description="Calls, tokens and cost of tool and model calls, from the ledger, grouped one way.",
    )  # fmt: skip
    usage.add_argument("--by", choices=GROUPS, default="consumer", help="how to group the calls (default: consumer)")
    usage.add_argument("--since", type=moment, help="from this time: 7d (ago) or 2026-11-01 (default: all)")
    usage.add_argument("--until", type=moment, help="until this time, same forms (default: now)")
    usage.add_argument("--consumer", help="only this consumer's calls (default: everyone's)")
    add_json(usage)
    usage.add_argument("--csv", action="store_true", help="print CSV instead of a table (default: a table)")
    add_common(usage)
