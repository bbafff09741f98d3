"""`mcp-gateway models add|list|show|remove|test`: models registered at run time, and a probe of
their deployments.

Registrations live in the store; a running gateway picks them up within one store poll. Health
(calls, errors, cool-down, latency) lives in the gateway process: `list` and `show` read it from
a running gateway's admin API when given its URL (`--url` or `$MCP_GATEWAY_URL`, with the admin
token of the config or `$MCP_GATEWAY_ADMIN_TOKEN`); otherwise they show the configuration only.
`test` sends its requests from this process, with the gateway's provider classes and vault.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, get_args

import anyio
import httpx2
from pydantic import ValidationError

from mcp_gateway.cli.common import (
    CommandError,
    add_common,
    add_json,
    config_of,
    iso,
    leaf,
    print_fields,
    print_json,
    print_table,
    setup_logging,
)
from mcp_gateway.config import ConfigError, GatewayConfig, describe_errors
from mcp_gateway.config.models import ModelConfig, Provider, Strategy
from mcp_gateway.llm.probe import PROBE_TIMEOUT, ProbeResult, probe_model
from mcp_gateway.llm.registrations import public_model, registration_problems
from mcp_gateway.store.database import Database
from mcp_gateway.store.models import ModelStore
from mcp_gateway.vault import Vault

URL_ENV = "MCP_GATEWAY_URL"
PROVIDERS: tuple[str, ...] = get_args(Provider)
NO_MODELS = (
    "no models (register one with `mcp-gateway models add NAME --provider openai --api-key-secret NAME`; "
    "with none configured or registered, a gateway serves the providers whose keys are in its environment)"
)


class _Opened:
    """The configured database, its model store and its vault, for one command."""

    def __init__(self, args: argparse.Namespace, not_in_file: str | None = None) -> None:
        self.config = config_of(args)
        setup_logging("warning")
        if not_in_file is not None and any(m.name == not_in_file for m in self.config.models):
            raise CommandError(f"model {not_in_file!r} is defined in the config file; change it there", 2)
        self.db = Database(self.config.database)
        self.store = ModelStore(self.db)
        self.vault = Vault.open(self.db, self.config.data_dir)

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _rows(config: GatewayConfig, store: ModelStore) -> list[dict[str, Any]]:
    """The config file's models, then the registered ones it does not shadow (what a gateway serves)."""
    rows = [{"name": m.name, "origin": "config", "config": public_model(m), "model": m} for m in config.models]
    taken = {m.name for m in config.models}
    for reg in store.list():
        if reg.config.name not in taken:
            rows.append({"name": reg.config.name, "origin": "registered", "config": public_model(reg.config),
                         "model": reg.config, "created_at": reg.created_at, "updated_at": reg.updated_at})  # fmt: skip
    return rows


def _labels(model: ModelConfig) -> str:
    return ", ".join(d.label(model.name) for d in model.deployments)


# -- add and remove ---------------------------------------------------------------------------------------


def _deployments(args: argparse.Namespace) -> list[dict[str, Any]]:
    single = {"provider": args.provider, "model": args.model, "base_url": args.base_url,
              "api_version": args.api_version}  # fmt: skip
    given = {k: v for k, v in single.items() if v is not None}
    if args.api_key_secret:
        given["api_key"] = f"secret:{args.api_key_secret}"
    if args.deployment and given:
        raise CommandError("give --deployment JSON (repeatable), or --provider and its flags, not both", 2)
    if given:
        if "provider" not in given:
            raise CommandError(f"--provider is required (one of: {', '.join(PROVIDERS)})", 2)
        return [given]
    if not args.deployment:
        raise CommandError("a model needs a deployment: --provider ... or --deployment JSON", 2)
    out = []
    for text in args.deployment:
        try:
            value = json.loads(text)
        except ValueError:
            raise CommandError('--deployment takes a JSON object, e.g. \'{"provider": "openai", ...}\'', 2) from None
        if not isinstance(value, dict):
            raise CommandError("--deployment takes a JSON object", 2)
        out.append(value)
    return out


def _model_from_args(args: argparse.Namespace) -> ModelConfig:
    data: dict[str, Any] = {"name": args.name, "deployments": _deployments(args)}
    options = {"strategy": args.strategy, "retries": args.retries, "total_timeout": args.total_timeout,
               "cooldown_seconds": args.cooldown, "fallbacks": args.fallback,
               "context_window_fallbacks": args.context_window_fallback,
               "content_policy_fallbacks": args.content_policy_fallback,
               "drop_params": args.drop_params or None, "default_max_tokens": args.default_max_tokens}  # fmt: skip
    data.update({k: v for k, v in options.items() if v is not None})
    try:
        model = ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    problems = registration_problems(model)
    if problems:
        raise ConfigError("; ".join(problems))
    return model


def cmd_add(args: argparse.Namespace) -> int:
    """Register a model (refusing to replace one unless --replace)."""
    model = _model_from_args(args)
    with _Opened(args, not_in_file=model.name) as opened:
        existing = opened.store.get(model.name)
        if existing is not None and not args.replace:
            raise CommandError(
                f"a model named {model.name!r} is already registered ({_labels(existing.config)}): "
                "add --replace to replace it, or choose another name",
                2,
            )
        named = {getattr(d, f)[len("secret:") :] for d in model.deployments for f in d.SECRET_FIELDS if getattr(d, f)}
        missing = sorted(name for name in named if opened.vault.info(name) is None)
        replaced = opened.store.put(model)
    print(f"{'replaced' if replaced else 'registered'} model {model.name}: {_labels(model)}")
    for name in missing:
        print(
            f"warning: no secret named {name!r} in the vault yet (store it with `mcp-gateway secrets set {name}`)",
            file=sys.stderr,
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Unregister a model."""
    with _Opened(args, not_in_file=args.name) as opened:
        gone = opened.store.delete(args.name)
    if gone is None:
        raise CommandError(f"no registered model named {args.name!r} (see `mcp-gateway models list`)")
    print(f"removed model {args.name} ({_labels(gone.config)})")
    return 0


# -- list and show -----------------------------------------------------------------------------------------


def _from_gateway(args: argparse.Namespace, config: GatewayConfig, path: str) -> Any:
    """GET `path` from a running gateway's admin API; None when no gateway URL is given."""
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        return None
    if not config.admin_token:
        raise CommandError("reading a gateway's health needs its admin token: set MCP_GATEWAY_ADMIN_TOKEN", 2)
    try:
        answer = httpx2.get(
            url.rstrip("/") + path, headers={"Authorization": f"Bearer {config.admin_token}"}, timeout=10
        )
    except httpx2.HTTPError as exc:
        raise CommandError(f"cannot reach the gateway at {url}: {exc}") from None
    if answer.status_code == 404 and path != "/admin/models":
        raise CommandError(f"the gateway at {url} serves no model named {args.name!r}")
    if answer.status_code != 200:
        raise CommandError(f"the gateway at {url} answered {answer.status_code} to GET {path}")
    return answer.json()


def _health_rows(models: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for model in models:
        for d in model["deployments"]:
            h = d["health"]
            latency = f"{h['latency_ms']:g} ms" if h["latency_ms"] is not None else None
            cooling = f"{h['cooling_for_seconds']:g} s" if h["cooling_for_seconds"] else None
            rows.append((model["name"], model["origin"], d["deployment"], h["calls"], h["errors"], h["in_flight"],
                         latency, cooling, h["last_error"]))  # fmt: skip
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    """The config file's and the registered models; with a gateway's URL, what it serves and how each
    deployment fares."""
    with _Opened(args) as opened:
        served = _from_gateway(args, opened.config, "/admin/models")
        rows = _rows(opened.config, opened.store) if served is None else []
    if served is not None:
        if args.json:
            print_json(served["models"])
            return 0
        print_table(
            ["model", "origin", "deployment", "calls", "errors", "in flight", "latency", "cooling", "last error"],
            _health_rows(served["models"]),
            empty="the gateway serves no models",
        )
        return 0
    if args.json:
        print_json([{k: v for k, v in r.items() if k != "model"} for r in rows])
        return 0
    print_table(
        ["name", "origin", "strategy", "deployments", "updated"],
        [(r["name"], r["origin"], r["model"].strategy, _labels(r["model"]), iso(r.get("updated_at"))) for r in rows],
        empty=NO_MODELS,
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """One model's configuration; with a gateway's URL, its deployments' health too."""
    with _Opened(args) as opened:
        served = _from_gateway(args, opened.config, f"/admin/models/{args.name}")
        found = [r for r in _rows(opened.config, opened.store) if r["name"] == args.name]
    if served is None and not found:
        raise CommandError(f"no model named {args.name!r} (see `mcp-gateway models list`)")
    row = served or {k: v for k, v in found[0].items() if k != "model"}
    if args.json:
        print_json(row)
        return 0
    config = row["config"]
    fields: list[tuple[str, Any]] = [("name", row["name"]), ("origin", row["origin"])]
    fields += [(k.replace("_", " "), v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()
               if k not in ("name", "deployments")]  # fmt: skip
    if row["origin"] == "registered":
        fields += [("registered", iso(row.get("created_at"))), ("updated", iso(row.get("updated_at")))]
    health = [d["health"] for d in row["deployments"]] if served else []
    for index, deployment in enumerate(config["deployments"]):
        fields.append((f"deployment {index + 1}", json.dumps(deployment)))
        if index < len(health):
            fields.append(("  health", json.dumps(health[index])))
    print_fields(fields)
    return 0


# -- test ---------------------------------------------------------------------------------------------


def _targets(rows: list[dict[str, Any]], name: str | None) -> list[tuple[ModelConfig, str | None]]:
    """(model, the name to ask it for) of what `test` probes."""
    if name is None:
        return [(r["model"], None) for r in rows]
    exact = [r["model"] for r in rows if r["name"] == name]
    if exact:
        return [(exact[0], None)]
    serving = next((r["model"] for r in rows if r["model"].matches(name)), None)
    if serving is None:
        raise CommandError(f"no model named {name!r}, nor one whose name matches it (see `mcp-gateway models list`)")
    return [(serving, name)]


def _print_results(results: list[ProbeResult]) -> None:
    rows = []
    for r in results:
        outcome = "ok" if r.ok else "skipped" if r.failure == "skipped" else "failed"
        how = f"HTTP {r.status}" if r.status is not None else None if r.failure == "skipped" else r.failure
        latency = f"{r.latency_ms:g} ms" if r.latency_ms is not None else None
        rows.append((r.model, r.deployment, outcome, how, latency, r.message))
    print_table(["model", "deployment", "result", "status", "latency", "message"], rows, empty=NO_MODELS)


def cmd_test(args: argparse.Namespace) -> int:
    """Send a 1-token request to each deployment of each model (or of one); exit status 1 if one failed."""
    with _Opened(args) as opened:
        targets = _targets(_rows(opened.config, opened.store), args.name)
        if not targets:
            raise CommandError(NO_MODELS)
        user_agent = opened.config.user_agent

        async def run() -> list[ProbeResult]:
            found: list[ProbeResult] = []
            for model, ask in targets:
                found += await probe_model(model, opened.vault.resolve, user_agent, ask=ask, timeout=args.timeout)
            return found

        results = anyio.run(run)
    if args.json:
        print_json([r.public() for r in results])
    else:
        _print_results(results)
    failed = [r for r in results if not r.ok and r.failure != "skipped"]
    if failed:
        print(f"{len(failed)} of {len(results)} deployments failed", file=sys.stderr)
    return 1 if failed else 0


# -- parsers ---------------------------------------------------------------------------------------------


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--deployment",
        action="append",
        metavar="JSON",
        help="""a deployment as JSON, e.g. '{"provider": "openai", "model": "gpt-4o", """
        """"api_key": "secret:openai-key"}' (repeatable, in priority order; default: the one the --provider flags """
        "describe)",
    )
    p.add_argument(
        "--provider",
        choices=["openai", "azure", "anthropic", "gemini"],
        help="one deployment's provider; vertex and bedrock take --deployment JSON (default: none)",
    )
    p.add_argument("--model", help="the provider's model id (Azure: the deployment name) (default: the model's name)")
    p.add_argument("--base-url", metavar="URL", help="the provider's endpoint (default: its public one)")
    p.add_argument(
        "--api-key-secret", metavar="SECRET", help="the vault secret holding the provider's key (default: no key)"
    )
    p.add_argument(
        "--api-version", help="Azure's api-version or Anthropic's anthropic-version (default: the provider's)"
    )
    p.add_argument(
        "--strategy",
        choices=get_args(Strategy),
        help="how a request picks among the deployments (default: priority)",
    )
    p.add_argument(
        "--retries", type=int, metavar="N", help="more attempts after the first, on any deployment (default: 2)"
    )
    p.add_argument(
        "--total-timeout", type=float, metavar="SECONDS", help="for all attempts of a request (default: 900)"
    )
    p.add_argument(
        "--cooldown", type=float, metavar="SECONDS", help="how long a deployment that keeps failing rests (default: 30)"
    )
    p.add_argument(
        "--fallback",
        action="append",
        metavar="MODEL",
        help="a model to try when every attempt failed (repeatable; default: none)",
    )
    p.add_argument(
        "--context-window-fallback",
        action="append",
        metavar="MODEL",
        help="a model to try when the prompt is too long (repeatable; default: none)",
    )
    p.add_argument(
        "--content-policy-fallback",
        action="append",
        metavar="MODEL",
        help="a model to try when a provider refuses the content (repeatable; default: none)",
    )
    p.add_argument(
        "--drop-params",
        action="store_true",
        help="drop request fields a provider's format cannot carry instead of answering 400 (default: 400)",
    )
    p.add_argument(
        "--default-max-tokens",
        type=int,
        metavar="N",
        help="max_tokens sent where a provider needs one and the client gave none (default: 4096)",
    )


def _add_url(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help=f"a running gateway's base URL, to show its deployments' health from its admin API (default: ${URL_ENV}, "
        "else the configuration only)",
    )


def add_parsers(sub: Any) -> None:
    """The `models` command group."""
    models = sub.add_parser(
        "models", help="manage registered models", description="Manage models registered at run time (served at /v1)."
    )
    group = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    add = leaf(group, "add", cmd_add, "register a model and its deployments")
    add.add_argument("name", help="the name clients send as `model` (a glob such as 'claude-*' matches many)")
    add.add_argument("--replace", action="store_true", help="replace a registration of that name (default: refuse)")
    _add_options(add)
    listing = leaf(group, "list", cmd_list, "list the config file's and the registered models")
    _add_url(listing)
    add_json(listing)
    show = leaf(group, "show", cmd_show, "show one model's configuration (and health, with --url)")
    show.add_argument("name", help="the model's name")
    _add_url(show)
    add_json(show)
    remove = leaf(group, "remove", cmd_remove, "unregister a model")
    remove.add_argument("name", help="the model's name")
    test = leaf(
        group, "test", cmd_test, "send a 1-token request to each deployment and print how it answered",
        description="Send a 1-token chat (OpenAI, Azure) or messages (Anthropic) request to each deployment of each "
        "model, or of one, from this machine with the keys in the vault; print per deployment ok or failed, the HTTP "
        "status or the failure, and the latency. Exit status 1 when a deployment failed.",
    )  # fmt: skip
    test.add_argument(
        "name",
        nargs="?",
        help="a model's name, or a name a glob model serves (then asked for by that name) (default: every model)",
    )
    test.add_argument(
        "--timeout", type=float, default=PROBE_TIMEOUT, metavar="SECONDS",
        help=f"the longest wait for one deployment (default: {PROBE_TIMEOUT:g})",
    )  # fmt: skip
    add_json(test)
    for p in (add, listing, show, remove, test):
        add_common(p)
