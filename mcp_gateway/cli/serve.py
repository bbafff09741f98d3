"""`mcp-gateway serve` (Streamable HTTP) and `mcp-gateway stdio`: the front doors."""

from __future__ import annotations

import argparse
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from mcp_gateway.cli.common import CommandError, add_common, config_of, config_path, leaf, setup_logging
from mcp_gateway.config import ApiConfig, ConfigError, GatewayConfig
from mcp_gateway.server.runner import EXIT_UNSERVABLE

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")
logger = logging.getLogger("mcp_gateway")


def bundled_specs_dir() -> Path | None:
    """`./openapi_specs` when there is one, else the example specs shipped in the package."""
    local = Path.cwd() / "openapi_specs"
    if local.is_dir():
        return local
    shipped = Path(str(resources.files("mcp_gateway") / "openapi_specs"))
    return shipped if shipped.is_dir() else None


def api_name_for(spec: str) -> str:
    """An API name from a spec path or URL: `openapi_specs/petstore.yaml` -> `petstore`."""
    last = urlsplit(spec).path.rstrip("/").rsplit("/", 1)[-1] if "://" in spec else Path(spec).name
    stem = last.rsplit(".", 1)[0] if "." in last else last
    return _NAME_BAD.sub("-", stem).strip("-_")[:64] or "api"


def spec_location(spec: str) -> str:
    """A URL as given; a path made absolute (a registration outlives the working directory)."""
    return spec if "://" in spec else str(Path(spec).expanduser().resolve())


def _spec_apis(specs: list[str], base_url: str | None, *, anonymous: bool) -> list[ApiConfig]:
    if base_url and len(specs) != 1:
        raise ConfigError("--base-url needs exactly one --spec")
    apis: list[ApiConfig] = []
    taken: set[str] = set()
    for spec in specs:
        name, n = api_name_for(spec), 2
        while name in taken:
            name, n = f"{api_name_for(spec)}-{n}", n + 1
        taken.add(name)
        apis.append(ApiConfig(name=name, spec=spec_location(spec), base_url=base_url, allow_unauthenticated=anonymous))
    return apis


def build_config(args: argparse.Namespace) -> GatewayConfig:
    """Config file + env, then the quick-start flags; bundled specs when nothing else is given."""
    config = config_of(args)
    updates: dict[str, Any] = {}
    if getattr(args, "log_level", None):
        updates["log_level"] = args.log_level
    specs = getattr(args, "spec", None) or []
    anonymous = bool(getattr(args, "allow_unauthenticated", False))
    if specs:
        updates["apis"] = [*config.apis, *_spec_apis(specs, args.base_url, anonymous=anonymous)]
    elif getattr(args, "base_url", None):
        raise ConfigError("--base-url needs exactly one --spec")
    elif config_path(args) is None:
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


def _ready_line(config: GatewayConfig, url: str, workers: int) -> str:
    extra = f", {workers} workers" if workers > 1 else ""
    admin = "on" if config.admin_token else "off"
    return f"ready: MCP at {url} (admin API {admin}, access control {'on' if config.auth.enabled else 'off'}{extra})"


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve MCP over Streamable HTTP until SIGINT/SIGTERM."""
    from mcp_gateway.gateway import Gateway
    from mcp_gateway.server.runner import bind, bound_url, serve
    from mcp_gateway.server.workers import run_workers

    config = build_config(args)
    config.check_data_dir()
    setup_logging(config.log_level, config.log_payloads, config.log_format)
    workers = args.workers or 1
    if workers > 1 and not config.server.stateless:
        raise ConfigError("--workers needs stateless mode: MCP sessions live in one process (drop --stateful)")
    host, port = config.server.host, config.server.port
    if workers > 1:
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/mcp"
        return run_workers(
            config.model_dump_json(),
            host,
            port,
            workers,
            lambda: logger.info("%s", _ready_line(config, url, workers)),
            metrics=config.metrics.enabled,
        )
    sock = bind(host, port)
    gateway = Gateway(config, own_process=True)
    url = bound_url(sock)
    return serve(gateway.http_app(), sock, gateway.unservable, lambda: logger.info("%s", _ready_line(config, url, 1)))


def cmd_stdio(args: argparse.Namespace) -> int:
    """Serve MCP over stdin/stdout until the client closes it."""
    from mcp.server.stdio import stdio_server

    from mcp_gateway.gateway import Gateway

    config = build_config(args)
    config.check_data_dir()
    setup_logging(config.log_level, config.log_payloads, config.log_format)
    if args.server is not None and args.server not in {v.name for v in config.servers}:
        raise ConfigError(f"no virtual server named {args.server!r} in the config")

    async def run() -> None:
        gateway = Gateway(config, own_process=True)
        try:
            await gateway.start()
            problem = gateway.unservable()
            if problem is not None:
                raise CommandError(problem, EXIT_UNSERVABLE)
            await gateway.run_as_local_consumer()
            async with anyio.create_task_group() as tg:
                tg.start_soon(gateway.background)
                async with stdio_server() as (read, write):
                    server = gateway.mcp.server if args.server is None else gateway.virtual[args.server].server
                    await server.run(read, write, server.create_initialization_options())
                tg.cancel_scope.cancel()
        finally:
            gateway.mcp.close()
            await gateway.aclose()

    anyio.run(run)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the gateway that this config describes answers /healthz (a container's health check)."""
    import httpx2

    config = config_of(args)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.server.host, config.server.host)
    path = "/readyz" if args.ready else "/healthz"
    url = f"http://{f'[{host}]' if ':' in host else host}:{config.server.port}{path}"
    try:
        answer = httpx2.get(url, timeout=args.timeout, trust_env=False)
    except httpx2.HTTPError as exc:
        raise CommandError(f"{url}: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise CommandError(f"{url}: HTTP {answer.status_code}")
    print(f"{url}: ok")
    return 0


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {text!r}")
    return int(text)


def at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more: {text!r}")
    return int(text)


def add_parsers(sub: Any) -> None:
    """`serve` and `stdio`."""
    serve = leaf(
        sub, "serve", cmd_serve, "serve MCP over Streamable HTTP",
        description="Serve MCP over Streamable HTTP at /mcp. With no --spec and no --config, the example "
        "specs in ./openapi_specs (or those shipped with the package) are served.",
    )  # fmt: skip
    stdio = leaf(sub, "stdio", cmd_stdio, "serve MCP over stdio (Claude Desktop and other local clients)")
    for p in (serve, stdio):
        add_common(p)
        p.add_argument(
            "--spec", action="append", metavar="PATH|URL", help="serve this spec (repeatable; default: none)"
        )
        p.add_argument("--base-url", metavar="URL", help="override the servers of the single --spec (default: its own)")
        p.add_argument(
            "--allow-unauthenticated",
            action="store_true",
            help="send the --spec APIs' operations that no configured credential covers without one, for APIs "
            "that also serve anonymous callers (default: refuse them with a tool error)",
        )
        p.add_argument(
            "--log-level", choices=["debug", "info", "warning", "error"], help="(default: the config's, else info)"
        )
    health = leaf(
        sub, "health", cmd_health, "check that the configured gateway answers (for container health checks)",
        description="Exit 0 when the gateway at the configured server.host/server.port (config file, "
        "MCP_GATEWAY_HOST/MCP_GATEWAY_PORT) answers /healthz, 1 otherwise.",
    )  # fmt: skip
    add_common(health)
    health.add_argument("--ready", action="store_true", help="check /readyz instead (default: /healthz)")
    health.add_argument("--timeout", type=float, default=4.0, help="seconds to wait (default: 4)")
    stdio.add_argument("--server", metavar="NAME", help="serve this virtual server of the config (default: all tools)")
    serve.add_argument("--host", metavar="ADDR", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, help="port to listen on, 1-65535 (default: 8080)")
    serve.add_argument(
        "--workers", type=at_least_one, metavar="N", help="worker processes, stateless only (default: 1)"
    )
    serve.add_argument("--stateful", action="store_true", help="MCP sessions (default: stateless)")
    serve.add_argument("--json-response", action="store_true", help="JSON instead of SSE responses (default: SSE)")
    serve.add_argument(
        "--allowed-host", action="append", metavar="HOST", help="accepted Host header (repeatable; default: loopback)"
    )
    serve.add_argument(
        "--allowed-origin", action="append", metavar="ORIGIN", help="accepted Origin (repeatable; default: loopback)"
    )


__all__ = ["add_parsers", "api_name_for", "build_config", "bundled_specs_dir", "spec_location"]
