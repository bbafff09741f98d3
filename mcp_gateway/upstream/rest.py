"""The REST upstream: a tool call becomes one HTTP request to the API's base URL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import mcp_types as types

from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.upstream.client import ClientSettings, HttpClient, UpstreamError, UpstreamResponse
from mcp_gateway.upstream.credentials import Binding, Caller, CredentialError, redact, redaction_forms
from mcp_gateway.upstream.request import RequestBuildError, build_request
from mcp_gateway.upstream.response import error_result, to_result

CONNECT_META = "mcp-gateway/connect-url"
_ANONYMOUS = Caller()


def connect_result(exc: CredentialError) -> types.CallToolResult:
    """The tool error for a credential that cannot be applied; carries the connect link, if any,
    in `_meta` so that the server can turn it into a URL elicitation for clients that take one."""
    result = error_result(str(exc))
    if exc.connect_url:
        result.meta = {CONNECT_META: exc.connect_url}
    return result


class RestUpstream:
    """Calls the operations of one REST API over a pooled client, with its credentials."""

    def __init__(
        self,
        api: str,
        base_url: str | None,
        settings: ClientSettings,
        binding: Binding | None = None,
        own_servers: Iterable[str] = (),
        observe: Callable[[ToolDefinition, UpstreamResponse], None] | None = None,
    ) -> None:
        """Blocking (TLS contexts load CA files): build it off the event loop. `observe` sees every
        response (secrets scrubbed) before it is converted; it must return at once (drift sampling)."""
        self.api = api
        self.observe = observe
        self.base_url = base_url
        self.binding = binding
        self._client = HttpClient(base_url, settings) if base_url else None
        # Clients for the servers the spec declares on single operations.
        self._own = {url: HttpClient(url, settings) for url in own_servers}

    def _client_for(self, tool: ToolDefinition) -> tuple[HttpClient | None, str | None]:
        own = tool.operation.base_url
        if own is None:
            return self._client, self.base_url
        return self._own.get(own), own

    async def invoke(
        self, tool: ToolDefinition, arguments: Mapping[str, Any], caller: Caller = _ANONYMOUS
    ) -> types.CallToolResult:
        """Build, authenticate, send and convert; every failure is a tool error naming its cause."""
        client, base_url = self._client_for(tool)
        if client is None or base_url is None:
            return error_result(f"API {self.api!r} has no base URL: set base_url in its configuration")
        appliers = self.binding.for_operation(tool.operation.security) if self.binding is not None else ()
        if isinstance(appliers, str):
            return error_result(appliers)
        try:
            built = build_request(tool.operation, base_url, arguments)
        except RequestBuildError as exc:
            return error_result(f"Invalid arguments: {exc}")
        used: list[str] = []
        for attempt in range(2):
            request = replace(built, headers=list(built.headers)) if appliers else built
            used = []
            try:
                for applier in appliers:
                    used += await applier.apply(request, caller)
            except CredentialError as exc:
                return connect_result(exc)
            try:
                response = await client.send(request)
            except UpstreamError as exc:
                return error_result(self._scrub(f"Upstream call failed: {exc}", used))
            # A 401 to a token we obtained may mean it was revoked or expired early: once, get a new one.
            if response.status != 401 or attempt or not appliers:
                break
            retry = [await applier.rejected(caller, used) for applier in appliers]
            if not any(retry):
                break
        if used:
            response.body = redact(response.body, redaction_forms(used))
        if self.observe is not None:
            self.observe(tool, response)
        return to_result(tool, response)

    @staticmethod
    def _scrub(text: str, used: list[str]) -> str:
        return redact(text.encode(), redaction_forms(used)).decode(errors="replace") if used else text

    async def aclose(self) -> None:
        """Close the connection pool."""
        for client in (self._client, *self._own.values()):
            if client is not None:
                await client.aclose()
