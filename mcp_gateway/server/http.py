"""The HTTP front door: `/mcp` (Streamable HTTP), `/healthz`, `/readyz`, `/admin`, and the
RFC 9728 protected-resource metadata when JWTs from external issuers are accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlparse

import anyio
from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import ProtectedResourceMetadata
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.auth.connections import Connections
from mcp_gateway.auth.jwt import JwtVerifier
from mcp_gateway.auth.middleware import RequireCredential
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.config import ServerConfig
from mcp_gateway.registry import Registry
from mcp_gateway.server.admin import admin_routes
from mcp_gateway.server.fast_call import FastToolCall
from mcp_gateway.server.mcp import GatewayMCP
from mcp_gateway.server.security import HostOriginGuard
from mcp_gateway.store.drift import DriftStore
from mcp_gateway.vault import Vault

Lifespan = Callable[[], Awaitable[None]]
WELL_KNOWN = "/.well-known/oauth-protected-resource"


_OWS = frozenset((b" ", b"\t"))  # one-byte slices of a header value that are whitespace


class TrimMcpHeaders:
    """Strips leading and trailing whitespace (SP, HTAB) from `Mcp-*` header values
    (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, `Mcp-Session-Id`).

    RFC 9110 §5.5: such whitespace is not part of a field value, and a parser MUST exclude it
    before evaluating one. h11 does; httptools (uvicorn's default parser) keeps trailing whitespace,
    so the SDK compared `getItem ` with the body's `getItem` and refused a valid call with
    HeaderMismatch (and a padded protocol version picked the wrong era). Inner whitespace is part of
    the value and stays.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", ())
        # The scope is copied only when a value is padded: most requests pass through untouched.
        if any(name.startswith(b"mcp-") and (value[:1] in _OWS or value[-1:] in _OWS) for name, value in headers):
            trimmed = [(name, value.strip(b" \t") if name.startswith(b"mcp-") else value) for name, value in headers]
            scope = {**scope, "headers": trimmed}
        await self.app(scope, receive, send)


def protected_resource_routes(verifier: JwtVerifier) -> tuple[list[Route], str]:
    """RFC 9728 metadata routes for this resource, and the metadata URL that 401 challenges point to.

    Served at the path-suffixed form of `auth.resource` (what MCP clients try first, e.g.
    `/.well-known/oauth-protected-resource/mcp`) and at the bare well-known path.
    """
    metadata = ProtectedResourceMetadata.model_validate(
        {
            "resource": verifier.resource,
            "authorization_servers": verifier.issuers,
            "scopes_supported": verifier.scopes_supported or None,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-gateway",
        }
    )
    url = str(build_resource_metadata_url(metadata.resource))
    endpoint = cors_middleware(ProtectedResourceMetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    # The gateway serves /mcp itself; behind a proxy that maps another public path to it, the
    # public path's form is served as well.
    paths = dict.fromkeys([urlparse(url).path, WELL_KNOWN + "/mcp", WELL_KNOWN])
    return [Route(path, endpoint=endpoint, methods=["GET", "OPTIONS"]) for path in paths], url


def create_app(
    mcp: GatewayMCP,
    registry: Registry,
    settings: ServerConfig,
    *,
    admin_token: str | None,
    access: AccessControl | None = None,
    on_start: Lifespan,
    on_stop: Lifespan,
    background: Lifespan | None = None,
    key_grace: float = 86400.0,
    virtual: dict[str, GatewayMCP] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    front_doors: Sequence[Middleware] = (),
    outer: Sequence[Middleware] = (),
    vault: Vault | None = None,
    connections: Connections | None = None,
    drift: DriftStore | None = None,
) -> Starlette:
    """The Starlette app. Its lifespan runs `on_start` (load APIs), keeps `background`
    running (the store watcher) and runs `on_stop` (close pools) at shutdown.
    `virtual` adds one endpoint per virtual server, at `/mcp/<name>`; `extra_routes` are
    other front-door routes (the per-user OAuth connect flow); `front_doors` are middleware
    that answer their own paths right after the Host/Origin guard (the `/v1` model doors); `outer`
    middleware sees every request first (the per-front-door metrics)."""
    endpoints = {"/mcp": mcp, **{f"/mcp/{name}": server for name, server in (virtual or {}).items()}}
    managers = {
        path: StreamableHTTPSessionManager(
            app=server.server,
            stateless=settings.stateless,
            json_response=settings.json_response,
            # Host/Origin are checked by HostOriginGuard for every route, not only /mcp.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=settings.max_request_bytes,
        )
        for path, server in endpoints.items()
    }
    ready = {"value": False}

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # Not ready while a config-file API is missing: a replica that lacks some of the tools it is
        # configured to serve should not take traffic. (Run-time registrations that fail keep their
        # last good version serving, and are only listed.) Errors stay out of this unauthenticated
        # answer: they name files and URLs; the log and GET /admin/apis have them.
        snapshot = registry.catalog.snapshot
        missing = [f.api for f in registry.config_failures]
        is_ready = ready["value"] and not missing
        body: dict[str, object] = {
            "ready": is_ready,
            "apis": len(snapshot.apis),
            "tools": len(snapshot.tools),
            "failed_apis": sorted(registry.failures),
        }
        if not ready["value"]:
            body["reason"] = "starting: the APIs are being loaded"
        elif missing:
            body["reason"] = f"configured API(s) failed to load: {', '.join(missing)} (retried; see the log)"
        return JSONResponse(body, status_code=200 if is_ready else 503)

    well_known: list[Route] = []
    metadata_url = scope = None
    if access is not None and access.enabled and access.jwt is not None:
        well_known, metadata_url = protected_resource_routes(access.jwt)
        scope = " ".join(sorted(access.jwt.required_scopes)) or None

    def guarded(app: ASGIApp) -> ASGIApp:
        if access is None or not access.enabled:
            return app
        return RequireCredential(
            app, access.authenticate, known=access.known, resource_metadata=metadata_url, scope=scope
        )

    def transport(path: str, manager: StreamableHTTPSessionManager) -> ASGIApp:
        app: ASGIApp = StreamableHTTPASGIApp(manager)
        if settings.fast_path:
            app = FastToolCall(app, endpoints[path], stateless=settings.stateless, json_response=settings.json_response)
        return guarded(TrimMcpHeaders(app))

    routes: list[BaseRoute] = [
        *(Route(path, transport(path, manager)) for path, manager in managers.items()),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *well_known,
        *extra_routes,
    ]
    if admin_token:
        routes.append(
            Mount(
                "/admin",
                routes=admin_routes(
                    registry, admin_token, access, key_grace, vault=vault, connections=connections, drift=drift
                ),
            )
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for manager in managers.values():
                await stack.enter_async_context(manager.run())
            async with anyio.create_task_group() as tg:
                await on_start()
                if background is not None:
                    tg.start_soon(background)
                ready["value"] = True
                try:
                    yield
                finally:
                    ready["value"] = False
                    tg.cancel_scope.cancel()
                    for server in endpoints.values():
                        server.close()
                    await on_stop()

    middleware = [
        *outer,
        Middleware(
            HostOriginGuard,
            bind_host=settings.host,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
        ),
        *front_doors,
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
