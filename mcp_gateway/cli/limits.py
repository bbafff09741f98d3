"""`mcp-gateway limits list|add|remove`: rate-limit rules added at run time.

They apply with the config file's rules; running gateways pick a change up at their next store
poll (within seconds). The config file's rules are listed too, and cannot be removed here.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from mcp_gateway.cli.common import add_common, add_json, iso, leaf, print_table
from mcp_gateway.cli.rules import add_match_options, add_rule, match_of, match_text, remove_rule, rule_rows
from mcp_gateway.config import GatewayConfig
from mcp_gateway.config.limits import QUANTITIES, LimitMatch, LimitRule, Scope
from mcp_gateway.store.rules import limit_store, public_rule


def _configured(config: GatewayConfig) -> list[LimitRule]:
    return config.limits.rules


def _list(args: argparse.Namespace) -> int:
    """Every rule: the config file's and those added at run time."""
    rows = rule_rows(args, limit_store, _configured)
    if rows is not None:
        print_table(
            ["name", "scope", "limit", "match", "source", "added"],
            [
                (r["name"], r["scope"], _limit(r), match_text(r.get("match", {})), r["source"], iso(r["created_at"]))
                for r in rows
            ],
            empty="no limits (add one with `mcp-gateway limits add NAME --scope consumer --requests-per-minute 60`)",
        )
    return 0


def _limit(row: dict[str, Any]) -> str:
    quantity = next(q for q in QUANTITIES if q in row)
    return f"{row[quantity]} {quantity.replace('_', ' ')}"


def _add(args: argparse.Namespace) -> int:
    """Add a named rule."""
    quantities = {q: getattr(args, q) for q in QUANTITIES if getattr(args, q) is not None}
    match = match_of(args, list(LimitMatch.model_fields))
    data = {"name": args.name, "scope": args.scope, "match": match, **quantities}
    rule = add_rule(args, limit_store, _configured, LimitRule, data)
    print(f"added limit {rule.name}: {_limit(public_rule(rule, 'store'))} for {match_text(match)}, per {rule.scope}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    """Remove a rule added at run time."""
    return remove_rule(args, limit_store, _configured)


def add_parsers(sub: Any) -> None:
    """The `limits` command group."""
    limits = sub.add_parser(
        "limits", help="rate limits added at run time",
        description="Rate-limit rules added at run time; they apply with the config file's (running gateways "
        "pick a change up within seconds).",
    )  # fmt: skip
    group = limits.add_subparsers(dest="limits_command", required=True, metavar="COMMAND")
    listing = leaf(group, "list", _list, "list the config file's and the added rules")
    add_json(listing)
    add = leaf(group, "add", _add, "add a named rule")
    add.add_argument("name", help="the rule's name (refusals and RateLimit headers use it)")
    add.add_argument("--scope", required=True, choices=get_args(Scope), help="whose counter a call charges")
    for quantity in QUANTITIES:
        flag = "--" + quantity.replace("_", "-")
        words = quantity.replace("_", " ")
        add.add_argument(flag, dest=quantity, type=int, help=f"{words} (give exactly one quantity; default: none)")
    add_match_options(add, list(LimitMatch.model_fields))
    remove = leaf(group, "remove", _remove, "remove a rule added at run time")
    remove.add_argument("name", help="the rule's name (one added at run time)")
    for p in (listing, add, remove):
        add_common(p)
