"""`mcp-gateway db upgrade|current`: the schema of the gateway's database.

Every command that opens the store (and `serve`, `stdio`) upgrades it first; `db upgrade` does
only that, for a deployment step that runs before the gateways start.
"""

from __future__ import annotations

import argparse
from typing import Any

from mcp_gateway.cli.common import add_common, add_json, config_of, leaf, print_json, setup_logging
from mcp_gateway.store.database import Database
from mcp_gateway.store.upgrade import head


def _open(args: argparse.Namespace) -> Database:
    setup_logging("warning")
    return Database(config_of(args).database, migrate=False)


def _upgrade(args: argparse.Namespace) -> int:
    """Apply the migrations the database lacks."""
    db = _open(args)
    try:
        before, after = db.upgrade()
    finally:
        db.close()
    if before == after:
        print(f"{db.display} is at revision {after}, the newest: nothing to do")
    else:
        print(f"upgraded {db.display} from revision {before or 'none'} to {after}")
    return 0


def _current(args: argparse.Namespace) -> int:
    """Print the database's revision."""
    db = _open(args)
    try:
        revision = db.current()
    finally:
        db.close()
    if args.json:
        print_json({"database": db.display, "revision": revision, "newest": head()})
    elif revision == head():
        print(f"{revision} (the newest)")
    else:
        print(f"{revision or 'none'} (the newest is {head()}: run `mcp-gateway db upgrade`)")
    return 0


def add_parsers(sub: Any) -> None:
    """The `db` command group."""
    db = sub.add_parser(
        "db", help="the gateway's database schema (migrations)",
        description="The schema of the gateway's database (database_url): versioned migrations.",
    )  # fmt: skip
    group = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = leaf(group, "upgrade", _upgrade, "apply the migrations the database lacks (serve does it at start too)")
    current = leaf(group, "current", _current, "print the database's schema revision")
    add_json(current)
    for p in (upgrade, current):
        add_common(p)
