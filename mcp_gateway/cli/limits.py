"""`mcp-gateway limits list|add|remove`: rate-limit rules added at run time.

They apply with the config file's rules; running gateways pick a change up at their next store
poll (within seconds). The config file's rules are listed too, and cannot be removed here.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from pydantic import ValidationError

from mcp_gateway.cli.common import CommandError, add_common, add_json, config_of, iso, leaf, print_json, print_table
from mcp_gateway.config import ConfigError, GatewayConfig, describe_errors
from mcp_gateway.config.limits import QUANTITIES, LimitMatch, LimitRule, Scope
from mcp_gateway.store.database import Database
from mcp_gateway.store.limits import LimitRuleError, LimitStore, public_rule


def _open(args: argparse.Namespace) -> tuple[GatewayConfig, Database]:
    config = config_of(args)
    return config, Database(config.database)


def _list(args: argparse.Namespace) -> int:
    """Every rule: the config file's and those added at run time."""
    config, db = _open(args)
    try:
        stored = LimitStore(db).list()
    finally:
        db.close()
    rows = [public_rule(r, "config") for r in config.limits.rules]
    rows += [public_rule(s.rule, "store", s.created_at) for s in stored]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["name", "scope", "limit", "match", "source", "added"],
        [
            (r["name"], r["scope"], _limit(r), _match(r.get("match", {})), r["source"], iso(r["created_at"]))
            for r in rows
        ],
        empty="no limits (add one with `mcp-gateway limits add NAME --scope consumer --requests-per-minute 60`)",
    )
    return 0


def _limit(row: dict[str, Any]) -> str:
    quantity = next(q for q in QUANTITIES if q in row)
    return f"{row[quantity]} {quantity.replace('_', ' ')}"


def _match(match: dict[str, list[str]]) -> str:
    return "; ".join(f"{k}={','.join(v)}" for k, v in match.items()) or "every call"


def _add(args: argparse.Namespace) -> int:
    """Add a named rule."""
    quantities = {q: getattr(args, q) for q in QUANTITIES if getattr(args, q) is not None}
    match = {f: getattr(args, f"match_{f}") for f in LimitMatch.model_fields if getattr(args, f"match_{f}")}
    try:
        rule = LimitRule.model_validate({"name": args.name, "scope": args.scope, "match": match, **quantities})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    config, db = _open(args)
    try:
        if any(r.name == rule.name for r in config.limits.rules):
            raise CommandError(f"a limit named {rule.name!r} is in the config file: choose another name")
        LimitStore(db).add(rule)
    except LimitRuleError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
    print(f"added limit {rule.name}: {_limit(public_rule(rule, 'store'))} for {_match(match)}, per {rule.scope}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    """Remove a rule added at run time."""
    config, db = _open(args)
    try:
        removed = LimitStore(db).remove(args.name)
    finally:
        db.close()
    if not removed:
        where = (
            " (it is in the config file: edit it there)"
            if any(r.name == args.name for r in config.limits.rules)
            else ""
        )
        raise CommandError(f"no limit named {args.name!r} was added at run time{where}")
    print(f"removed limit {args.name}")
    return 0


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
    for field in LimitMatch.model_fields:
        add.add_argument(
            f"--{field}", dest=f"match_{field}", action="append", metavar="GLOB",
            help=f"only calls whose {field} matches (repeatable; default: any)",
        )  # fmt: skip
    remove = leaf(group, "remove", _remove, "remove a rule added at run time")
    remove.add_argument("name", help="the rule's name (one added at run time)")
    for p in (listing, add, remove):
        add_common(p)
