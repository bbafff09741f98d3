"""The HTTP front door: `/mcp` (Streamable HTTP), `/healthz`, `/readyz` and `/admin`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from mcp_gateway.auth.middleware import RequireCredential
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.config import ServerConfig
from mcp_gateway.registry import Registry
from mcp_gateway.server.admin import admin_routes
from mcp_gateway.server.mcp import GatewayMCP
from mcp_gateway.server.security import HostOriginGuard

Lifespan = Callable[[], Awaitable[None]]


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
) -> Starlette:
    """The Starlette app. Its lifespan runs `on_start` (load APIs), keeps `background`
    running (the store watcher) and runs `on_stop` (close pools) at shutdown."""
    manager = StreamableHTTPSessionManager(
        app=mcp.server,
        stateless=settings.stateless,
        json_response=settings.json_response,
        # Host/Origin are checked by HostOriginGuard for every route, not only /mcp.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=settings.max_request_bytes,
    )
    ready = {"value": False}

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        snapshot = registry.catalog.snapshot
        body = {
            "ready": ready["value"],
            "apis": len(snapshot.apis),
            "tools": len(snapshot.tools),
            "failed_apis": sorted(registry.failures),
        }
        return JSONResponse(body, status_code=200 if ready["value"] else 503)

    mcp_app: ASGIApp = StreamableHTTPASGIApp(manager)
    if access is not None and access.enabled:
        mcp_app = RequireCredential(mcp_app, access.authenticate)
    routes: list[Route | Mount] = [
        Route("/mcp", mcp_app),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if admin_token:
        routes.append(Mount("/admin", routes=admin_routes(registry, admin_token, access, key_grace)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run(), anyio.create_task_group() as tg:
            await on_start()
            if background is not None:
                tg.start_soon(background)
            ready["value"] = True
            try:
                yield
            finally:
                ready["value"] = False
                tg.cancel_scope.cancel()
                mcp.close()
                await on_stop()

    middleware = [
        Middleware(
            HostOriginGuard,
            bind_host=settings.host,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
