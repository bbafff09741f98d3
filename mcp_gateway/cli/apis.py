"""`mcp-gateway apis add|list|show|remove|validate|drift`: APIs registered at run time, spec previews,
and where served APIs drift from their specs.

Registrations live in the store; a running gateway picks them up within one store poll.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcp_gateway.cli.common import (
    CommandError,
    add_common,
    add_json,
    config_of,
    iso,
    leaf,
    plural,
    print_fields,
    print_json,
    print_table,
    setup_logging,
)
from mcp_gateway.cli.serve import api_name_for, spec_location
from mcp_gateway.config import (
    ApiConfig,
    ConfigError,
    GatewayConfig,
    ToolFilter,
    describe_errors,
    public_api_config,
    registration_secret_problems,
)
from mcp_gateway.openapi.tools import IngestResult, ingest_api
from mcp_gateway.store.database import Database
from mcp_gateway.store.drift import DriftStore

if TYPE_CHECKING:
    from mcp_gateway.openapi.strict import StrictReport
from mcp_gateway.store.registrations import Registration, RegistrationStore


def _api_from_args(args: argparse.Namespace, name: str) -> ApiConfig:
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
            name=name,
            spec=spec_location(args.spec),
            base_url=args.base_url,
            prefix=args.prefix,
            filter=filt,
            credentials=credentials,
            allow_unauthenticated=bool(getattr(args, "allow_unauthenticated", False)),
        )
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    problems = registration_secret_problems(api)
    if problems:
        raise ConfigError("; ".join(problems))
    return api


def _print_summary(result: IngestResult) -> None:
    listing = json.dumps([t.public() for t in result.tools], separators=(",", ":"))
    kind = "Swagger" if result.spec_version == "2.0" else "OpenAPI"
    print(f"{result.title} {result.version} ({kind} {result.spec_version}) from {result.source}")
    print(f"base URL: {result.base_url or '(none: set --base-url)'}")
    print(
        f"tools: {len(result.tools)} ({result.skipped_by_filter} filtered out), tools/list size: {len(listing)} bytes"
    )
    for tool in result.tools:
        size = len(json.dumps(tool.public(), separators=(",", ":")))
        print(f"  {tool.name:<48} {tool.operation.method:<7} {tool.operation.path}  ({size} bytes)")
    for issue in result.issues:
        print(f"warning: {issue}")


class _Store:
    """The registration store of the configured database, opened for one command."""

    def __init__(self, config: GatewayConfig) -> None:
        self.db = Database(config.database)
        self.registrations = RegistrationStore(self.db)

    def __enter__(self) -> RegistrationStore:
        return self.registrations

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _config(args: argparse.Namespace, not_in_file: str | None = None) -> GatewayConfig:
    """The config; `not_in_file`: an API name this command changes, which the config file must not define."""
    config = config_of(args)
    setup_logging("warning")
    if not_in_file is not None and any(a.name == not_in_file for a in config.apis):
        raise CommandError(f"API {not_in_file!r} is defined in the config file; change it there", 2)
    return config


def _print_strict(report: StrictReport) -> None:
    if report.ok:
        print(f"spec: valid {report.standard} (openapi-spec-validator)")
        return
    count = f"{report.total}{'+' if report.total_capped else ''}"
    print(f"spec errors ({report.standard}, openapi-spec-validator): {count}")
    for problem in report.problems:
        print(f"  {problem.pointer or '(document)'}: {problem.message}")
    if report.total > len(report.problems):
        print(f"  ... and {report.total - len(report.problems)}{'+' if report.total_capped else ''} more")


def cmd_validate(args: argparse.Namespace) -> int:
    """Print what a spec would become, without registering it; with --strict, also every way the
    document breaks the OpenAPI / Swagger specification (exit status 1 when it does)."""
    _config(args)
    api = _api_from_args(args, args.name or api_name_for(args.spec))
    if not args.strict:
        result = ingest_api(api)
        if args.json:
            print_json([t.public() for t in result.tools])
        else:
            _print_summary(result)
        return 0
    from mcp_gateway.openapi.strict import validate_strictly  # (openapi-spec-validator: slow to import)

    checked = validate_strictly(api)
    if args.json:
        tools = [t.public() for t in checked.result.tools] if checked.result is not None else None
        print_json({"strict": checked.report.public(), "tools": tools})
    else:
        if checked.result is not None:
            _print_summary(checked.result)
        _print_strict(checked.report)
    if checked.error is not None:
        raise checked.error  # the spec cannot be served at all: an `error:` line, status 2
    return 0 if checked.report.ok else 1


def cmd_add(args: argparse.Namespace) -> int:
    """Register an API (refusing to replace one unless --replace)."""
    config = _config(args, not_in_file=args.name)
    api = _api_from_args(args, args.name)
    with _Store(config) as store:
        existing = store.get(api.name)
        if existing is not None and not args.replace:
            raise CommandError(
                f"an API named {api.name!r} is already registered (spec {existing.config.spec}): "
                "add --replace to replace it, or choose another name",
                2,
            )
        result = ingest_api(api)  # refuse to store a spec that does not load
        replaced = store.put(api)
    print(f"{'replaced' if replaced else 'registered'} {api.name}: {len(result.tools)} tools")
    for issue in result.issues:
        print(f"warning: {issue}")
    return 0


def _rows(config: GatewayConfig, registrations: list[Registration]) -> list[dict[str, Any]]:
    rows = [{"origin": "config", **public_api_config(api)} for api in config.apis]
    for reg in registrations:
        if reg.config.name in {api.name for api in config.apis}:
            continue  # shadowed by the config file, which wins
        data = public_api_config(reg.config)
        rows.append({"origin": "registered", **data, "created_at": reg.created_at, "updated_at": reg.updated_at})
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    """The config file's APIs and the registered ones."""
    config = _config(args)
    with _Store(config) as store:
        rows = _rows(config, store.list())
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["name", "origin", "spec", "base url", "prefix", "updated"],
        [
            (r["name"], r["origin"], r["spec"], r.get("base_url"), r.get("prefix"), iso(r.get("updated_at")))
            for r in rows
        ],
        empty="no APIs (register one with `mcp-gateway apis add NAME SPEC`)",
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """One API's configuration (plain-text secrets masked)."""
    config = _config(args)
    with _Store(config) as store:
        found = [r for r in _rows(config, store.list()) if r["name"] == args.name]
    if not found:
        raise CommandError(f"no API named {args.name!r} (see `mcp-gateway apis list`)")
    row = found[0]
    if args.json:
        print_json(row)
        return 0
    shown = {"name", "origin", "spec", "base_url", "prefix", "created_at", "updated_at"}
    fields: list[tuple[str, Any]] = [
        ("name", row["name"]),
        ("origin", row["origin"]),
        ("spec", row["spec"]),
        ("base url", row.get("base_url") or "(the spec's servers)"),
        ("prefix", row.get("prefix")),
    ]
    fields += [(key.replace("_", " "), json.dumps(value)) for key, value in row.items() if key not in shown]
    if row["origin"] == "registered":
        fields += [("registered", iso(row["created_at"])), ("updated", iso(row["updated_at"]))]
    print_fields(fields)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Unregister an API."""
    config = _config(args, not_in_file=args.name)
    with _Store(config) as store:
        existing = store.get(args.name)
        if existing is None or not store.delete(args.name):
            raise CommandError(f"no registered API named {args.name!r} (see `mcp-gateway apis list`)")
    print(f"removed API {args.name} (spec {existing.config.spec})")
    return 0


def _print_drift(report: dict[str, Any]) -> None:
    tools = report["tools"]
    checked = sum(t["checked"] for t in tools)
    every = report.get("drift_sample_seconds")
    if report.get("drift_check") is False:
        how = "drift_check is off for this API"
    elif every is not None:
        how = f"each tool's first response, then at most one every {every:g} s" if every else "every response"
    else:
        how = "the API is in neither this config nor the registrations"
    print(f"drift of {report['api']}: {plural(checked, 'response')} checked ({how})")
    rows = [
        (t["tool"], f["status"], f["kind"], f["path"], f["message"], f["count"], iso(f["last_seen"]))
        for t in tools
        for f in t["findings"]
    ]
    print_table(
        ["tool", "status", "kind", "where", "problem", "count", "last seen"],
        rows,
        empty="no drift found" if checked else "no response checked yet (tools are sampled as they are called)",
    )
    clean = [f"{t['tool']} ({t['checked']})" for t in tools if t["checked"] and not t["findings"]]
    if clean and rows:
        print(f"matching the spec: {', '.join(clean)}")
    dropped = sum(t["dropped"] for t in tools)
    if dropped:
        print(f"not checked: {plural(dropped, 'sampled response')} dropped while the checking queue was full")


def cmd_drift(args: argparse.Namespace) -> int:
    """Where sampled upstream responses of an API did not match its spec (recorded by running gateways)."""
    config = _config(args)
    db = Database(config.database)
    try:
        drift = DriftStore(db)
        known = {api.name: api for api in config.apis}
        registration = RegistrationStore(db).get(args.name)
        if registration is not None:
            known.setdefault(args.name, registration.config)
        if args.clear:
            if not drift.clear(args.name) and args.name not in known:
                raise CommandError(f"no API named {args.name!r} (see `mcp-gateway apis list`)")
            print(f"cleared the drift findings of {args.name}")
            return 0
        tools = drift.report(args.name)
    finally:
        db.close()
    api = known.get(args.name)
    if api is None and not tools:
        raise CommandError(f"no API named {args.name!r} (see `mcp-gateway apis list`)")
    report: dict[str, Any] = {"api": args.name}
    if api is not None:
        report.update(drift_check=api.drift_check, drift_sample_seconds=api.drift_sample_seconds)
    report["tools"] = [t.public() for t in tools]
    if args.json:
        print_json(report)
    else:
        _print_drift(report)
    return 0


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", metavar="URL", help="send calls here instead of the spec's servers (default: those)")
    p.add_argument("--prefix", help="prefix for tool names, PREFIX_name (default: none)")
    p.add_argument("--include-tag", action="append", metavar="TAG", help="keep operations with this tag (default: all)")
    p.add_argument(
        "--exclude-tag", action="append", metavar="TAG", help="drop operations with this tag (default: none)"
    )
    p.add_argument(
        "--include-operation", action="append", metavar="GLOB", help="operationId or tool name glob (default: all)"
    )
    p.add_argument(
        "--exclude-operation",
        action="append",
        metavar="GLOB",
        help="operationId or tool name glob to drop (default: none)",
    )
    p.add_argument("--include-path", action="append", metavar="GLOB", help="path glob, e.g. '/pets*' (default: all)")
    p.add_argument("--exclude-path", action="append", metavar="GLOB", help="path glob to drop (default: none)")
    p.add_argument("--method", action="append", help="keep only these HTTP methods (repeatable; default: all)")
    p.add_argument(
        "--credential",
        action="append",
        metavar="SCHEME=JSON",
        help="bind a security scheme (or *) to a credential naming vault secrets, e.g. "
        """'*={"type":"bearer","token":"secret:github-token"}' (repeatable; default: none)""",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="send operations that no configured credential covers without one (default: refuse them)",
    )


def add_parsers(sub: Any) -> None:
    """The `apis` command group."""
    apis = sub.add_parser("apis", help="manage registered APIs", description="Manage APIs registered at run time.")
    group = apis.add_subparsers(dest="apis_command", required=True, metavar="COMMAND")
    add = leaf(group, "add", cmd_add, "register an API from a spec file or URL")
    add.add_argument("name", help="the API's name (letters, digits, _ and -)")
    add.add_argument("spec", help="path or URL of its OpenAPI or Swagger document")
    add.add_argument("--replace", action="store_true", help="replace a registration of that name (default: refuse)")
    _add_filters(add)
    listing = leaf(group, "list", cmd_list, "list the config file's and the registered APIs")
    add_json(listing)
    show = leaf(group, "show", cmd_show, "show one API's configuration")
    show.add_argument("name", help="the API's name")
    add_json(show)
    remove = leaf(group, "remove", cmd_remove, "unregister an API")
    remove.add_argument("name", help="the API's name")
    val = leaf(group, "validate", cmd_validate, "print what a spec would become, without registering it")
    val.add_argument("spec", help="path or URL of an OpenAPI or Swagger document")
    val.add_argument("--name", help="the API name used for tool names (default: from the spec's file name)")
    val.add_argument(
        "--json",
        action="store_true",
        help="print the tool definitions as JSON; with --strict, an object of the tools and the spec errors "
        "(default: a summary)",
    )
    val.add_argument(
        "--strict",
        action="store_true",
        help="also check the document against the OpenAPI / Swagger specification (openapi-spec-validator) and "
        "list every error with its JSON pointer; exit status 1 when there are any (default: only what ingest "
        "reports, which serves specs with small faults)",
    )
    _add_filters(val)
    drift = leaf(
        group, "drift", cmd_drift, "show where an API's responses no longer match its spec",
        description="Show where sampled upstream responses of an API did not match its spec: per tool, the "
        "status code, a JSON path into the body (or a header name) and what was wrong, never a response value. "
        "Running gateways check the responses and record what they find in the store (drift_check, "
        "drift_sample_seconds in the API's config).",
    )  # fmt: skip
    drift.add_argument("name", help="the API's name")
    drift.add_argument("--clear", action="store_true", help="forget what was found so far (e.g. after fixing the spec)")
    add_json(drift)
    for p in (add, listing, show, remove, val, drift):
        add_common(p)
