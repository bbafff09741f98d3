"""The MCP server over the live catalog, for both protocol eras.

Built on the SDK's low-level `Server` (handlers read the catalog snapshot, no
decorators). Tool list changes reach clients in both eras: 2025-11-25
connections get `notifications/tools/list_changed` on their standalone stream;
2026-07-28 clients get it on their `subscriptions/listen` stream.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, SubscriptionBus, ToolsListChanged
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError

from mcp_gateway import __version__
from mcp_gateway.auth.principal import Principal
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.catalog import Catalog, Change, Snapshot
from mcp_gateway.config import ServerConfig
from mcp_gateway.pipeline import ANONYMOUS, Call, Handler
from mcp_gateway.server.discovery import DiscoveryTools, hidden_tools, meta_tools
from mcp_gateway.server.views import CatalogView
from mcp_gateway.upstream.credentials import Caller
from mcp_gateway.upstream.rest import CONNECT_META

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools are operations of REST APIs served through mcp-gateway. Each tool's description says what it does; "
    "arguments are validated against its input schema before any request is sent."
)


class _GatewayServer(Server[Any]):
    """Low-level server that advertises `tools.listChanged` on every transport."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


def _encode_cursor(version: int, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{version}:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        _, offset = raw.split(":", 1)
        value = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise MCPError(types.INVALID_PARAMS, "Invalid cursor") from None
    if value < 0:
        raise MCPError(types.INVALID_PARAMS, "Invalid cursor")
    return value


def _takes_url_elicitation(ctx: ServerRequestContext[Any]) -> bool:
    """Whether the client declared URL-mode elicitation."""
    try:
        capabilities = ctx.session.client_capabilities
    except Exception:  # no session information on this request
        return False
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None


class GatewayMCP:
    """Owns the low-level `Server` and connects it to the catalog and the call pipeline."""

    def __init__(
        self,
        catalog: Catalog,
        handler: Handler,
        settings: ServerConfig | None = None,
        *,
        access: AccessControl | None = None,
        view: CatalogView | None = None,
        name: str = "mcp-gateway",
        bus: SubscriptionBus | None = None,
    ) -> None:
        self.catalog = catalog
        self.view = view or CatalogView()
        self.handler = handler
        # With access control on, every request runs as a principal: from its credential
        # (HTTP, set by RequireCredential) or the configured local consumer (stdio).
        self.access = access if access is not None and access.enabled else None
        self.local_principal: Principal | None = None
        self._view_models: dict[tuple[int, frozenset[str]], list[types.Tool]] = {}
        self.settings = settings or ServerConfig()
        self.page_size = self.settings.page_size
        self.discovery = DiscoveryTools(handler, self.settings)
        self.bus: SubscriptionBus = bus or InMemorySubscriptionBus()
        self._listen = ListenHandler(self.bus)
        # Handshake-era sessions that can receive list_changed on their standalone stream.
        self._legacy_sessions: dict[int, Any] = {}
        # Tool models are built once per catalog version, not per tools/list.
        self._tools_version = -1
        self._tool_models: list[types.Tool] = []
        self._meta_schemas: dict[str, dict[str, Any]] = {}
        self.server = _GatewayServer(
            name,
            version=__version__,
            instructions=INSTRUCTIONS,
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=self._listen,
        )
        self.server.add_notification_handler("notifications/initialized", types.NotificationParams, self._initialized)
        catalog.subscribe(self._on_change)

    # -- handlers ------------------------------------------------------------

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        snapshot = self.current()
        if name in self._meta_schemas:
            return self._meta_schemas[name]
        tool = snapshot.tools.get(name)
        return tool.input_schema if tool is not None else None

    def _models(self, snapshot: Snapshot) -> list[types.Tool]:
        """The listed tools at this catalog version: direct tools, plus meta-tools for the hidden ones."""
        if self._tools_version != snapshot.version:
            hidden = hidden_tools(snapshot, self.settings)
            models: list[types.Tool] = []
            self._meta_schemas = {}
            if hidden:
                apis = sorted({snapshot.tools[n].api for n in hidden})
                models = meta_tools(apis, len(hidden))
                self._meta_schemas = {m.name: m.input_schema for m in models}
            models += [
                types.Tool.model_validate(t.public())
                for t in snapshot.ordered
                if t.name not in hidden and t.name not in self._meta_schemas
            ]
            self._tool_models = models
            self._tools_version = snapshot.version
        return self._tool_models

    def _visible(self, ctx: ServerRequestContext[Any], snapshot: Snapshot) -> frozenset[str] | None:
        """The tools this request's principal may use; None when access control is off."""
        principal = self.local_principal
        if ctx.request is not None:
            principal = getattr(ctx.request, "scope", {}).get("state", {}).get("principal")
        return self.visible_to(principal, snapshot)

    def visible_to(self, principal: Principal | None, snapshot: Snapshot) -> frozenset[str] | None:
        """The tools `principal` may use; None when access control is off."""
        if self.access is None:
            return None
        if principal is None:
            return frozenset()
        return self.access.policy.visible(principal, snapshot.version, snapshot.ordered, self.view.name)

    def current(self) -> Snapshot:
        """This server's view of the live catalog, its listed tools (and meta-tools) built."""
        snapshot = self.view.of(self.catalog.snapshot)
        self._models(snapshot)
        return snapshot

    def is_meta_tool(self, name: str) -> bool:
        """Whether `name` is one of the discovery meta-tools at the current catalog version."""
        return name in self._meta_schemas

    def direct_call(
        self,
        snapshot: Snapshot,
        visible: frozenset[str] | None,
        name: str,
        arguments: Mapping[str, Any],
        principal: Principal | None,
        token: str | None,
    ) -> Call | None:
        """The pipeline call of tool `name`; None when it does not exist or the caller may not use it
        (the two are answered alike)."""
        tool = snapshot.tools.get(name)
        if tool is None or (visible is not None and tool.name not in visible):
            return None
        caller = Caller(principal.consumer, token) if principal is not None else ANONYMOUS
        return Call(tool, snapshot.apis[tool.api], dict(arguments), caller, principal)

    def _listed(self, snapshot: Snapshot, visible: frozenset[str] | None) -> list[types.Tool]:
        models = self._models(snapshot)
        if visible is None:
            return models
        key = (snapshot.version, visible)
        listed = self._view_models.get(key)
        if listed is None:
            hidden = hidden_tools(snapshot, self.settings)
            any_hidden = bool(hidden & visible)
            listed = [m for m in models if m.name in visible or (m.name in self._meta_schemas and any_hidden)]
            if len(self._view_models) > 256:
                self._view_models.clear()
            self._view_models[key] = listed
        return listed

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        snapshot = self.view.of(self.catalog.snapshot)
        models = self._listed(snapshot, self._visible(ctx, snapshot))
        offset = _decode_cursor(params.cursor) if params is not None and params.cursor else 0
        page = models[offset : offset + self.page_size]
        end = offset + len(page)
        next_cursor = _encode_cursor(snapshot.version, end) if end < len(models) else None
        return types.ListToolsResult(tools=page, next_cursor=next_cursor)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        snapshot = self.current()
        visible = self._visible(ctx, snapshot)
        if params.name in self._meta_schemas and any(m.name == params.name for m in self._listed(snapshot, visible)):
            principal, caller = self._caller(ctx)
            return await self.discovery.call(params.name, params.arguments or {}, snapshot, visible, caller, principal)
        principal, token = self._who(ctx)
        call = self.direct_call(snapshot, visible, params.name, params.arguments or {}, principal, token)
        # A tool the caller may not use is answered exactly like one that does not exist.
        if call is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        tool = call.tool
        result = await self.handler(call)
        connect_url = (result.meta or {}).get(CONNECT_META) if result.is_error else None
        if connect_url and _takes_url_elicitation(ctx):
            # The client can open the link for its user (SEP-1036): ask it to, instead of a tool error.
            text = result.content[0].text if result.content and isinstance(result.content[0], types.TextContent) else ""
            raise UrlElicitationRequiredError(
                [types.ElicitRequestURLParams(message=text, url=connect_url, elicitation_id=f"connect-{tool.api}")],
                text,
            )
        return result

    def _caller(self, ctx: ServerRequestContext[Any]) -> tuple[Principal | None, Caller]:
        """Who a call runs for (for policies, limits and the ledger) and what the upstream side
        knows of them: the consumer and, for token exchange, the inbound OAuth token."""
        principal, token = self._who(ctx)
        return principal, (Caller(principal.consumer, token) if principal is not None else ANONYMOUS)

    def _who(self, ctx: ServerRequestContext[Any]) -> tuple[Principal | None, str | None]:
        """The request's principal and inbound OAuth token (HTTP), or the local principal (stdio)."""
        if ctx.request is None:
            return self.local_principal, None
        state = getattr(ctx.request, "scope", {}).get("state", {})
        return state.get("principal"), state.get("subject_token")

    async def _initialized(self, ctx: ServerRequestContext[Any], params: types.NotificationParams) -> None:
        # The SDK has no public per-connection handle on the low-level context; the
        # session's connection is used only to drop the session when it closes.
        connection = getattr(ctx.session, "_connection", None)
        key = id(connection) if connection is not None else id(ctx.session)
        self._legacy_sessions[key] = ctx.session
        stack = getattr(connection, "exit_stack", None)
        if stack is not None:
            stack.callback(self._legacy_sessions.pop, key, None)

    # -- change events -------------------------------------------------------

    async def _on_change(self, change: Change) -> None:
        await self.bus.publish(ToolsListChanged())
        for key, session in list(self._legacy_sessions.items()):
            try:
                await session.send_tool_list_changed()
            except Exception:  # a dead session must not stop the others
                logger.debug("dropping a session that cannot take notifications", exc_info=True)
                self._legacy_sessions.pop(key, None)

    def close(self) -> None:
        """End open `subscriptions/listen` streams (at shutdown)."""
        self._listen.close()
