"""`mcp-gateway secrets ...`: store, list and remove upstream credentials; rotate the master key.
`mcp-gateway connections ...`: consumers' own upstream accounts (per-user OAuth), list and remove.

A value is read from stdin (piped) or typed at a hidden prompt, never taken from
the command line, where it would land in shell history and in `ps` output. No
command prints a stored value.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from typing import Any

from mcp_gateway.config import GatewayConfig
from mcp_gateway.store.connections import ConnectionStore
from mcp_gateway.store.database import Database
from mcp_gateway.vault import MAX_SECRET_BYTES, InvalidSecret, Vault, VaultError, encode_key, generate_key


def add_parsers(sub: Any, common: Any) -> None:
    """Add the `secrets` command group to the root parser's subparsers."""
    secrets = sub.add_parser("secrets", help="manage upstream credentials (encrypted at rest)").add_subparsers(
        dest="secrets_command", required=True
    )
    put = secrets.add_parser(
        "set",
        help="store a secret (value from stdin, or a hidden prompt)",
        description="Store or replace a secret. The value is read from stdin when it is piped "
        "(one trailing newline is dropped), otherwise typed twice at a hidden prompt.",
    )
    put.add_argument("name")
    put.add_argument("--description")
    listing = secrets.add_parser("list", help="list secrets (never their values)")
    listing.add_argument("--json", action="store_true")
    secrets.add_parser("remove", help="delete a secret").add_argument("name")
    rotate = secrets.add_parser("rotate-master", help="re-encrypt every secret under a new master key")
    rotate.add_argument("--drop-old", action="store_true", help="then remove master keys nothing uses any more")
    secrets.add_parser("generate-key", help="print a new master key (for MCP_GATEWAY_MASTER_KEY)")
    for parser in secrets.choices.values():
        common(parser)

    connections = sub.add_parser("connections", help="consumers' connected upstream accounts").add_subparsers(
        dest="secrets_command", required=True
    )
    clist = connections.add_parser("list", help="list connections (never their tokens)")
    clist.add_argument("--consumer")
    clist.add_argument("--json", action="store_true")
    cremove = connections.add_parser(
        "remove", help="forget a consumer's tokens for an API (the admin API also revokes them at the provider)"
    )
    cremove.add_argument("consumer")
    cremove.add_argument("api")
    for parser in connections.choices.values():
        common(parser)


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


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace, config: GatewayConfig) -> int:
    """Carry out one `secrets` command."""
    if args.secrets_command == "generate-key":
        print(encode_key(generate_key()))
        return 0
    db = Database(config.database_path)
    try:
        if args.command == "connections":
            return _connections(args, ConnectionStore(db, Vault.open(db, config.data_dir)))
        return _run(args, Vault.open(db, config.data_dir))
    except VaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _connections(args: argparse.Namespace, store: ConnectionStore) -> int:
    if args.secrets_command == "list":
        rows = store.list(args.consumer)
        if args.json:
            print(json.dumps([c.public() for c in rows], indent=2))
        for c in [] if args.json else rows:
            expiry = _when(c.expires_at) if c.expires_at else "-"
            print(f"{c.consumer:<24} {c.api:<24} connected {_when(c.created_at)}  expires {expiry}")
        if not rows and not args.json:
            print("no connections")
        return 0
    if not store.delete(args.consumer, args.api):
        print(f"{args.consumer} has no connection to {args.api}", file=sys.stderr)
        return 1
    print(f"removed {args.consumer}'s connection to {args.api}")
    return 0


def _run(args: argparse.Namespace, vault: Vault) -> int:
    action = args.secrets_command
    if action == "set":
        value = read_value()
        if not value:
            print("error: empty value refused", file=sys.stderr)
            return 1
        info, created = vault.put(args.name, value, args.description)
        print(f"{'stored' if created else 'replaced'} secret {info.name} (master key {info.key_id})")
    elif action == "list":
        infos = vault.list()
        if args.json:
            print(json.dumps([i.public() for i in infos], indent=2))
        for info in [] if args.json else infos:
            line = f"{info.name:<32} {_when(info.updated_at)}  key {info.key_id or '?'}  {info.description or ''}"
            print(line.rstrip())
        if not infos and not args.json:
            print("no secrets")
    elif action == "remove":
        if not vault.remove(args.name):
            print(f"no secret named {args.name!r}", file=sys.stderr)
            return 1
        print(f"removed secret {args.name}")
    else:  # rotate-master
        count = vault.rotate_master()
        keyring = vault.keyring()
        print(f"re-encrypted {count} value{'' if count == 1 else 's'} under master key {keyring.key_id}")
        if not keyring.from_file:
            print("once every gateway runs with the new key first, remove the old ones from MCP_GATEWAY_MASTER_KEY")
        elif args.drop_old:
            dropped = vault.drop_old_keys()
            print(f"dropped {dropped} old master key{'' if dropped == 1 else 's'}")
        elif keyring.from_file and len(keyring.key_ids) > 1:
            print("old keys stay in the key file until `secrets rotate-master --drop-old`")
    return 0
