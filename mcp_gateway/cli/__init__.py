"""The `mcp-gateway` command: a module per command group.

`serve`/`stdio` (serve.py), `apis` (apis.py), `models` (models.py), `consumers`/`keys`/`policies`
(access.py), `secrets`/`connections` (secrets.py), `db` (db.py), `usage` (usage.py), `limits`
(limits.py), `budgets` (budgets.py; rules.py holds what limits and budgets share). Ordinary
mistakes (a bad flag, a missing file, a busy port, an unusable data dir) are one `error:` line
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from mcp_gateway import __version__
from mcp_gateway.cli import access, apis, budgets, db, limits, models, secrets, serve, usage
from mcp_gateway.cli.common import CommandError
from mcp_gateway.cli.serve import build_config
from mcp_gateway.config import ConfigError
from mcp_gateway.definitions import SpecError
from mcp_gateway.server.runner import ServeError
from mcp_gateway.store.database import StoreError


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    root = argparse.ArgumentParser(prog="mcp-gateway", description="REST APIs (OpenAPI) as MCP tools.")
    root.add_argument("--version", action="version", version=f"mcp-gateway {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parsers(sub)
    apis.add_parsers(sub)
    models.add_parsers(sub)
    access.add_parsers(sub)
    secrets.add_parsers(sub)
    db.add_parsers(sub)
    usage.add_parsers(sub)
    limits.add_parsers(sub)
    budgets.add_parsers(sub)
    return root


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv`; an unknown flag is reported with the usage of the command it was given to."""
    root = parser()
    args, extra = root.parse_known_args(argv)
    if extra:
        getattr(args, "command_parser", root).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcp-gateway` command."""
    args = parse(argv)
    try:
        return int(args.handler(args))
    except (ConfigError, SpecError, ServeError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except OSError as exc:
        # A file or folder the command needed: named, without a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["build_config", "main", "parser"]
