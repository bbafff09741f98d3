"""Admin endpoints for the credential vault (mounted under `/admin`): list, store and remove secrets.

Values go in and never come out: every answer carries metadata only, and error
messages never quote the request body. Vault calls block (SQLite, key file), so
they run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_gateway.server.admin_identities import AdminInputError, read_json
from mcp_gateway.vault import MAX_SECRET_BYTES, InvalidSecret, MasterKeyError, Vault, VaultError

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_BODY = MAX_SECRET_BYTES * 2 + 4096  # JSON escaping can double a value


def secret_endpoints(vault: Vault | None) -> list[tuple[str, Endpoint, list[str]]]:
    """(path, endpoint, methods) for the secrets part of the admin API; 501 when there is no vault."""

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args))
        except InvalidSecret as exc:
            raise AdminInputError(str(exc)) from None

    def unavailable() -> Response:
        return JSONResponse({"error": "the credential vault is not configured"}, status_code=501)

    def vault_error(exc: VaultError) -> Response:
        # MasterKeyError: the operator must provide a key; messages name sources, never keys.
        return JSONResponse({"error": str(exc)}, status_code=503 if isinstance(exc, MasterKeyError) else 500)

    async def list_secrets(request: Request) -> Response:
        if vault is None:
            return unavailable()
        return JSONResponse({"secrets": [i.public() for i in await run(vault.list)]})

    async def put_secret(request: Request) -> Response:
        if vault is None:
            return unavailable()
        data = await read_json(request, MAX_BODY)
        value, description = data.get("value"), data.get("description")
        if not isinstance(value, str) or not value:
            raise AdminInputError("value is required (a non-empty string)")
        if description is not None and not isinstance(description, str):
            raise AdminInputError("description must be a string")
        try:
            info, created = await run(vault.put, request.path_params["name"], value, description)
        except VaultError as exc:
            return vault_error(exc)
        return JSONResponse(info.public(), status_code=201 if created else 200)

    async def remove_secret(request: Request) -> Response:
        if vault is None:
            return unavailable()
        gone = await run(vault.remove, request.path_params["name"])
        return Response(status_code=204) if gone else JSONResponse({"error": "no such secret"}, status_code=404)

    return [
        ("/secrets", list_secrets, ["GET"]),
        ("/secrets/{name}", put_secret, ["PUT"]),
        ("/secrets/{name}", remove_secret, ["DELETE"]),
    ]
