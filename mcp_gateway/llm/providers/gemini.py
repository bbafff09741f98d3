"""Google Gemini: AI Studio (the Gemini API, with a key) and Vertex AI (with a service account).

Operations are Gemini's own methods on a model:
- `generate`: `:generateContent`, or `:streamGenerateContent?alt=sse` when streamed;
- `stream`: `:streamGenerateContent?alt=sse`;
- `count_tokens`: `:countTokens` (the body is a generateContent body: AI Studio wants it wrapped
  in `generateContentRequest`, Vertex takes it as it is);
- `embed`: `:embedContent` (one input); `batch_embed`: `:batchEmbedContents` (AI Studio only).

AI Studio's key travels in the `x-goog-api-key` header, never in the URL (`?key=` would put it
in every log line that prints a URL). Vertex AI takes OAuth access tokens of a service account
(its JSON key from the vault), obtained with `google-auth` and cached until shortly before they
expire; google-auth's refresh is blocking, so it runs in a worker thread, one at a time however
many calls need a token at once. A token Vertex refuses (401) is dropped, and the next request
waits for a new one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any, ClassVar
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx2

from mcp_gateway.config.models import DEFAULT_BASE_URLS, VERTEX_BASE_URL, VERTEX_GLOBAL_BASE_URL, DeploymentConfig
from mcp_gateway.llm.providers import Provider, Resolve, bearer_of
from mcp_gateway.llm.transport import ProviderRequest, host_of
from mcp_gateway.upstream.client import UpstreamError

_METHODS = {
    "generate": "generateContent",
    "stream": "streamGenerateContent",
    "count_tokens": "countTokens",
    "embed": "embedContent",
    "batch_embed": "batchEmbedContents",
}
JSON = ("Content-Type", "application/json")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# A token this close to its expiry is replaced (google-auth itself calls one stale 3m45s before).
TOKEN_MARGIN = 300.0
TOKEN_TIMEOUT = 30.0  # seconds for the token endpoint to answer


def model_path(model: str) -> str:
    """A model id as one URL path segment (`models/gemini-x` and `gemini-x` alike): a model name
    a client sent must not reach another path."""
    return quote(model.removeprefix("models/"), safe="")


class GeminiProvider(Provider):
    """AI Studio: `<base_url>/<api_version>/models/<model>:<method>` with `x-goog-api-key`."""

    wire: ClassVar[str] = "gemini"
    operations: ClassVar[frozenset[str]] = frozenset(_METHODS)
    DEFAULT_API_VERSION: ClassVar[str] = "v1beta"

    def _model_url(self, model: str) -> str:
        base = self.deployment.base_url or DEFAULT_BASE_URLS["gemini"]
        version = quote(self.deployment.api_version or self.DEFAULT_API_VERSION, safe="")
        return f"{base}/{version}/models/{model_path(model)}"

    def _count_body(self, model: str, body: bytes) -> bytes:
        # AI Studio counts a whole request (system instruction and tools too) only when it comes
        # as `generateContentRequest`, which names its model.
        inner = body.strip()[1:-1].strip()
        head = b'{"generateContentRequest":{"model":' + json.dumps(f"models/{model.removeprefix('models/')}").encode()
        return head + (b"," + inner if inner else b"") + b"}}"

    def request(
        self, operation: str, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str]
    ) -> ProviderRequest:
        streamed = operation == "stream" or (operation == "generate" and stream)
        method = _METHODS["stream" if streamed else operation]
        url = f"{self._model_url(model)}:{method}" + ("?alt=sse" if streamed else "")
        if operation == "count_tokens":
            body = self._count_body(model, body)
        headers = [JSON, *self.deployment.headers.items()]
        if streamed:
            headers.append(("Accept", "text/event-stream"))
        return ProviderRequest("POST", url, headers, body)

    async def credentials(self) -> list[tuple[str, str]]:
        return [("x-goog-api-key", self.api_key)] if self.api_key else []


class VertexProvider(GeminiProvider):
    """Vertex AI: `https://<region>-aiplatform.googleapis.com/v1/projects/<project>/locations/
    <region>/publishers/google/models/<model>:<method>` with a service account's access token."""

    operations: ClassVar[frozenset[str]] = frozenset(_METHODS) - {"batch_embed"}
    DEFAULT_API_VERSION: ClassVar[str] = "v1"

    def __init__(self, deployment: DeploymentConfig, resolve: Resolve, user_agent: str) -> None:
        super().__init__(deployment, resolve, user_agent)
        from google.oauth2 import service_account

        assert deployment.service_account is not None  # the config requires it
        info = _service_account_info(resolve(deployment.service_account))
        self._key_secrets = _private_key_forms(info["private_key"])
        try:
            self._account = service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM])
        except Exception as exc:  # a key google-auth cannot load: say which field, never its value
            raise ValueError(f"service_account: the key could not be loaded ({type(exc).__name__})") from None
        self._token_uri = str(info.get("token_uri") or "")
        self._http = httpx2.Client(trust_env=False, follow_redirects=False, timeout=TOKEN_TIMEOUT)
        self._token: str | None = None
        self._fresh_until = 0.0  # wall-clock seconds
        self._lock = anyio.Lock()
        self.token_fetches = 0

    def _model_url(self, model: str) -> str:
        region, project = self.deployment.region or "", self.deployment.project or ""
        if self.deployment.base_url:
            base = self.deployment.base_url
        elif region == "global":
            base = VERTEX_GLOBAL_BASE_URL
        else:
            base = VERTEX_BASE_URL.format(region=region)
        version = quote(self.deployment.api_version or self.DEFAULT_API_VERSION, safe="")
        return (
            f"{base}/{version}/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
            f"/publishers/google/models/{model_path(model)}"
        )

    def _count_body(self, model: str, body: bytes) -> bytes:
        return body  # Vertex's countTokens takes contents, systemInstruction and tools as they are

    @property
    def secrets(self) -> list[str]:
        """The private key (PEM and its base64 on one line) and the access token in use."""
        return [*self._key_secrets, *([self._token] if self._token else [])]

    async def credentials(self) -> list[tuple[str, str]]:
        """`Authorization: Bearer <token>`; a token near its expiry is replaced first, in a worker
        thread, by one caller while the others wait for it."""
        if self._token is None or time.time() >= self._fresh_until:
            async with self._lock:
                if self._token is None or time.time() >= self._fresh_until:
                    await anyio.to_thread.run_sync(self._refresh)
        return [("Authorization", f"Bearer {self._token}")]

    async def rejected(self, request: ProviderRequest) -> bool:
        """The token `request` carried was refused (revoked, say, or expired early): dropped if it
        is still the one in use, so the next request waits for a fresh one, fetched once (as in
        `credentials`) however many calls were refused with it."""
        if self._token is not None and self._token == bearer_of(request):
            self._token = None
        return True

    def _refresh(self) -> None:
        """Fetch a new access token (blocking: google-auth signs a JWT and posts it to the token URI)."""
        from google.auth import exceptions

        self.token_fetches += 1
        try:
            self._account.refresh(_TokenTransport(self._http))
        except exceptions.GoogleAuthError as exc:
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
            host = host_of(self._token_uri) if self._token_uri else "token endpoint"
            raise UpstreamError(
                f"no access token for the service account from {host}: {reason}", host, "token"
            ) from None
        expiry = self._account.expiry  # naive UTC, as google-auth keeps it; None: no expiry given
        expires = expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else time.time() + 3600
        self._token = str(self._account.token)
        self._fresh_until = expires - TOKEN_MARGIN

    async def aclose(self) -> None:
        await super().aclose()
        self._http.close()


def _service_account_info(raw: str) -> dict[str, Any]:
    """A service account's JSON key, checked; errors name the field, never a value."""
    try:
        info = json.loads(raw)
    except ValueError:
        raise ValueError("service_account: the secret is not a JSON service account key") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError(
            'service_account: the secret is not a service account key (its "type" must be "service_account")'
        )
    for name in ("client_email", "private_key", "token_uri"):
        if not isinstance(info.get(name), str) or not info[name]:
            raise ValueError(f"service_account: the key has no {name}")
    return info


def _private_key_forms(pem: str) -> list[str]:
    """The private key as PEM, and its base64 body on one line (how it may be quoted elsewhere)."""
    body = "".join(line.strip() for line in pem.strip().splitlines() if line.strip() and "-----" not in line)
    return [pem, pem.strip(), body] if body else [pem]


class _TokenTransport:
    """google-auth's HTTP interface over a plain httpx2 client (no proxies from the environment,
    no redirects), so the gateway needs no `requests`."""

    def __init__(self, client: httpx2.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _TokenResponse:
        from google.auth import exceptions

        try:
            response = self._client.request(
                method, url, content=body, headers=dict(headers or {}), timeout=timeout or TOKEN_TIMEOUT
            )
        except httpx2.HTTPError as exc:
            raise exceptions.TransportError(f"the token endpoint could not be reached ({type(exc).__name__})") from None
        return _TokenResponse(response.status_code, dict(response.headers), response.content)


class _TokenResponse:
    """google-auth's response interface."""

    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data
