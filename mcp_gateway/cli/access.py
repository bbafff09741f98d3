"""`mcp-gateway consumers|keys|policies ...`: manage who may call what, in the store.

Changes take effect in running gateways within one store poll (two seconds).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import IdentityError, IdentityStore, Selector

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """`90`, `30m`, `12h`, `30d`, `2w` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 30m, 12h, 30d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_parsers(sub: Any, common: Any) -> None:
    """Add the consumers, keys and policies commands to the root parser's subparsers."""
    consumers = sub.add_parser("consumers", help="manage consumers").add_subparsers(
        dest="access_command", required=True
    )
    add = consumers.add_parser("add", help="create a consumer")
    add.add_argument("name")
    add.add_argument("--team")
    add.add_argument("--org")
    consumers.add_parser("list", help="list consumers")
    consumers.add_parser("disable", help="refuse a consumer's keys and tokens until enabled").add_argument("name")
    consumers.add_parser("enable", help="accept a disabled consumer again").add_argument("name")
    consumers.add_parser("remove", help="delete a consumer, its keys and its policies").add_argument("name")

    keys_cmd = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="access_command", required=True)
    create = keys_cmd.add_parser("create", help="create a key (printed once)")
    create.add_argument("consumer")
    create.add_argument("--expires-in", type=duration, help="e.g. 30d; default: never")
    create.add_argument("--description")
    keys_list = keys_cmd.add_parser("list", help="list keys (never their secrets)")
    keys_list.add_argument("--consumer")
    rotate = keys_cmd.add_parser("rotate", help="replace a key; the old one works for a grace period")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=duration, help="default: auth.key_rotation_grace_seconds")
    keys_cmd.add_parser("revoke", help="revoke a key now").add_argument("key_id")

    policies = sub.add_parser("policies", help="manage access policies").add_subparsers(
        dest="access_command", required=True
    )
    padd = policies.add_parser("add", help="allow or deny a subject some tools")
    who = padd.add_mutually_exclusive_group(required=True)
    who.add_argument("--consumer")
    who.add_argument("--team")
    who.add_argument("--org")
    who.add_argument("--everyone", action="store_true")
    effect = padd.add_mutually_exclusive_group(required=True)
    effect.add_argument("--allow", action="store_true")
    effect.add_argument("--deny", action="store_true")
    padd.add_argument("--api", action="append", default=[], help="API name glob (repeatable)")
    padd.add_argument("--tool", action="append", default=[], help="tool name glob (repeatable)")
    padd.add_argument("--tag", action="append", default=[])
    padd.add_argument("--method", action="append", default=[])
    ro = padd.add_mutually_exclusive_group()
    ro.add_argument("--read-only", dest="read_only", action="store_true", default=None)
    ro.add_argument("--writes", dest="read_only", action="store_false")
    padd.add_argument("--description")
    policies.add_parser("list", help="list policies")
    policies.add_parser("remove", help="delete a policy").add_argument("policy_id", type=int)

    for group in (consumers, keys_cmd, policies):
        for parser in group.choices.values():
            common(parser)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


def run(args: argparse.Namespace, config: GatewayConfig) -> int:
    """Carry out one consumers/keys/policies command."""
    db = Database(config.database_path)
    store = IdentityStore(db)
    try:
        return _run(args, config, store)
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _run(args: argparse.Namespace, config: GatewayConfig, store: IdentityStore) -> int:
    command, action = args.command, args.access_command
    if command == "consumers":
        if action == "add":
            consumer = store.add_consumer(args.name, args.team, args.org)
            print(f"created consumer {consumer.name}")
        elif action == "list":
            for c in store.consumers():
                state = "  (disabled)" if c.disabled else ""
                print(f"{c.name:<24} team={c.team or '-':<16} org={c.org or '-'}{state}")
        elif action in ("disable", "enable"):
            if not store.set_disabled(args.name, action == "disable"):
                print(f"no consumer named {args.name!r}", file=sys.stderr)
                return 1
            print(f"{action}d consumer {args.name}")
        elif not store.remove_consumer(args.name):
            print(f"no consumer named {args.name!r}", file=sys.stderr)
            return 1
        return 0
    if command == "keys":
        if action == "create":
            key, full = keys.issue(store, args.consumer, expires_in=args.expires_in, description=args.description)
            print(f"key {key.key_id} for {key.consumer} (shown once, store it now):")
            print(full)
        elif action == "list":
            _print([k.public() for k in store.keys(args.consumer)])
        elif action == "rotate":
            grace = args.grace if args.grace is not None else config.auth.key_rotation_grace_seconds
            key, full = keys.rotate(store, args.key_id, grace=grace)
            print(f"key {key.key_id} replaces {args.key_id} (which works for {grace:g} more seconds):")
            print(full)
        elif not store.revoke_key(args.key_id):
            print(f"no active key {args.key_id!r}", file=sys.stderr)
            return 1
        return 0
    if action == "add":
        kind, subject = next(
            (k, v) for k, v in (("consumer", args.consumer), ("team", args.team), ("org", args.org)) if v
        ) if not args.everyone else ("everyone", "*")  # fmt: skip
        selector = Selector(
            apis=tuple(args.api), tools=tuple(args.tool), tags=tuple(args.tag),
            methods=tuple(m.upper() for m in args.method), read_only=args.read_only,
        )  # fmt: skip
        policy = store.add_policy(kind, subject, "allow" if args.allow else "deny", selector, args.description)
        _print(policy.public())
    elif action == "list":
        _print([p.public() for p in store.policies()])
    elif not store.remove_policy(args.policy_id):
        print(f"no policy {args.policy_id}", file=sys.stderr)
        return 1
    return 0
