"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, LM Studio, Groq, Together, Fireworks,
DeepSeek, Mistral, OpenRouter, xAI: a base URL and a key), and Azure OpenAI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote

from mcp_gateway.config.models import DEFAULT_BASE_URLS
from mcp_gateway.llm.providers import Provider
from mcp_gateway.llm.transport import ProviderRequest

_PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses"}
JSON = ("Content-Type", "application/json")


class OpenAIProvider(Provider):
    """`Authorization: Bearer <key>` against `<base_url>/chat/completions` and friends."""

    wire: ClassVar[str] = "openai"
    operations: ClassVar[frozenset[str]] = frozenset(_PATHS)

    def _base(self) -> str:
        return self.deployment.base_url or DEFAULT_BASE_URLS["openai"]

    def request(
        self, operation: str, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str]
    ) -> ProviderRequest:
        headers = [JSON, *self.deployment.headers.items()]
        if stream:
            headers.append(("Accept", "text/event-stream"))
        return ProviderRequest("POST", self._base() + _PATHS[operation], headers, body)

    async def credentials(self) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.api_key}")] if self.api_key else []


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: `<base_url>/openai/deployments/<deployment>/<operation>?api-version=...` with
    `api-key`; the Responses API at `<base_url>/openai/v1/responses` (the v1 surface)."""

    DEFAULT_API_VERSION = "2024-10-21"

    def request(
        self, operation: str, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str]
    ) -> ProviderRequest:
        base = (self.deployment.base_url or "").rstrip("/")
        version = quote(self.deployment.api_version or self.DEFAULT_API_VERSION, safe="")
        if operation == "responses":
            url = f"{base}/openai/v1/responses"
        else:
            url = f"{base}/openai/deployments/{quote(model, safe='')}{_PATHS[operation]}?api-version={version}"
        headers = [JSON, *self.deployment.headers.items()]
        if stream:
            headers.append(("Accept", "text/event-stream"))
        return ProviderRequest("POST", url, headers, body)

    async def credentials(self) -> list[tuple[str, str]]:
        return [("api-key", self.api_key)] if self.api_key else []
