"""Wiring: one `Gateway` holds the catalog, registry, pipeline and MCP server.

The front doors (stdio, HTTP) are built from it; nothing below imports it.
"""

from __future__ import annotations

import logging

import anyio
from starlette.applications import Starlette

from mcp_gateway.catalog import Catalog
from mcp_gateway.config import GatewayConfig
from mcp_gateway.pipeline import compose
from mcp_gateway.pipeline.invoke import UpstreamPool
from mcp_gateway.pipeline.stages import log_calls, validate_arguments
from mcp_gateway.registry import Registry
from mcp_gateway.server.http import create_app
from mcp_gateway.server.mcp import GatewayMCP
from mcp_gateway.store.database import Database
from mcp_gateway.store.registrations import RegistrationStore

logger = logging.getLogger(__name__)

STORE_POLL_SECONDS = 2.0


class Gateway:
    """Everything one gateway process serves."""

    def __init__(self, config: GatewayConfig, *, use_store: bool = True) -> None:
        self.config = config
        self.catalog = Catalog()
        self.db = Database(config.database_path) if use_store else None
        self.store = RegistrationStore(self.db) if self.db is not None else None
        self.registry = Registry(self.catalog, self.store, config.apis)
        self.pool = UpstreamPool(user_agent=config.user_agent)
        self.catalog.subscribe(self.pool.on_change)
        self.handler = compose([log_calls, validate_arguments], self.pool)
        self.mcp = GatewayMCP(self.catalog, self.handler, config.server)

    async def start(self) -> None:
        """Ingest and serve every configured and registered API."""
        await self.registry.load_all()
        snapshot = self.catalog.snapshot
        logger.info("serving %d tools from %d APIs", len(snapshot.tools), len(snapshot.apis))

    async def watch_store(self) -> None:
        """Pick up registrations made by other processes (CLI, replicas) until cancelled."""
        while True:
            await anyio.sleep(STORE_POLL_SECONDS)
            try:
                await self.registry.refresh()
            except Exception:  # a bad poll must not end the watcher
                logger.exception("refreshing registrations from the store failed")

    def http_app(self) -> Starlette:
        """The HTTP front door (`/mcp`, `/healthz`, `/readyz`, `/admin`) of this gateway."""
        return create_app(
            self.mcp,
            self.registry,
            self.config.server,
            admin_token=self.config.admin_token,
            on_start=self.start,
            on_stop=self.aclose,
            background=self.watch_store,
        )

    async def aclose(self) -> None:
        """Close upstream pools and the store."""
        await self.pool.aclose()
        if self.db is not None:
            self.db.close()
