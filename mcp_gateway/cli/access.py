"""`mcp-gateway consumers|keys|policies ...`: manage who may call what, in the store.

Changes take effect in running gateways within one store poll (two seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mcp_gateway.auth import keys
from mcp_gateway.cli.common import (
    CommandError,
    add_common,
    add_json,
    config_of,
    duration,
    iso,
    leaf,
    plural,
    print_fields,
    print_json,
    print_table,
    setup_logging,
)
from mcp_gateway.config import GatewayConfig
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import (
    ApiKey,
    IdentityError,
    IdentityStore,
    Policy,
    Selector,
    unknown_consumer_warning,
)
from mcp_gateway.store.ledger import LedgerStore, UsageRow


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[tuple[IdentityStore, GatewayConfig]]:
    config = config_of(args)
    setup_logging("warning")
    db = Database(config.database)
    try:
        yield IdentityStore(db), config
    except IdentityError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()


def _command(body: Callable[[argparse.Namespace, IdentityStore, GatewayConfig], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        with _store(args) as (store, config):
            return body(args, store, config)

    run.__doc__ = body.__doc__
    return run


# -- consumers ---------------------------------------------------------------------------


def _use(store: IdentityStore, by: str) -> dict[Any, UsageRow]:
    """Every consumer's or key's calls in the ledger (last use, spend), by name."""
    return {row.group: row for row in LedgerStore(store.db).usage(by)}


def _use_json(use: dict[Any, UsageRow], name: str) -> dict[str, Any]:
    row = use.get(name)
    return {"last_used_at": row.last_at if row else None, "spend_usd": str(row.cost) if row else "0", "calls":
            row.calls if row else 0}  # fmt: skip


def _use_cells(use: dict[Any, UsageRow], name: str) -> tuple[str, str]:
    row = use.get(name)
    return (iso(row.last_at), f"{row.cost:.6f}") if row else ("never", "0")


def _consumer_add(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Create a consumer."""
    consumer = store.add_consumer(args.name, args.team, args.org)
    print(f"created consumer {consumer.name}")
    return 0


def _consumer_list(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Every consumer."""
    consumers = store.consumers()
    use = _use(store, "consumer")
    if args.json:
        print_json([{"name": c.name, "team": c.team, "org": c.org, "disabled": c.disabled,
                     "created_at": c.created_at, **_use_json(use, c.name)} for c in consumers])  # fmt: skip
        return 0
    print_table(
        ["name", "team", "org", "state", "created", "last used", "spend usd"],
        [
            (c.name, c.team, c.org, "disabled" if c.disabled else "active", iso(c.created_at), *_use_cells(use, c.name))
            for c in consumers
        ],
        empty="no consumers (create one with `mcp-gateway consumers add NAME`)",
    )
    return 0


def _consumer_show(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """One consumer, with its keys and the policies that name it."""
    consumer = store.consumer(args.name)
    if consumer is None:
        raise CommandError(f"no consumer named {args.name!r}")
    found = store.keys(consumer.name)
    key_ids = {k.key_id for k in found}
    policies = [p for p in store.policies() if (p.subject_kind, p.subject) == ("consumer", consumer.name)
                or (p.subject_kind == "key" and p.subject in key_ids)]  # fmt: skip
    if args.json:
        print_json({"name": consumer.name, "team": consumer.team, "org": consumer.org, "disabled": consumer.disabled,
                    "created_at": consumer.created_at, "keys": [k.public() for k in found],
                    "policies": [p.public() for p in policies]})  # fmt: skip
        return 0
    print_fields(
        [
            ("name", consumer.name),
            ("team", consumer.team),
            ("org", consumer.org),
            ("state", "disabled" if consumer.disabled else "active"),
            ("created", iso(consumer.created_at)),
            ("keys", ", ".join(f"{k.key_id} ({_key_state(k)})" for k in found) or "none"),
            ("policies", ", ".join(f"#{p.id} {_policy_summary(p)}" for p in policies) or "none"),
        ]
    )
    return 0


def _consumer_state(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Disable or enable a consumer."""
    disable = args.action == "disable"
    if not store.set_disabled(args.name, disable):
        raise CommandError(f"no consumer named {args.name!r}")
    print(f"{args.action}d consumer {args.name}")
    return 0


def _consumer_remove(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Delete a consumer with its keys and its policies."""
    gone = store.remove_consumer(args.name)
    if gone is None:
        raise CommandError(f"no consumer named {args.name!r}")
    print(f"removed consumer {args.name}, its {plural(gone[0], 'key')} and {plural(gone[1], 'policy', 'policies')}")
    return 0


# -- keys ------------------------------------------------------------------------------------


def _key_state(key: ApiKey, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _key_create(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Create a key; it is printed once."""
    key, full = keys.issue(store, args.consumer, expires_in=args.expires_in, description=args.description)
    expiry = f", expires {iso(key.expires_at)}" if key.expires_at else ""
    print(f"key {key.key_id} for {key.consumer}{expiry} (shown once, store it now):", file=sys.stderr)
    print(full)
    return 0


def _key_list(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Keys, never their secrets."""
    found = store.keys(args.consumer)
    use = _use(store, "key")
    if args.json:
        print_json([{**k.public(), **_use_json(use, k.key_id)} for k in found])
        return 0
    print_table(
        ["key id", "consumer", "state", "created", "expires", "last used", "spend usd", "description"],
        [
            (
                k.key_id,
                k.consumer,
                _key_state(k),
                iso(k.created_at),
                iso(k.expires_at),
                *_use_cells(use, k.key_id),
                k.description,
            )
            for k in found
        ],
        empty="no keys",
    )
    return 0


def _key_rotate(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Replace a key; the old one works for a grace period."""
    grace = args.grace if args.grace is not None else config.auth.key_rotation_grace_seconds
    key, full = keys.rotate(store, args.key_id, grace=grace)
    until = iso(time.time() + grace)
    print(f"key {key.key_id} replaces {args.key_id}, which works until {until} (shown once):", file=sys.stderr)
    print(full)
    return 0


def _key_revoke(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Revoke a key now."""
    key = store.key(args.key_id)
    if key is None or not store.revoke_key(args.key_id):
        raise CommandError(f"no active key {args.key_id!r}")
    print(f"revoked key {key.key_id} of {key.consumer}")
    return 0


# -- policies ----------------------------------------------------------------------------------


def _policy_summary(policy: Policy) -> str:
    sel = policy.selector
    named = (("apis", sel.apis), ("tools", sel.tools), ("tags", sel.tags), ("methods", sel.methods),
             ("models", sel.models))  # fmt: skip
    parts = [f"{name} {','.join(values)}" for name, values in named if values]
    if sel.read_only is not None:
        parts.append("read-only tools" if sel.read_only else "writing tools")
    subject = "everyone" if policy.subject_kind == "everyone" else f"{policy.subject_kind} {policy.subject}"
    return f"{policy.effect} {subject}: {'; '.join(parts) or 'every tool and model'}"


def _policy_add(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Allow or deny a subject some tools or models."""
    named = (("key", args.key), ("consumer", args.consumer), ("team", args.team), ("org", args.org))
    kind, subject = next((k, v) for k, v in named if v) if not args.everyone else ("everyone", "*")
    selector = Selector(
        apis=tuple(args.api), tools=tuple(args.tool), tags=tuple(args.tag),
        methods=tuple(m.upper() for m in args.method), read_only=args.read_only, models=tuple(args.model),
    )  # fmt: skip
    if selector.models and selector.names_tools:
        raise CommandError("a policy is about models or about tools: give --model, or tool criteria, not both", 2)
    if kind == "consumer" and store.consumer(subject) is None:
        print(f"warning: {unknown_consumer_warning(subject)}", file=sys.stderr)
    policy = store.add_policy(kind, subject, "allow" if args.allow else "deny", selector, args.description)
    if args.json:
        print_json(policy.public())
    else:
        print(f"added policy #{policy.id}: {_policy_summary(policy)}")
    return 0


def _policy_list(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Every policy."""
    policies = store.policies()
    if args.json:
        print_json([p.public() for p in policies])
        return 0
    print_table(
        ["id", "policy", "description"],
        [(f"#{p.id}", _policy_summary(p), p.description) for p in policies],
        empty="no policies (with access control on, nobody may call anything)",
    )
    return 0


def _policy_remove(args: argparse.Namespace, store: IdentityStore, config: GatewayConfig) -> int:
    """Delete a policy."""
    policy = store.remove_policy(args.policy_id)
    if policy is None:
        raise CommandError(f"no policy #{args.policy_id}")
    print(f"removed policy #{policy.id}: {_policy_summary(policy)}")
    return 0


# -- parsers --------------------------------------------------------------------------------------


def _policy_id(text: str) -> int:
    digits = text.lstrip("#")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a policy id: {text!r} (see `mcp-gateway policies list`)")
    return int(digits)


def add_parsers(sub: Any) -> None:
    """The consumers, keys and policies command groups."""
    consumers = sub.add_parser("consumers", help="manage consumers", description="Manage consumers.")
    group = consumers.add_subparsers(dest="access_command", required=True, metavar="COMMAND")
    add = leaf(group, "add", _command(_consumer_add), "create a consumer")
    add.add_argument("name", help="the consumer's name")
    add.add_argument("--team", help="the team it belongs to (default: none)")
    add.add_argument("--org", help="the organisation it belongs to (default: none)")
    listing = leaf(group, "list", _command(_consumer_list), "list consumers")
    show = leaf(group, "show", _command(_consumer_show), "show a consumer, its keys and its policies")
    show.add_argument("name", help="the consumer's name")
    leaves = [add, listing, show]
    for action, text in (("disable", "refuse a consumer's keys and tokens until enabled"),
                         ("enable", "accept a disabled consumer again")):  # fmt: skip
        p = leaf(group, action, _command(_consumer_state), text)
        p.add_argument("name", help="the consumer's name")
        p.set_defaults(action=action)
        leaves.append(p)
    remove = leaf(group, "remove", _command(_consumer_remove), "delete a consumer, its keys and its policies")
    remove.add_argument("name", help="the consumer's name")
    leaves.append(remove)

    keys_group = sub.add_parser("keys", help="manage API keys", description="Manage consumers' API keys.")
    group = keys_group.add_subparsers(dest="access_command", required=True, metavar="COMMAND")
    create = leaf(group, "create", _command(_key_create), "create a key (printed once)")
    create.add_argument("consumer", help="the consumer the key is for")
    create.add_argument("--expires-in", type=duration, metavar="DURATION", help="e.g. 90d, 12h (default: never)")
    create.add_argument("--description", help="a note shown in listings (default: none)")
    keys_list = leaf(group, "list", _command(_key_list), "list keys (never their secrets)")
    keys_list.add_argument("--consumer", help="only this consumer's keys (default: everyone's)")
    rotate = leaf(group, "rotate", _command(_key_rotate), "replace a key; the old one works for a grace period")
    rotate.add_argument("key_id", help="the key's id (see `mcp-gateway keys list`)")
    rotate.add_argument(
        "--grace", type=duration, metavar="DURATION", help="old key's life, e.g. 1h (default: auth.key_rotation_grace)"
    )
    revoke = leaf(group, "revoke", _command(_key_revoke), "revoke a key now")
    revoke.add_argument("key_id", help="the key's id (see `mcp-gateway keys list`)")
    leaves += [create, keys_list, rotate, revoke]

    policies = sub.add_parser("policies", help="manage access policies", description="Manage access policies.")
    group = policies.add_subparsers(dest="access_command", required=True, metavar="COMMAND")
    padd = leaf(group, "add", _command(_policy_add), "allow or deny a subject some tools or models")
    who = padd.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--key",
        metavar="KEY_ID",
        help="the policy confines this one API key (see `mcp-gateway keys list`): it may use only what its "
        "policies allow, and only what its consumer may",
    )
    who.add_argument("--consumer", help="the policy is for this consumer")
    who.add_argument("--team", help="the policy is for this team")
    who.add_argument("--org", help="the policy is for this organisation")
    who.add_argument("--everyone", action="store_true", help="the policy is for every caller")
    effect = padd.add_mutually_exclusive_group(required=True)
    effect.add_argument("--allow", action="store_true", help="allow the tools or models it selects")
    effect.add_argument(
        "--deny", action="store_true", help="deny the tools or models it selects (deny wins over allow)"
    )
    padd.add_argument("--api", action="append", default=[], help="API name glob (repeatable; default: every API)")
    padd.add_argument("--tool", action="append", default=[], help="tool name glob (repeatable; default: every tool)")
    padd.add_argument("--tag", action="append", default=[], help="operation tag (repeatable; default: any tag)")
    padd.add_argument("--method", action="append", default=[], help="HTTP method (repeatable; default: any)")
    padd.add_argument(
        "--model", action="append", default=[], help="model name glob, e.g. 'gpt-4o*' (repeatable; default: none)"
    )
    ro = padd.add_mutually_exclusive_group()
    ro.add_argument(
        "--read-only", dest="read_only", action="store_true", default=None, help="only tools that change nothing"
    )
    ro.add_argument("--writes", dest="read_only", action="store_false", help="only tools that change something")
    padd.add_argument("--description", help="a note shown in listings (default: none)")
    add_json(padd)
    plist = leaf(group, "list", _command(_policy_list), "list policies")
    premove = leaf(group, "remove", _command(_policy_remove), "delete a policy")
    premove.add_argument("policy_id", type=_policy_id, help="the policy's id (see `mcp-gateway policies list`)")
    leaves += [padd, plist, premove]

    for p in (listing, show, keys_list, plist):
        add_json(p)
    for p in leaves:
        add_common(p)
