"""The console's catalog pages: APIs and their tools (register from a spec URL or an uploaded
spec, remove), and models with their deployments' health. Registering goes through the same
Registry calls as the admin API; nothing here ingests or stores by itself."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, describe_errors
from mcp_gateway.openapi.load import UPLOAD_SCHEME
from mcp_gateway.registry import RegistrationError
from mcp_gateway.server.admin import summary
from mcp_gateway.server.admin_models import model_json
from mcp_gateway.ui.app import Console, Context
from mcp_gateway.ui.forms import MAX_SPEC_FORM, field
from mcp_gateway.ui.render import SECURITY_HEADERS

NOTES = {"registered": "The API is registered and served.", "removed": "The API was removed."}


def routes(console: Console) -> list[Route]:
    """/ui/apis, /ui/apis/{name}, /ui/models."""
    registry = console.services.registry
    models = console.services.models

    def api_rows() -> list[dict[str, Any]]:
        snapshot = registry.catalog.snapshot
        return [
            {
                "name": name,
                "origin": entry.origin,
                "spec": entry.config.spec,
                "title": entry.ingest.title,
                "base_url": entry.ingest.base_url,
                "tools": len(entry.ingest.tools),
                "warnings": len(entry.ingest.issues),
            }
            for name, entry in sorted(snapshot.apis.items())
        ]

    def listing(request: Request, ctx: Context, status: int = 200, **values: Any) -> Response:
        note = NOTES.get(request.query_params.get("done", ""))
        failures = [{"name": f.api, "error": f.error} for f in registry.failures.values()]
        values.setdefault("error", None)
        values.setdefault("form", {})
        return console.render(
            request, ctx, "apis.html", status, apis=api_rows(), failures=failures, note=note, **values
        )

    async def apis(request: Request, ctx: Context) -> Response:
        return listing(request, ctx)

    async def register(request: Request, ctx: Context) -> Response:
        form = ctx.form
        name, url, text = field(form, "name"), field(form, "spec_url"), field(form, "spec_content")
        if name is None or (url is None) == (text is None):
            return listing(request, ctx, 400, error="Give a name, and either a spec URL or a spec file.", form=form)
        payload: dict[str, Any] = {"name": name, "spec": url or f"{UPLOAD_SCHEME}:{name}"}
        for optional in ("base_url", "prefix"):
            if (value := field(form, optional)) is not None:
                payload[optional] = value
        try:
            config = ApiConfig.model_validate(payload)
            await registry.register(config, text, replace=False)
        except ValidationError as exc:
            return listing(request, ctx, 400, error=f"invalid API registration: {describe_errors(exc)}", form=form)
        except RegistrationError as exc:
            return listing(request, ctx, exc.status, error=str(exc), form=form)
        return RedirectResponse(f"/ui/apis/{name}?done=registered", status_code=303, headers=SECURITY_HEADERS)

    async def remove(request: Request, ctx: Context) -> Response:
        name = request.path_params["name"]
        try:
            gone = await registry.unregister(name)
        except RegistrationError as exc:
            return listing(request, ctx, exc.status, error=str(exc))
        if not gone:
            return listing(request, ctx, 404, error=f"no API named {name!r}")
        return RedirectResponse("/ui/apis?done=removed", status_code=303, headers=SECURITY_HEADERS)

    async def api(request: Request, ctx: Context) -> Response:
        name = request.path_params["name"]
        snapshot = registry.catalog.snapshot
        entry = snapshot.apis.get(name)
        if entry is None:
            failure = registry.failures.get(name)
            return console.render(request, ctx, "api.html", 404, name=name, api=None, tools=[],
                                  failure=failure.error if failure else None, note=None)  # fmt: skip
        served = {t.name: t for t in snapshot.ordered if t.api == name}
        tools = [t.public() for t in served.values()]
        return console.render(
            request, ctx, "api.html", name=name, api=summary(entry.ingest), origin=entry.origin, tools=tools,
            failure=None, note=NOTES.get(request.query_params.get("done", "")),
        )  # fmt: skip

    async def model_list(request: Request, ctx: Context) -> Response:
        found = [model_json(models, served) for served in models.served.values()]
        return console.render(request, ctx, "models.html", models=found, shadowed=models.shadowed)

    return [
        Route("/apis", console.get(apis), methods=["GET"]),
        Route("/apis", console.post(register, MAX_SPEC_FORM), methods=["POST"]),
        Route("/apis/{name}", console.get(api), methods=["GET"]),
        Route("/apis/{name}/remove", console.post(remove), methods=["POST"]),
        Route("/models", console.get(model_list), methods=["GET"]),
    ]
