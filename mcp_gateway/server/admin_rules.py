"""`/admin/limits` and `/admin/budgets/rules`: rules of one kind, the config file's and those added
at run time; running gateways apply a change at their next store poll."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.config import describe_errors
from mcp_gateway.store.rules import R, RuleError, RuleStore, public_rule

Endpoint = Callable[[Request], Any]


def rule_routes(
    path: str, store: RuleStore[R], configured: Sequence[R], guard: Callable[[Endpoint], Endpoint]
) -> list[Route]:
    """GET and POST `path`, DELETE `path/{name}` (the admin token)."""
    kind = store.kind

    async def listing(request: Request) -> Response:
        stored = await anyio.to_thread.run_sync(store.list)
        rules = [public_rule(r, "config") for r in configured] + [
            public_rule(s.rule, "store", s.created_at) for s in stored
        ]
        return JSONResponse({f"{kind}s": rules})

    async def add(request: Request) -> Response:
        try:
            rule = store.model.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": describe_errors(exc)}, status_code=400)
        if any(r.name == rule.name for r in configured):
            return JSONResponse({"error": f"a {kind} named {rule.name!r} is in the config file"}, status_code=409)
        try:
            added = await anyio.to_thread.run_sync(store.add, rule)
        except RuleError as exc:
            status = 400 if rule.name is None else 409
            return JSONResponse({"error": str(exc)}, status_code=status)
        return JSONResponse(public_rule(added.rule, "store", added.created_at), status_code=201)

    async def remove(request: Request) -> Response:
        name = request.path_params["name"]
        if await anyio.to_thread.run_sync(store.remove, name):
            return JSONResponse({"removed": name})
        in_config = any(r.name == name for r in configured)
        why = " (it is in the config file: edit it there)" if in_config else ""
        return JSONResponse({"error": f"no {kind} named {name!r} was added at run time{why}"}, status_code=404)

    return [
        Route(path, guard(listing), methods=["GET"]),
        Route(path, guard(add), methods=["POST"]),
        Route(path + "/{name}", guard(remove), methods=["DELETE"]),
    ]
