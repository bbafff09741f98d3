"""Model providers behind one small interface, as REST APIs sit behind `Upstream`.

A `Provider` knows one deployment: the wire format it speaks, the URL of each operation, and
its credentials, which it adds to a request only when it is sent. Translation between wire
formats is not its business (see `mcp_gateway.llm.translate`); the router picks providers.

Operations are named by the wire format's own endpoints:
- `openai`: `chat` (chat/completions), `embeddings`, `responses`
- `anthropic`: `messages`, `count_tokens`
- `gemini` (AI Studio and Vertex AI): `generate` (streamed or not), `stream`, `count_tokens`,
  `embed`, `batch_embed`
- `bedrock`: `converse` (streamed or not: ConverseStream), `count_tokens` (CountTokens)

A streamed answer comes as server-sent events from most providers; a provider whose streams are
framed otherwise (Bedrock's binary event stream) says so in `stream_type` and decodes them in
`events`, into the same `sse.Event`s the caller reads usage from and translators take.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from typing import ClassVar

from mcp_gateway.config.models import DeploymentConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.transport import ProviderRequest, ProviderResponse, ProviderTransport

Resolve = Callable[[str], str]  # a secret reference (`secret:NAME`, `env:NAME`) -> its value; blocking


class Provider(ABC):
    """One deployment of a model at a provider. Built off the event loop (it resolves secrets)."""

    wire: ClassVar[str]
    operations: ClassVar[frozenset[str]]
    stream_type: ClassVar[str] = "text/event-stream"  # the media type of its streamed answers

    def __init__(self, deployment: DeploymentConfig, resolve: Resolve, user_agent: str) -> None:
        self.deployment = deployment
        self.api_key = resolve(deployment.api_key) if deployment.api_key else None
        self.transport = ProviderTransport(
            timeout=deployment.timeout,
            connect_timeout=deployment.connect_timeout,
            first_byte_timeout=deployment.first_byte_timeout,
            max_connections=deployment.max_connections,
            user_agent=user_agent,
        )

    @property
    def secrets(self) -> list[str]:
        """What must never leave the gateway: scrubbed from anything the provider says back."""
        return [self.api_key] if self.api_key else []

    def supports(self, operation: str) -> bool:
        """Whether this provider serves `operation` natively (a deployment may say its server
        has no Responses API)."""
        return operation in self.operations and (operation != "responses" or self.deployment.responses_api)

    @abstractmethod
    def request(
        self, operation: str, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str]
    ) -> ProviderRequest:
        """The HTTP request for `operation` on `model` with a native `body` (already rewritten)."""

    async def send(self, request: ProviderRequest) -> ProviderResponse:
        """Send with the credentials added now (and only now)."""
        request.headers.extend(await self.credentials())
        return await self.transport.send(request)

    async def credentials(self) -> list[tuple[str, str]]:
        """The headers that authenticate a request (tokens may be fetched or refreshed here)."""
        return []

    async def rejected(self, request: ProviderRequest) -> bool:
        """The provider answered 401 to `request`. A token the gateway obtained for it may have
        been revoked or have expired early: forget it (unless a newer one replaced it already), so
        the next request gets a fresh one, and return True (a retry may succeed). A static key has
        nothing to forget, and a wrong key stays wrong: False."""
        return False

    def batches(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[list[sse.Event]]:
        """The events of a streamed answer (of `stream_type`) as they arrive, grouped by the read
        that completed them: SSE here."""
        return sse.batches(chunks)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.transport.aclose()


def bearer_of(request: ProviderRequest) -> str | None:
    """The bearer token `request` was sent with (the last `Authorization` header: credentials
    are added after the deployment's own headers), if any."""
    for name, value in reversed(request.headers):
        if name.lower() == "authorization":
            return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None
    return None


def build_provider(deployment: DeploymentConfig, resolve: Resolve, user_agent: str) -> Provider:
    """The provider for a deployment (blocking: resolves its secrets)."""
    from mcp_gateway.llm.providers.anthropic import AnthropicProvider
    from mcp_gateway.llm.providers.bedrock import BedrockProvider
    from mcp_gateway.llm.providers.gemini import GeminiProvider, VertexProvider
    from mcp_gateway.llm.providers.openai import AzureOpenAIProvider, OpenAIProvider

    kinds: dict[str, type[Provider]] = {
        "openai": OpenAIProvider,
        "azure": AzureOpenAIProvider,
        "anthropic": AnthropicProvider,
        "gemini": GeminiProvider,
        "vertex": VertexProvider,
        "bedrock": BedrockProvider,
    }
    return kinds[deployment.provider](deployment, resolve, user_agent)


__all__ = ["Provider", "Resolve", "bearer_of", "build_provider"]
