"""`mcp-gateway secrets ...`: store, list and remove upstream credentials; rotate the master key.
`mcp-gateway connections ...`: consumers' own upstream accounts (per-user OAuth), list and remove.

A value is read from stdin (piped) or typed at a hidden prompt, never taken from
the command line, where it would land in shell history and in `ps` output. No
command prints a stored value.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

from mcp_gateway.cli.common import (
    CommandError,
    add_common,
    add_json,
    config_of,
    iso,
    leaf,
    plural,
    print_json,
    print_table,
    setup_logging,
)
from mcp_gateway.store.connections import ConnectionStore
from mcp_gateway.store.database import Database
from mcp_gateway.vault import MAX_SECRET_BYTES, InvalidSecret, Vault, VaultError, encode_key, generate_key


def read_value() -> str:
    """The secret value: stdin when piped (minus one trailing newline), else a prompt typed twice."""
    if not sys.stdin.isatty():
        value = sys.stdin.read(MAX_SECRET_BYTES + 3)
        if value.endswith("\n"):
            value = value[:-2] if value.endswith("\r\n") else value[:-1]
        return value
    value = getpass.getpass("value: ")
    if getpass.getpass("again: ") != value:
        raise InvalidSecret("the two values differ")
    return value


def _vault_command(body: Callable[[argparse.Namespace, Vault], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = config_of(args)
        setup_logging("warning")
        db = Database(config.database)
        try:
            return body(args, Vault.open(db, config.data_dir))
        except VaultError as exc:
            raise CommandError(str(exc)) from None
        finally:
            db.close()

    run.__doc__ = body.__doc__
    return run


def _set(args: argparse.Namespace, vault: Vault) -> int:
    """Store or replace a secret."""
    value = read_value()
    if not value:
        raise CommandError("empty value refused")
    info, created = vault.put(args.name, value, args.description)
    print(f"{'stored' if created else 'replaced'} secret {info.name} (master key {info.key_id})")
    return 0


def _list(args: argparse.Namespace, vault: Vault) -> int:
    """Secrets, never their values."""
    infos = vault.list()
    if args.json:
        print_json([i.public() for i in infos])
        return 0
    print_table(
        ["name", "updated", "master key", "description"],
        [(i.name, iso(i.updated_at), i.key_id or "? (unreadable)", i.description) for i in infos],
        empty="no secrets (store one with `mcp-gateway secrets set NAME`)",
    )
    return 0


def _remove(args: argparse.Namespace, vault: Vault) -> int:
    """Delete a secret."""
    if not vault.remove(args.name):
        raise CommandError(f"no secret named {args.name!r}")
    print(f"removed secret {args.name}")
    return 0


def _rotate(args: argparse.Namespace, vault: Vault) -> int:
    """Re-encrypt every sealed value under the first master key."""
    count = vault.rotate_master()
    keyring = vault.keyring()
    print(f"re-encrypted {plural(count, 'value')} under master key {keyring.key_id}")
    if not keyring.from_file:
        print("once every gateway runs with the new key first, remove the old ones from MCP_GATEWAY_MASTER_KEY")
    elif args.drop_old:
        dropped = vault.drop_old_keys()
        print(f"dropped {plural(dropped, 'old master key')}")
    elif len(keyring.key_ids) > 1:
        print("old keys stay in the key file until `secrets rotate-master --drop-old`")
    return 0


def _generate_key(args: argparse.Namespace) -> int:
    """Print a new master key."""
    print(encode_key(generate_key()))
    return 0


def _connections_list(args: argparse.Namespace, vault: Vault) -> int:
    """Consumers' connected accounts, never their tokens."""
    rows = ConnectionStore(vault.store.db, vault).list(args.consumer)
    if args.json:
        print_json([c.public() for c in rows])
        return 0
    print_table(
        ["consumer", "api", "connected", "token expires", "scope"],
        [(c.consumer, c.api, iso(c.created_at), iso(c.expires_at), c.scope) for c in rows],
        empty="no connections",
    )
    return 0


def _connections_remove(args: argparse.Namespace, vault: Vault) -> int:
    """Forget a consumer's tokens for an API."""
    if not ConnectionStore(vault.store.db, vault).delete(args.consumer, args.api):
        raise CommandError(f"{args.consumer} has no connection to {args.api}")
    print(f"removed {args.consumer}'s connection to {args.api} (its tokens are deleted)")
    return 0


def add_parsers(sub: Any) -> None:
    """The `secrets` and `connections` command groups."""
    secrets = sub.add_parser(
        "secrets", help="manage upstream credentials (encrypted at rest)",
        description="Manage upstream credentials, sealed in the gateway's database under the master key.",
    )  # fmt: skip
    group = secrets.add_subparsers(dest="secrets_command", required=True, metavar="COMMAND")
    put = leaf(
        group, "set", _vault_command(_set), "store a secret (value from stdin, or a hidden prompt)",
        description="Store or replace a secret. The value is read from stdin when it is piped "
        "(one trailing newline is dropped), otherwise typed twice at a hidden prompt.",
    )  # fmt: skip
    put.add_argument("name", help="the secret's name, referred to as secret:NAME")
    put.add_argument("--description", help="a note shown in listings (default: none)")
    listing = leaf(group, "list", _vault_command(_list), "list secrets (never their values)")
    add_json(listing)
    remove = leaf(group, "remove", _vault_command(_remove), "delete a secret")
    remove.add_argument("name", help="the secret's name")
    rotate = leaf(group, "rotate-master", _vault_command(_rotate), "re-encrypt every secret under a new master key")
    rotate.add_argument(
        "--drop-old", action="store_true", help="then remove master keys nothing uses any more (default: keep them)"
    )
    generate = leaf(group, "generate-key", _generate_key, "print a new master key (for MCP_GATEWAY_MASTER_KEY)")
    leaves = [put, listing, remove, rotate, generate]

    connections = sub.add_parser(
        "connections", help="consumers' connected upstream accounts",
        description="Consumers' own upstream accounts (per-user OAuth).",
    )  # fmt: skip
    group = connections.add_subparsers(dest="secrets_command", required=True, metavar="COMMAND")
    clist = leaf(group, "list", _vault_command(_connections_list), "list connections (never their tokens)")
    clist.add_argument("--consumer", help="only this consumer's connections (default: everyone's)")
    add_json(clist)
    cremove = leaf(
        group, "remove", _vault_command(_connections_remove),
        "forget a consumer's tokens for an API (the admin API also revokes them at the provider)",
    )  # fmt: skip
    cremove.add_argument("consumer", help="the consumer's name")
    cremove.add_argument("api", help="the API's name")
    for p in (*leaves, clist, cremove):
        add_common(p)
