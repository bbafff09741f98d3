"""Admin endpoints for models (under `/admin/models`): list and show with each deployment's health,
register, replace, remove, and test one model's deployments from the gateway.

Answers carry configurations as `public_model` shows them (vault references as they are,
plain-text keys hidden) and health as the router saw it: calls, errors, calls in flight,
cool-down, latency, last error (already scrubbed of the provider's keys). Never a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.config import describe_errors
from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm.probe import PROBE_TIMEOUT, probe_model
from mcp_gateway.llm.providers import Resolve
from mcp_gateway.llm.registrations import ModelRegistrationError, ModelRegistry, ServedModel, public_model
from mcp_gateway.server.admin import Endpoint
from mcp_gateway.server.admin_identities import AdminInputError, read_json

MAX_BODY = 256 * 1024


def model_json(registry: ModelRegistry, served: ServedModel) -> dict[str, Any]:
    """A served model as the admin API shows it, with its deployments' health."""
    model = served.config
    targets = registry.router.targets.get(model.name, [])
    out: dict[str, Any] = {"name": model.name, "origin": served.origin}
    if served.origin == "registered":
        out.update(created_at=served.created_at, updated_at=served.updated_at)
    out["deployments"] = [
        {
            "deployment": t.deployment.label(model.name),
            "provider": t.deployment.provider,
            "model": t.deployment.model,
            "base_url": t.deployment.base_url,
            "health": t.health.public(),
        }
        for t in targets
    ]
    out["config"] = public_model(model)
    return out


def _parse(payload: dict[str, Any], name: str | None) -> ModelConfig:
    if name is not None and payload.setdefault("name", name) != name:
        raise AdminInputError("the name in the body differs from the name in the URL")
    try:
        return ModelConfig.model_validate(payload)
    except ValidationError as exc:
        raise ModelRegistrationError(f"invalid model: {describe_errors(exc)}") from None


def model_routes(
    registry: ModelRegistry,
    resolve: Resolve,
    user_agent: str,
    guard: Callable[[Endpoint], Endpoint],
    prefix: str = "/admin",
) -> list[Route]:
    """The `/admin/models` routes, each behind `guard` (the admin token check)."""

    def not_found(name: str) -> Response:
        return JSONResponse({"error": f"no model named {name!r}"}, status_code=404)

    async def list_models(request: Request) -> Response:
        return JSONResponse(
            {
                "models": [model_json(registry, s) for s in registry.served.values()],
                "shadowed": registry.shadowed,
            }
        )

    async def show_model(request: Request) -> Response:
        name = request.path_params["name"]
        served = registry.served.get(name)
        return not_found(name) if served is None else JSONResponse(model_json(registry, served))

    async def put_model(request: Request) -> Response:
        # PUT /models/{name} creates or replaces; POST /models creates, and refuses a name in use (409).
        name = request.path_params.get("name")
        config = _parse(await read_json(request, MAX_BODY), name)
        replaced = await registry.register(config, replace=name is not None)
        return JSONResponse(model_json(registry, registry.served[config.name]), status_code=200 if replaced else 201)

    async def delete_model(request: Request) -> Response:
        name = request.path_params["name"]
        return Response(status_code=204) if await registry.unregister(name) is not None else not_found(name)

    async def test_model(request: Request) -> Response:
        name = request.path_params["name"]
        served = registry.served.get(name)
        if served is None:
            return not_found(name)
        data = await read_json(request)
        ask, timeout = data.get("ask"), data.get("timeout", PROBE_TIMEOUT)
        if ask is not None and (not isinstance(ask, str) or not served.config.matches(ask)):
            raise AdminInputError(f"ask must be a model name that {name} serves")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 600:
            raise AdminInputError("timeout must be seconds, more than 0 and at most 600")
        results = await probe_model(served.config, resolve, user_agent, ask=ask, timeout=float(timeout))
        return JSONResponse({"model": name, "ok": all(r.ok for r in results), "results": [r.public() for r in results]})

    # Model names may hold slashes (`meta-llama/Llama-3.3-70B`): the test route is matched first.
    return [
        Route(f"{prefix}/models", guard(list_models), methods=["GET"]),
        Route(f"{prefix}/models", guard(put_model), methods=["POST"]),
        Route(prefix + "/models/{name:path}/test", guard(test_model), methods=["POST"]),
        Route(prefix + "/models/{name:path}", guard(show_model), methods=["GET"]),
        Route(prefix + "/models/{name:path}", guard(put_model), methods=["PUT"]),
        Route(prefix + "/models/{name:path}", guard(delete_model), methods=["DELETE"]),
    ]
