"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, LM Studio, Groq, Together, Fireworks,
DeepSeek, Mistral, OpenRouter, xAI: a base URL and a key), and Azure OpenAI.

Azure OpenAI takes an `api-key`, or a Microsoft Entra ID token: the deployment's app
registration (tenant, client id, client secret from the vault) gets one by OAuth 2.0 client
credentials for the Cognitive Services scope, with the gateway's own OAuth client (the one
upstream APIs use): cached until shortly before it expires, one token request however many
calls need a token at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote

from mcp_gateway.config.models import COGNITIVE_SERVICES_SCOPE, DEFAULT_BASE_URLS, ENTRA_AUTHORITY, DeploymentConfig
from mcp_gateway.llm.providers import Provider, Resolve, bearer_of
from mcp_gateway.llm.transport import ProviderRequest, host_of
from mcp_gateway.upstream.client import UpstreamError
from mcp_gateway.upstream.credentials import Caller, ClientCredentials, CredentialError
from mcp_gateway.upstream.oauth import OAuthClient
from mcp_gateway.upstream.request import UpstreamRequest

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
    `api-key` or an Entra ID token; the Responses API at `<base_url>/openai/v1/responses` (the
    v1 surface)."""

    DEFAULT_API_VERSION = "2024-10-21"

    def __init__(self, deployment: DeploymentConfig, resolve: Resolve, user_agent: str) -> None:
        super().__init__(deployment, resolve, user_agent)
        self._entra: ClientCredentials | None = None
        if deployment.tenant_id and deployment.client_id and deployment.client_secret:
            authority = deployment.authority_url or ENTRA_AUTHORITY
            self._token_url = f"{authority}/{quote(deployment.tenant_id, safe='')}/oauth2/v2.0/token"
            client = OAuthClient(
                client_id=deployment.client_id,
                client_secret=resolve(deployment.client_secret),
                token_url=self._token_url,
                auth_method="client_secret_post",  # as Microsoft's identity platform documents it
                user_agent=user_agent,
            )
            label = deployment.label(deployment.model or "")
            self._entra = ClientCredentials(client, [COGNITIVE_SERVICES_SCOPE], {}, label)

    @property
    def secrets(self) -> list[str]:
        """The api-key; or the client secret and the token in use."""
        if self._entra is None:
            return super().secrets
        return [s for s in self._entra.held if s]

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

    async def rejected(self, request: ProviderRequest) -> bool:
        """An Entra ID token refused: dropped if it is still the one in use (the next request gets
        a new one, once however many were refused); an api-key: nothing to renew."""
        if self._entra is None:
            return False
        used = bearer_of(request)
        return await self._entra.rejected(Caller(), [used] if used else [])

    async def credentials(self) -> list[tuple[str, str]]:
        """`api-key`, or `Authorization: Bearer` with an Entra ID token (fetched or refreshed here)."""
        if self._entra is None:
            return [("api-key", self.api_key)] if self.api_key else []
        holder = UpstreamRequest("POST", "", [], None)  # the OAuth client sets the header on a request
        try:
            await self._entra.apply(holder, Caller())
        except CredentialError as exc:
            raise UpstreamError(f"no Entra ID token: {exc}", host_of(self._token_url), "token") from None
        return holder.headers
