"""`mcp-gateway budgets list|status|add|remove`: budgets added at run time, and what each has spent.

Added budgets apply with the config file's; running gateways pick a change up at their next
store poll (within seconds), and count the period's spend so far from the ledger.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

import anyio

from mcp_gateway.cli.common import add_common, add_json, config_of, iso, leaf, print_json, print_table
from mcp_gateway.cli.rules import add_match_options, add_rule, match_of, match_text, remove_rule, rule_rows
from mcp_gateway.config import GatewayConfig
from mcp_gateway.config.budgets import BudgetRule, BudgetScope, Period
from mcp_gateway.config.limits import LimitMatch
from mcp_gateway.metering.budget_counters import LocalSpend
from mcp_gateway.metering.budgets import Budgets, LedgerSpend
from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import LedgerStore
from mcp_gateway.store.rules import budget_store


def _configured(config: GatewayConfig) -> list[BudgetRule]:
    return config.budgets.rules


def _cap(row: dict[str, Any]) -> str:
    period = row.get("period", "month")
    return f"USD {row['usd']} {'in total' if period == 'total' else 'per ' + period}"


def _list(args: argparse.Namespace) -> int:
    """Every budget: the config file's and those added at run time."""
    rows = rule_rows(args, budget_store, _configured)
    if rows is not None:
        print_table(
            ["name", "scope", "cap", "match", "source", "added"],
            [
                (r["name"], r["scope"], _cap(r), match_text(r.get("match", {})), r["source"], iso(r["created_at"]))
                for r in rows
            ],
            empty="no budgets (add one with `mcp-gateway budgets add NAME --scope consumer --usd 20 --period month`)",
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    """What each budget's subjects have spent in the current period, from the ledger."""
    config = config_of(args)
    db = Database(config.database)
    try:
        rules = [*config.budgets.rules, *(s.rule for s in budget_store(db).list())]

        async def balances() -> list[dict[str, Any]]:
            budgets = Budgets(config.budgets, config.limits, LocalSpend(), LedgerSpend(LedgerStore(db)))
            await budgets.set_rules(rules)
            await budgets.rebuild()  # the config file's budgets too (set_rules loads only new ones)
            return [b.public() for b in await budgets.everyone()]

        found = anyio.run(balances)
    finally:
        db.close()
    if args.json:
        print_json(found)
        return 0
    rows = [
        (b["budget"], b["subject"], iso(b["period_start"]) if b["period_start"] else "all time",
         b["cap_usd"], b["spent_usd"], b["remaining_usd"])
        for b in found
    ]  # fmt: skip
    headers = ["budget", "subject", "period from", "cap usd", "spent usd", "remaining usd"]
    print_table(headers, rows, empty="no spend under any budget in its current period")
    return 0


def _add(args: argparse.Namespace) -> int:
    """Add a named budget."""
    match = match_of(args, list(LimitMatch.model_fields))
    data: dict[str, Any] = {"name": args.name, "scope": args.scope, "usd": args.usd, "period": args.period}
    if match:
        data["match"] = match
    if args.alert_at:
        data["alert_at"] = args.alert_at
    rule = add_rule(args, budget_store, _configured, BudgetRule, data)
    cap = _cap({"usd": args.usd, "period": rule.period})
    print(f"added budget {rule.name}: {cap} for {match_text(match)}, per {rule.scope}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    """Remove a budget added at run time."""
    return remove_rule(args, budget_store, _configured)


def add_parsers(sub: Any) -> None:
    """The `budgets` command group."""
    budgets = sub.add_parser(
        "budgets", help="spend caps added at run time, and their spend",
        description="Budgets (spend caps in USD) added at run time; they apply with the config file's (running "
        "gateways pick a change up within seconds).",
    )  # fmt: skip
    group = budgets.add_subparsers(dest="budgets_command", required=True, metavar="COMMAND")
    listing = leaf(group, "list", _list, "list the config file's and the added budgets")
    add_json(listing)
    status = leaf(group, "status", _status, "what each subject has spent under each budget this period (the ledger)")
    add_json(status)
    add = leaf(group, "add", _add, "add a named budget")
    add.add_argument("name", help="the budget's name (refusals, usage and alerts use it)")
    add.add_argument("--scope", required=True, choices=get_args(BudgetScope), help="whose spend one cap holds")
    add.add_argument("--usd", required=True, help="the cap in USD, e.g. 20 or 0.50 (kept exact)")
    add.add_argument("--period", choices=get_args(Period), default="month", help="day, week, month or total "
                     "(default: month)")  # fmt: skip
    add.add_argument("--alert-at", type=int, action="append", metavar="PERCENT",
                     help="alert at this percentage of the cap (repeatable; default: budgets.alerts.at)")  # fmt: skip
    add_match_options(add, list(LimitMatch.model_fields))
    remove = leaf(group, "remove", _remove, "remove a budget added at run time")
    remove.add_argument("name", help="the budget's name (one added at run time)")
    for p in (listing, status, add, remove):
        add_common(p)
