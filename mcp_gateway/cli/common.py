"""What every command group shares: common options, loading the config, output, durations."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mcp_gateway.config import ConfigError, GatewayConfig, load_config
from mcp_gateway.durations import DurationError, parse_duration
from mcp_gateway.logs import hide_payloads
from mcp_gateway.observe.batched_log import BatchedStreamHandler
from mcp_gateway.observe.json_log import JsonFormatter
from mcp_gateway.observe.text_log import TEXT_FORMAT, TextFormatter

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """An ordinary mistake or a missing thing: printed as one `error:` line, exit status `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def leaf(sub: Any, name: str, handler: Handler, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A command parser that runs `handler`; unknown flags are reported with its own usage."""
    description = kwargs.pop("description", None) or help_text[:1].upper() + help_text[1:] + "."
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description, **kwargs)
    parser.set_defaults(handler=handler, command_parser=parser)
    return parser


def add_common(parser: argparse.ArgumentParser) -> None:
    """`--config` and `--data-dir`, which every command takes."""
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="gateway.yaml to read (default: $MCP_GATEWAY_CONFIG, else none)"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where state lives (default: $MCP_GATEWAY_DATA_DIR, else ~/.local/share/mcp-gateway)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    """`--json`: machine-readable output instead of the table."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")


def duration(text: str) -> float:
    """An argparse type: `90`, `30m`, `12h`, `90d`, `2w` -> seconds."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def config_path(args: argparse.Namespace) -> Path | None:
    """`--config`, else `$MCP_GATEWAY_CONFIG` (containers mount a config and set it once)."""
    given = getattr(args, "config", None) or os.environ.get("MCP_GATEWAY_CONFIG")
    return Path(given).expanduser() if given else None


def config_of(args: argparse.Namespace) -> GatewayConfig:
    """The config file (if any) with the environment's overrides and `--data-dir`."""
    path = config_path(args)
    config = load_config(path)
    if getattr(args, "data_dir", None):
        config = config.model_copy(update={"data_dir": Path(args.data_dir).expanduser()})
    return config


def setup_logging(level: str, log_payloads: bool = False, log_format: str = "text") -> None:
    """Logs go to stderr only: on stdio, stdout is the MCP channel. Never payloads, unless asked.
    `log_format` json: one JSON object per line, for every logger."""
    # Lines written in batches (an access line per call): INFO at most 0.1 s late, WARNING at once.
    logging.basicConfig(
        handlers=[BatchedStreamHandler(sys.stderr)],
        level=getattr(logging, level.upper(), logging.INFO),
        format=TEXT_FORMAT,
    )
    # The stderr handler basicConfig installed (a test runner's capturing handlers are left alone).
    for handler in logging.getLogger().handlers:
        if type(handler) in (logging.StreamHandler, BatchedStreamHandler):
            handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    hide_payloads(log_payloads)
    # No format here prints where a log call was made: skip finding it for every record (the
    # logging HOWTO's "Optimization": an access line per call made it a cost per call).
    logging._srcfile = None
    # The SDK and HTTP client log every request at INFO; keep them at WARNING unless debugging.
    if level != "debug":
        for noisy in ("httpx2", "httpcore2", "mcp", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# -- output ----------------------------------------------------------------------------


def iso(timestamp: float | None) -> str:
    """An epoch time as ISO 8601 UTC to the second (`2026-11-29T22:16:31Z`); `-` for none."""
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def print_json(data: Any) -> None:
    """Pretty JSON on stdout."""
    print(json.dumps(data, indent=2))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> None:
    """Left-aligned columns under upper-case headers; `empty` when there are no rows."""
    cells = [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    if not cells:
        print(empty)
        return
    table = [[h.upper() for h in headers], *cells]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """`name: value` lines, aligned (a `show` command's readable form)."""
    width = max(len(name) for name, _ in fields) + 1
    for name, value in fields:
        print(f"{name + ':':<{width}} {'-' if value is None or value == '' else value}")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 key`, `2 keys`; `many` for irregular plurals (`policies`)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


__all__ = [
    "CommandError",
    "ConfigError",
    "Handler",
    "add_common",
    "add_json",
    "config_of",
    "duration",
    "iso",
    "leaf",
    "plural",
    "print_fields",
    "print_json",
    "print_table",
    "setup_logging",
]
