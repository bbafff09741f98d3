"""The `mcp-gateway` command: serve, stdio, `apis add|list|remove|show|validate`, access and secrets."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from pydantic import ValidationError

from mcp_gateway import __version__, cli_access, cli_secrets
from mcp_gateway.config import (
    ApiConfig,
    ConfigError,
    GatewayConfig,
    ToolFilter,
    describe_errors,
    load_config,
    public_api_config,
    registration_secret_problems,
)
from mcp_gateway.definitions import SpecError
from mcp_gateway.logs import hide_payloads
from mcp_gateway.openapi.tools import IngestResult, ingest_api

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def bundled_specs_dir() -> Path | None:
    """`./openapi_specs`, else the one beside the package (a source checkout)."""
    for candidate in (Path.cwd() / "openapi_specs", Path(__file__).resolve().parent.parent / "openapi_specs"):
        if candidate.is_dir():
            return candidate
    return None


def api_name_for(spec: str) -> str:
    """An API name from a spec path or URL: `openapi_specs/petstore.yaml` -> `petstore`."""
    last = urlsplit(spec).path.rstrip("/").rsplit("/", 1)[-1] if "://" in spec else Path(spec).name
    stem = last.rsplit(".", 1)[0] if "." in last else last
    return _NAME_BAD.sub("-", stem).strip("-_")[:64] or "api"


def _spec_apis(specs: list[str], base_url: str | None, *, anonymous: bool = False) -> list[ApiConfig]:
    if base_url and len(specs) != 1:
        raise ConfigError("--base-url needs exactly one --spec")
    apis: list[ApiConfig] = []
    taken: set[str] = set()
    for spec in specs:
        name, n = api_name_for(spec), 2
        while name in taken:
            name, n = f"{api_name_for(spec)}-{n}", n + 1
        taken.add(name)
        location = spec if "://" in spec else str(Path(spec).expanduser().resolve())
        apis.append(ApiConfig(name=name, spec=location, base_url=base_url, allow_unauthenticated=anonymous))
    return apis


def build_config(args: argparse.Namespace) -> GatewayConfig:
    """Config file + env, then the quick-start flags; bundled specs when nothing else is given."""
    config = load_config(Path(args.config) if args.config else None)
    updates: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        updates["data_dir"] = Path(args.data_dir)
    if getattr(args, "log_level", None):
        updates["log_level"] = args.log_level
    specs = getattr(args, "spec", None) or []
    if specs:
        updates["apis"] = [*config.apis, *_spec_apis(specs, args.base_url)]
    elif getattr(args, "base_url", None):
        raise ConfigError("--base-url needs exactly one --spec")
    elif not args.config:
        folder = bundled_specs_dir()
        if folder is not None:
            files = sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES)
            # The bundled examples' public servers answer anonymous callers too (the Petstore demo
            # declares keys it does not check), so the quick start can call every tool.
            updates["apis"] = _spec_apis([str(p) for p in files], None, anonymous=True)
    server = config.server.model_copy(
        update={
            k: v
            for k, v in {
                "host": getattr(args, "host", None),
                "port": getattr(args, "port", None),
                "allowed_hosts": getattr(args, "allowed_host", None),
                "allowed_origins": getattr(args, "allowed_origin", None),
            }.items()
            if v is not None
        }
    )
    if getattr(args, "stateful", False):
        server = server.model_copy(update={"stateless": False})
    if getattr(args, "json_response", False):
        server = server.model_copy(update={"json_response": True})
    updates["server"] = server
    return GatewayConfig.model_validate({**config.model_dump(), **updates})


def setup_logging(level: str, log_payloads: bool = False) -> None:
    """Logs go to stderr only: on stdio, stdout is the MCP channel. Never payloads, unless asked."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    hide_payloads(log_payloads)
    # The SDK and HTTP client log every request at INFO; keep them at WARNING unless debugging.
    if level != "debug":
        for noisy in ("httpx2", "httpcore", "mcp", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# -- serve / stdio ----------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mcp_gateway.gateway import Gateway
    from mcp_gateway.workers import run_workers

    config = build_config(args)
    setup_logging(config.log_level, config.log_payloads)
    workers = args.workers or 1
    if workers > 1 and not config.server.stateless:
        raise ConfigError("--workers needs stateless mode: MCP sessions live in one process")
    logging.getLogger("mcp_gateway").info(
        "MCP endpoint: http://%s:%d/mcp (admin API %s, %d worker%s)",
        config.server.host, config.server.port, "on" if config.admin_token else "off", workers,
        "" if workers == 1 else "s",
    )  # fmt: skip
    options: dict[str, Any] = {"log_config": None, "lifespan": "on", "timeout_graceful_shutdown": 5}
    if workers == 1:
        uvicorn.run(Gateway(config).http_app(), host=config.server.host, port=config.server.port, **options)
    else:
        run_workers(config.model_dump_json(), config.server.host, config.server.port, workers, options)
    return 0


def cmd_stdio(args: argparse.Namespace) -> int:
    from mcp.server.stdio import stdio_server

    from mcp_gateway.gateway import Gateway

    config = build_config(args)
    setup_logging(config.log_level, config.log_payloads)
    if args.server is not None and args.server not in {v.name for v in config.servers}:
        raise ConfigError(f"no virtual server named {args.server!r} in the config")

    async def run() -> None:
        gateway = Gateway(config)
        try:
            await gateway.start()
            await gateway.run_as_local_consumer()
            async with anyio.create_task_group() as tg:
                tg.start_soon(gateway.watch_store)
                async with stdio_server() as (read, write):
                    server = gateway.mcp.server if args.server is None else gateway.virtual[args.server].server
                    await server.run(read, write, server.create_initialization_options())
                tg.cancel_scope.cancel()
        finally:
            gateway.mcp.close()
            await gateway.aclose()

    anyio.run(run)
    return 0


# -- apis ---------------------------------------------------------------------------


def _api_from_args(args: argparse.Namespace, name: str) -> ApiConfig:
    spec = args.spec if "://" in args.spec else str(Path(args.spec).expanduser().resolve())
    filt = ToolFilter(
        include_tags=args.include_tag or [],
        exclude_tags=args.exclude_tag or [],
        include_operations=args.include_operation or [],
        exclude_operations=args.exclude_operation or [],
        include_paths=args.include_path or [],
        exclude_paths=args.exclude_path or [],
        methods=args.method or [],
    )
    credentials: dict[str, Any] = {}
    for binding in args.credential or []:
        scheme, sep, text = binding.partition("=")
        if not sep or not scheme:
            raise ConfigError(f'--credential takes SCHEME=JSON, e.g. \'*={{"type":"bearer",...}}\': {scheme!r}')
        try:
            credentials[scheme] = json.loads(text)
        except ValueError:
            raise ConfigError(f"--credential {scheme}=...: the credential is not JSON") from None
    try:
        api = ApiConfig(
            name=name, spec=spec, base_url=args.base_url, prefix=args.prefix, filter=filt, credentials=credentials
        )
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    problems = registration_secret_problems(api)
    if problems:
        raise ConfigError("; ".join(problems))
    return api


def _print_summary(result: IngestResult) -> None:
    listing = json.dumps([t.public() for t in result.tools], separators=(",", ":"))
    print(f"{result.title} {result.version} ({'Swagger' if result.spec_version == '2.0' else 'OpenAPI'} "
          f"{result.spec_version}) from {result.source}")  # fmt: skip
    print(f"base URL: {result.base_url or '(none: set --base-url)'}")
    print(
        f"tools: {len(result.tools)} ({result.skipped_by_filter} filtered out), tools/list size: {len(listing)} bytes"
    )
    for tool in result.tools:
        size = len(json.dumps(tool.public(), separators=(",", ":")))
        print(f"  {tool.name:<48} {tool.operation.method:<7} {tool.operation.path}  ({size} bytes)")
    for issue in result.issues:
        print(f"warning: {issue}")


def cmd_apis(args: argparse.Namespace) -> int:
    from mcp_gateway.store.database import Database
    from mcp_gateway.store.registrations import RegistrationStore

    config = load_config(Path(args.config) if args.config else None)
    if args.data_dir:
        config = config.model_copy(update={"data_dir": Path(args.data_dir)})
    setup_logging("warning")

    if args.apis_command == "validate":
        api = _api_from_args(args, args.name or api_name_for(args.spec))
        result = ingest_api(api)
        if args.json:
            print(json.dumps([t.public() for t in result.tools], indent=2))
        else:
            _print_summary(result)
        return 0

    db = Database(config.database_path)
    store = RegistrationStore(db)
    try:
        if args.apis_command == "add":
            if any(a.name == args.name for a in config.apis):
                raise ConfigError(f"API {args.name!r} is defined in the config file")
            api = _api_from_args(args, args.name)
            result = ingest_api(api)  # refuse to store a spec that does not load
            replaced = store.put(api)
            print(f"{'replaced' if replaced else 'registered'} {api.name}: {len(result.tools)} tools")
            for issue in result.issues:
                print(f"warning: {issue}")
        elif args.apis_command == "list":
            rows = store.list()
            if args.json:
                print(json.dumps([public_api_config(r.config) for r in rows], indent=2))
            for reg in [] if args.json else rows:
                print(f"{reg.config.name:<24} {reg.config.spec}")
            if not rows and not args.json:
                print("no registered APIs")
        elif args.apis_command == "show":
            reg = store.get(args.name)
            if reg is None:
                print(f"no registered API named {args.name!r}", file=sys.stderr)
                return 1
            print(json.dumps(public_api_config(reg.config), indent=2))
        elif args.apis_command == "remove":
            if not store.delete(args.name):
                print(f"no registered API named {args.name!r}", file=sys.stderr)
                return 1
            print(f"removed {args.name}")
    finally:
        db.close()
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    """consumers / keys / policies / secrets / connections: commands on the store."""
    config = load_config(Path(args.config) if args.config else None)
    if args.data_dir:
        config = config.model_copy(update={"data_dir": Path(args.data_dir)})
    setup_logging("warning")
    return (cli_secrets if args.command in ("secrets", "connections") else cli_access).run(args, config)


# -- argument parsing -----------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="gateway.yaml (default: none)")
    p.add_argument("--data-dir", help="where state (SQLite) lives")


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="override the spec's servers")
    p.add_argument("--prefix", help="prefix for tool names (PREFIX_name)")
    p.add_argument("--include-tag", action="append")
    p.add_argument("--exclude-tag", action="append")
    p.add_argument("--include-operation", action="append", help="operationId or tool name glob")
    p.add_argument("--exclude-operation", action="append")
    p.add_argument("--include-path", action="append", help="path glob, e.g. '/pets*'")
    p.add_argument("--exclude-path", action="append")
    p.add_argument("--method", action="append", help="keep only these HTTP methods")
    p.add_argument(
        "--credential",
        action="append",
        metavar="SCHEME=JSON",
        help="bind a security scheme (or *) to a credential naming vault secrets, e.g. "
        """'*={"type":"bearer","token":"secret:github-token"}' (repeatable)""",
    )


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    root = argparse.ArgumentParser(prog="mcp-gateway", description="REST APIs (OpenAPI) as MCP tools.")
    root.add_argument("--version", action="version", version=f"mcp-gateway {__version__}")
    sub = root.add_subparsers(dest="command", required=True)

    for name, help_text in (("serve", "serve MCP over Streamable HTTP"), ("stdio", "serve MCP over stdio")):
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        p.add_argument("--spec", action="append", help="spec path or URL (repeatable)")
        p.add_argument("--base-url", help="override the servers of the single --spec")
        p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        if name == "stdio":
            p.add_argument("--server", help="serve this virtual server (from the config's servers) instead")
        if name == "serve":
            p.add_argument("--host")
            p.add_argument("--port", type=int)
            p.add_argument("--stateful", action="store_true", help="MCP sessions (default: stateless)")
            p.add_argument("--workers", type=int, help="worker processes (stateless mode only; default 1)")
            p.add_argument("--json-response", action="store_true", help="JSON instead of SSE responses")
            p.add_argument("--allowed-host", action="append", help="accepted Host header (repeatable)")
            p.add_argument("--allowed-origin", action="append", help="accepted Origin (repeatable)")

    apis = sub.add_parser("apis", help="manage registered APIs").add_subparsers(dest="apis_command", required=True)
    add = apis.add_parser("add", help="register (or replace) an API")
    add.add_argument("name")
    add.add_argument("spec")
    _add_filters(add)
    lst = apis.add_parser("list", help="list registered APIs")
    lst.add_argument("--json", action="store_true")
    apis.add_parser("show", help="show one registration").add_argument("name")
    apis.add_parser("remove", help="unregister an API").add_argument("name")
    val = apis.add_parser("validate", help="print what a spec would become, without registering")
    val.add_argument("spec")
    val.add_argument("--name")
    val.add_argument("--json", action="store_true", help="print the tool definitions as JSON")
    _add_filters(val)
    for p in (add, lst, val, *(apis.choices[c] for c in ("show", "remove"))):
        _add_common(p)
    cli_access.add_parsers(sub, _add_common)
    cli_secrets.add_parsers(sub, _add_common)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcp-gateway` command."""
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "stdio":
            return cmd_stdio(args)
        if args.command in ("consumers", "keys", "policies", "secrets", "connections"):
            return cmd_store(args)
        return cmd_apis(args)
    except (ConfigError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
