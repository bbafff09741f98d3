"""The admin HTTP API under `/admin`: register, replace, list, show, remove and validate APIs;
consumers, keys and policies (admin_identities); secrets (admin_secrets).

Guarded by its own bearer token (`admin_token`), compared in constant time; it
is not mounted at all when no admin token is configured.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.auth.apikeys import AuthFailure
from mcp_gateway.auth.connections import Connections
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.catalog import ApiEntry, Snapshot
from mcp_gateway.config import ApiConfig, describe_errors, public_api_config
from mcp_gateway.definitions import SpecError
from mcp_gateway.llm.registrations import ModelRegistrationError
from mcp_gateway.openapi.load import UPLOAD_SCHEME
from mcp_gateway.openapi.tools import IngestResult
from mcp_gateway.registry import RegistrationError, Registry, ingest_in_thread
from mcp_gateway.server.admin_identities import AdminInputError, identity_endpoints
from mcp_gateway.server.admin_secrets import secret_endpoints
from mcp_gateway.store.drift import DriftStore, ToolDrift
from mcp_gateway.vault import Vault

MAX_ADMIN_BODY = 50 * 1024 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def summary(result: IngestResult) -> dict[str, Any]:
    """What ingest made of a spec, for people: counts, sizes, warnings."""
    listing = json.dumps([t.public() for t in result.tools], separators=(",", ":"))
    return {
        "title": result.title,
        "version": result.version,
        "spec_version": result.spec_version,
        "source": result.source,
        "base_url": result.base_url,
        "tool_count": len(result.tools),
        "tools_list_bytes": len(listing),
        "skipped_by_filter": result.skipped_by_filter,
        "tools": [t.name for t in result.tools],
        "warnings": [str(i) for i in result.issues],
    }


def _entry_json(entry: ApiEntry, snapshot: Snapshot | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": entry.name,
        "origin": entry.origin,
        "spec": entry.config.spec,
        "prefix": entry.config.prefix,
        "base_url": entry.ingest.base_url,
        "title": entry.ingest.title,
        "tool_count": len(entry.ingest.tools),
    }
    if snapshot is not None:
        out.update(summary(entry.ingest))
        out["config"] = public_api_config(entry.config)
        # Names as served: a name another API already serves gets a suffix here.
        served = [t.name for t in snapshot.ordered if t.api == entry.name]
        renamed = sorted(set(served) - set(out["tools"]))
        out["tools"] = served
        if renamed:
            out["warnings"].append(f"tool names taken by other APIs, served with a suffix: {', '.join(renamed)}")
    return out


def drift_report(name: str, entry: ApiEntry | None, tools: list[ToolDrift]) -> dict[str, Any]:
    """An API's drift report as JSON (the admin API's and `apis drift --json`'s form)."""
    out: dict[str, Any] = {"api": name, "served": entry is not None}
    if entry is not None:
        out["drift_check"] = entry.config.drift_check
        out["drift_sample_seconds"] = entry.config.drift_sample_seconds
    out["tools"] = [t.public() for t in tools]
    return out


async def _read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_ADMIN_BODY:
        raise RegistrationError(f"request body larger than {MAX_ADMIN_BODY} bytes", 413)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_ADMIN_BODY:
            raise RegistrationError(f"request body larger than {MAX_ADMIN_BODY} bytes", 413)
    try:
        return json.loads(body or b"{}")
    except ValueError as exc:
        raise RegistrationError(f"request body is not JSON: {exc}", 400) from None


def _parse_registration(payload: Any, name: str | None) -> tuple[ApiConfig, str | None]:
    if not isinstance(payload, dict):
        raise RegistrationError("request body must be a JSON object", 400)
    payload = dict(payload)
    spec_text = payload.pop("spec_content", None)
    if spec_text is not None and not isinstance(spec_text, str):
        raise RegistrationError("spec_content must be a string (the YAML or JSON text of the spec)", 400)
    if name is not None and payload.setdefault("name", name) != name:
        raise RegistrationError("the name in the body differs from the name in the URL", 400)
    if spec_text is not None:
        payload["spec"] = f"{UPLOAD_SCHEME}:{payload.get('name', 'api')}"
    try:
        return ApiConfig.model_validate(payload), spec_text
    except ValidationError as exc:
        raise RegistrationError(f"invalid API registration: {describe_errors(exc)}", 422) from None


def admin_guard(token: str, access: AccessControl | None) -> Callable[[Endpoint], Endpoint]:
    """Wraps an admin endpoint: the admin bearer token or 401 (a consumer's credential: 403), and
    refused registrations and bad input as JSON errors."""
    expected = token.encode()

    def bearer(request: Request) -> str | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return credential.strip() if scheme.lower() == "bearer" else None

    async def is_consumer_credential(credential: str) -> bool:
        if access is None:
            return False
        try:
            await access.authenticate(credential)
        except AuthFailure:
            return False
        return True

    def guarded(handler: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            credential = bearer(request)
            if credential is None or not hmac.compare_digest(credential.encode(), expected):
                if credential is not None and await is_consumer_credential(credential):
                    return _error(403, "consumer credentials cannot use the admin API")
                return JSONResponse(
                    {"error": "admin credential required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="mcp-gateway-admin"'},
                )
            try:
                return await handler(request)
            except (RegistrationError, ModelRegistrationError) as exc:
                return _error(exc.status, str(exc))
            except AdminInputError as exc:
                return _error(400, str(exc))

        return endpoint

    return guarded


def admin_routes(
    registry: Registry,
    token: str,
    access: AccessControl | None = None,
    key_grace: float = 86400.0,
    vault: Vault | None = None,
    connections: Connections | None = None,
    drift: DriftStore | None = None,
) -> list[Route]:
    """The `/admin` routes, each checking the admin bearer token (never a consumer credential).
    Without a `vault`, the `/admin/secrets` routes answer 501; `connections` adds
    `/admin/connections` (consumers' connected upstream accounts); `drift` adds
    `/admin/apis/{name}/drift` (where sampled responses did not match the spec)."""
    guarded = admin_guard(token, access)

    async def list_apis(request: Request) -> Response:
        snapshot = registry.catalog.snapshot
        return JSONResponse(
            {
                "apis": [_entry_json(snapshot.apis[n]) for n in sorted(snapshot.apis)],
                "failed": [{"name": f.api, "error": f.error} for f in registry.failures.values()],
            }
        )

    async def show_api(request: Request) -> Response:
        name = request.path_params["name"]
        entry = registry.catalog.snapshot.apis.get(name)
        if entry is None:
            failure = registry.failures.get(name)
            if failure is not None:
                return _error(503, failure.error, name=name)
            return _error(404, f"no API named {name!r}")
        return JSONResponse(_entry_json(entry, registry.catalog.snapshot))

    async def put_api(request: Request) -> Response:
        # PUT /apis/{name} creates or replaces; POST /apis creates, and refuses a name in use (409).
        name = request.path_params.get("name")
        config, spec_text = _parse_registration(await _read_json(request), name)
        entry, replaced = await registry.register(config, spec_text, replace=name is not None)
        return JSONResponse(_entry_json(entry, registry.catalog.snapshot), status_code=200 if replaced else 201)

    async def delete_api(request: Request) -> Response:
        if not await registry.unregister(request.path_params["name"]):
            return _error(404, f"no API named {request.path_params['name']!r}")
        return Response(status_code=204)

    async def validate(request: Request) -> Response:
        payload = await _read_json(request)
        strict = False
        if isinstance(payload, dict):
            payload.setdefault("name", "validate")
            strict = payload.pop("strict", False)
            if not isinstance(strict, bool):
                raise RegistrationError("strict must be true or false", 400)
        config, spec_text = _parse_registration(payload, None)
        try:
            if not strict:
                return JSONResponse(summary(await ingest_in_thread(config, spec_text)))
            from mcp_gateway.openapi.strict import validate_strictly  # (openapi-spec-validator: slow to import)

            checked = await anyio.to_thread.run_sync(lambda: validate_strictly(config, text=spec_text))
        except SpecError as exc:
            return _error(422, str(exc), source=exc.source, pointer=exc.pointer)
        if checked.error is not None:
            exc = checked.error
            return _error(422, str(exc), source=exc.source, pointer=exc.pointer, strict=checked.report.public())
        assert checked.result is not None
        return JSONResponse({**summary(checked.result), "strict": checked.report.public()})

    async def show_drift(request: Request) -> Response:
        assert drift is not None
        name = request.path_params["name"]
        tools = await anyio.to_thread.run_sync(drift.report, name)
        entry = registry.catalog.snapshot.apis.get(name)
        if entry is None and not tools:
            return _error(404, f"no API named {name!r}")
        return JSONResponse(drift_report(name, entry, tools))

    async def clear_drift(request: Request) -> Response:
        assert drift is not None
        name = request.path_params["name"]
        cleared = await anyio.to_thread.run_sync(drift.clear, name)
        if not cleared and name not in registry.catalog.snapshot.apis:
            return _error(404, f"no API named {name!r}")
        return Response(status_code=204)

    async def list_connections(request: Request) -> Response:
        assert connections is not None
        rows = await connections.list(request.query_params.get("consumer"))
        return JSONResponse({"connections": [c.public() for c in rows]})

    async def remove_connection(request: Request) -> Response:
        assert connections is not None
        consumer, api = request.path_params["consumer"], request.path_params["api"]
        if not await connections.disconnect(consumer, api):
            return _error(404, f"{consumer!r} has no connection to {api!r}")
        return Response(status_code=204)

    identity = identity_endpoints(access, key_grace) if access is not None else []
    if drift is not None:
        identity += [
            ("/apis/{name}/drift", show_drift, ["GET"]),
            ("/apis/{name}/drift", clear_drift, ["DELETE"]),
        ]
    if connections is not None:
        identity += [
            ("/connections", list_connections, ["GET"]),
            ("/connections/{consumer}/{api}", remove_connection, ["DELETE"]),
        ]
    return [
        *(Route(path, guarded(handler), methods=methods) for path, handler, methods in identity),
        *(Route(path, guarded(handler), methods=methods) for path, handler, methods in secret_endpoints(vault)),
        Route("/apis", guarded(list_apis), methods=["GET"]),
        Route("/apis", guarded(put_api), methods=["POST"]),
        Route("/apis/{name}", guarded(show_api), methods=["GET"]),
        Route("/apis/{name}", guarded(put_api), methods=["PUT"]),
        Route("/apis/{name}", guarded(delete_api), methods=["DELETE"]),
        Route("/validate", guarded(validate), methods=["POST"]),
    ]
