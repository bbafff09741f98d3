"""Anthropic's Messages API: `x-api-key`, `anthropic-version`; `anthropic-beta` passed through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from mcp_gateway.config.models import DEFAULT_BASE_URLS
from mcp_gateway.llm.providers import Provider
from mcp_gateway.llm.transport import ProviderRequest

DEFAULT_VERSION = "2023-06-01"
_PATHS = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}


class AnthropicProvider(Provider):
    """`<base_url>/v1/messages` with `x-api-key`."""

    wire: ClassVar[str] = "anthropic"
    operations: ClassVar[frozenset[str]] = frozenset(_PATHS)

    def request(
        self, operation: str, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str]
    ) -> ProviderRequest:
        base = self.deployment.base_url or DEFAULT_BASE_URLS["anthropic"]
        # The client's API version and beta features win: the body was written for them.
        version = client_headers.get("anthropic-version") or self.deployment.api_version or DEFAULT_VERSION
        headers = [("Content-Type", "application/json"), ("anthropic-version", version)]
        if beta := client_headers.get("anthropic-beta"):
            headers.append(("anthropic-beta", beta))
        headers += self.deployment.headers.items()
        if stream:
            headers.append(("Accept", "text/event-stream"))
        return ProviderRequest("POST", base + _PATHS[operation], headers, body)

    async def credentials(self) -> list[tuple[str, str]]:
        return [("x-api-key", self.api_key)] if self.api_key else []
