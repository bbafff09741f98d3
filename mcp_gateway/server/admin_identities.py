"""Admin endpoints for consumers, API keys and policies (mounted under `/admin`).

Every change reloads the access control at once, so a revoked key stops working
with the next request in this process (other replicas: within one store poll).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_gateway.auth import keys
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.durations import EXAMPLES, DurationError, parse_duration
from mcp_gateway.store.identities import Consumer, IdentityError, Selector, unknown_consumer_warning

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_BODY = 64 * 1024


class AdminInputError(ValueError):
    """A bad admin request body (400)."""


async def read_json(request: Request, max_body: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object body (400 via AdminInputError otherwise)."""
    body = await request.body()
    if len(body) > max_body:
        raise AdminInputError("request body too large")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        # Not the parser's message: it may quote the body, which can hold a secret.
        raise AdminInputError("request body is not JSON") from None
    if not isinstance(data, dict):
        raise AdminInputError("request body must be a JSON object")
    return data


def _str_list(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdminInputError(f"{key} must be a list of strings")
    return tuple(value)


def _optional_duration(data: dict[str, Any], key: str) -> float | None:
    """Seconds, or a duration as the CLI takes it (`90d`, `12h`)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise AdminInputError(f"{key} must be seconds or a duration ({EXAMPLES})")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise AdminInputError(f"{key}: {exc}") from None


def _consumer_json(consumer: Consumer) -> dict[str, Any]:
    return {
        "name": consumer.name,
        "team": consumer.team,
        "org": consumer.org,
        "disabled": consumer.disabled,
        "created_at": consumer.created_at,
    }


def identity_endpoints(access: AccessControl, grace_default: float) -> list[tuple[str, Endpoint, list[str]]]:
    """(path, endpoint, methods) for the identity part of the admin API."""
    store = access.store

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except IdentityError as exc:
            raise AdminInputError(str(exc)) from None
        await access.reload()
        return result

    async def list_consumers(request: Request) -> Response:
        return JSONResponse({"consumers": [_consumer_json(c) for c in await run(store.consumers)]})

    async def add_consumer(request: Request) -> Response:
        data = await read_json(request)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise AdminInputError("name is required")
        team, org = data.get("team"), data.get("org")
        if any(v is not None and not isinstance(v, str) for v in (team, org)):
            raise AdminInputError("team and org must be strings")
        return JSONResponse(_consumer_json(await run(store.add_consumer, name.strip(), team, org)), status_code=201)

    async def show_consumer(request: Request) -> Response:
        consumer = await run(store.consumer, request.path_params["name"])
        if consumer is None:
            return JSONResponse({"error": "no such consumer"}, status_code=404)
        found = await run(store.keys, consumer.name)
        return JSONResponse({**_consumer_json(consumer), "keys": [k.public() for k in found]})

    async def patch_consumer(request: Request) -> Response:
        data = await read_json(request)
        if not isinstance(data.get("disabled"), bool):
            raise AdminInputError("disabled (true or false) is required")
        name = request.path_params["name"]
        if not await run(store.set_disabled, name, data["disabled"]):
            return JSONResponse({"error": "no such consumer"}, status_code=404)
        await access.reload()
        return JSONResponse(_consumer_json(await run(store.consumer, name)))

    async def remove_consumer(request: Request) -> Response:
        gone = await run(store.remove_consumer, request.path_params["name"])
        return Response(status_code=204) if gone else JSONResponse({"error": "no such consumer"}, status_code=404)

    async def list_keys(request: Request) -> Response:
        found = await run(store.keys, request.query_params.get("consumer"))
        return JSONResponse({"keys": [k.public() for k in found]})

    async def create_key(request: Request) -> Response:
        data = await read_json(request)
        consumer = data.get("consumer")
        if not isinstance(consumer, str):
            raise AdminInputError("consumer is required")
        description = data.get("description")
        key, full = await run(
            keys.issue, store, consumer, expires_in=_optional_duration(data, "expires_in"),
            description=description if isinstance(description, str) else None,
        )  # fmt: skip
        # The only time the full key is ever shown.
        return JSONResponse({**key.public(), "key": full}, status_code=201)

    async def rotate_key(request: Request) -> Response:
        data = await read_json(request)
        grace = data.get("grace_seconds", grace_default)
        if isinstance(grace, str):
            grace = _optional_duration(data, "grace_seconds")
        if not isinstance(grace, int | float) or isinstance(grace, bool) or grace < 0:
            raise AdminInputError(f"grace_seconds must be seconds >= 0 or a duration ({EXAMPLES})")
        key, full = await run(keys.rotate, store, request.path_params["key_id"], grace=float(grace))
        return JSONResponse({**key.public(), "key": full, "replaces": request.path_params["key_id"]}, status_code=201)

    async def revoke_key(request: Request) -> Response:
        gone = await run(store.revoke_key, request.path_params["key_id"])
        return Response(status_code=204) if gone else JSONResponse({"error": "no such active key"}, status_code=404)

    async def list_policies(request: Request) -> Response:
        return JSONResponse({"policies": [p.public() for p in await run(store.policies)]})

    async def add_policy(request: Request) -> Response:
        data = await read_json(request)
        kind = data.get("subject_kind")
        subject = "*" if kind == "everyone" else data.get("subject")
        if not isinstance(subject, str) or not subject:
            raise AdminInputError("subject is required (an API key id, a consumer, team or org name)")
        read_only = data.get("read_only")
        if read_only is not None and not isinstance(read_only, bool):
            raise AdminInputError("read_only must be true, false or absent")
        selector = Selector(
            apis=_str_list(data, "apis"),
            tools=_str_list(data, "tools"),
            tags=_str_list(data, "tags"),
            methods=tuple(m.upper() for m in _str_list(data, "methods")),
            read_only=read_only,
            models=_str_list(data, "models"),
        )
        if selector.models and selector.names_tools:
            raise AdminInputError("a policy is about models or about tools: give models, or tool criteria, not both")
        description = data.get("description") if isinstance(data.get("description"), str) else None
        policy = await run(store.add_policy, kind, subject, data.get("effect"), selector, description)
        body = policy.public()
        if kind == "consumer" and await run(store.consumer, subject) is None:
            body["warnings"] = [unknown_consumer_warning(subject)]
        return JSONResponse(body, status_code=201)

    async def remove_policy(request: Request) -> Response:
        try:
            policy_id = int(request.path_params["policy_id"])
        except ValueError:
            return JSONResponse({"error": "no such policy"}, status_code=404)
        gone = await run(store.remove_policy, policy_id)
        return Response(status_code=204) if gone else JSONResponse({"error": "no such policy"}, status_code=404)

    return [
        ("/consumers", list_consumers, ["GET"]),
        ("/consumers", add_consumer, ["POST"]),
        ("/consumers/{name}", show_consumer, ["GET"]),
        ("/consumers/{name}", remove_consumer, ["DELETE"]),
        ("/consumers/{name}", patch_consumer, ["PATCH"]),
        ("/keys", list_keys, ["GET"]),
        ("/keys", create_key, ["POST"]),
        ("/keys/{key_id}/rotate", rotate_key, ["POST"]),
        ("/keys/{key_id}", revoke_key, ["DELETE"]),
        ("/policies", list_policies, ["GET"]),
        ("/policies", add_policy, ["POST"]),
        ("/policies/{policy_id}", remove_policy, ["DELETE"]),
    ]
