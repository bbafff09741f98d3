"""What `limits` and `budgets` share: listing the config file's and the stored rules, adding and
removing stored ones (running gateways pick a change up at their next store poll)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from mcp_gateway.cli.common import CommandError, config_of, print_json
from mcp_gateway.config import ConfigError, GatewayConfig, describe_errors
from mcp_gateway.store.database import Database
from mcp_gateway.store.rules import R, RuleError, RuleStore, public_rule

StoreOf = Callable[[Database], RuleStore[Any]]
Configured = Callable[[GatewayConfig], Sequence[BaseModel]]


def rule_rows(args: argparse.Namespace, store_of: StoreOf, configured: Configured) -> list[dict[str, Any]] | None:
    """Every rule as JSON (the config file's, then the stored ones); None when printed as JSON already."""
    config = config_of(args)
    db = Database(config.database)
    try:
        stored = store_of(db).list()
    finally:
        db.close()
    rows = [public_rule(r, "config") for r in configured(config)]
    rows += [public_rule(s.rule, "store", s.created_at) for s in stored]
    if args.json:
        print_json(rows)
        return None
    return rows


def match_text(match: dict[str, list[str]]) -> str:
    """`tool=get_*; team=payments`, or `every call`."""
    return "; ".join(f"{k}={','.join(v)}" for k, v in match.items()) or "every call"


def match_of(args: argparse.Namespace, fields: Sequence[str]) -> dict[str, list[str]]:
    """The `--FIELD GLOB` options given, as a rule's `match`."""
    return {f: getattr(args, f"match_{f}") for f in fields if getattr(args, f"match_{f}")}


def add_rule(args: argparse.Namespace, store_of: StoreOf, configured: Configured, model: type[R], data: Any) -> R:
    """Validate `data` as a rule and store it (a name the config file uses is refused)."""
    try:
        rule = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    config = config_of(args)
    db = Database(config.database)
    try:
        store = store_of(db)
        if any(getattr(r, "name", None) == rule.name for r in configured(config)):
            raise CommandError(f"a {store.kind} named {rule.name!r} is in the config file: choose another name")
        store.add(rule)
    except RuleError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
    return rule


def remove_rule(args: argparse.Namespace, store_of: StoreOf, configured: Configured) -> int:
    """Remove the stored rule `args.name`."""
    config = config_of(args)
    db = Database(config.database)
    try:
        store = store_of(db)
        removed = store.remove(args.name)
    finally:
        db.close()
    if not removed:
        in_config = any(getattr(r, "name", None) == args.name for r in configured(config))
        where = " (it is in the config file: edit it there)" if in_config else ""
        raise CommandError(f"no {store.kind} named {args.name!r} was added at run time{where}")
    print(f"removed {store.kind} {args.name}")
    return 0


def add_match_options(parser: argparse.ArgumentParser, fields: Sequence[str]) -> None:
    """`--FIELD GLOB` (repeatable) per field a rule may match on."""
    for field in fields:
        parser.add_argument(
            f"--{field}", dest=f"match_{field}", action="append", metavar="GLOB",
            help=f"only calls whose {field} matches (repeatable; default: any)",
        )  # fmt: skip
