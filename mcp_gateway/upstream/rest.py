"""The REST upstream: a tool call becomes one HTTP request to the API's base URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types

from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.upstream.client import ClientSettings, HttpClient, UpstreamError
from mcp_gateway.upstream.request import RequestBuildError, build_request
from mcp_gateway.upstream.response import error_result, to_result


class RestUpstream:
    """Calls the operations of one REST API over a pooled client."""

    def __init__(self, api: str, base_url: str | None, settings: ClientSettings) -> None:
        self.api = api
        self.base_url = base_url
        self._client = HttpClient(base_url, settings) if base_url else None

    async def invoke(self, tool: ToolDefinition, arguments: Mapping[str, Any]) -> types.CallToolResult:
        """Build, send and convert; every failure is a tool error naming its cause."""
        if self._client is None or self.base_url is None:
            return error_result(f"API {self.api!r} has no base URL: set base_url in its configuration")
        try:
            request = build_request(tool.operation, self.base_url, arguments)
        except RequestBuildError as exc:
            return error_result(f"Invalid arguments: {exc}")
        try:
            response = await self._client.send(request)
        except UpstreamError as exc:
            return error_result(f"Upstream call failed: {exc}")
        return to_result(tool, response)

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
