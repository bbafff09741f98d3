"""Models: the names clients ask for, and the provider deployments that serve them.

A model (`name`, an alias or a glob like `claude-*`) maps to one or more deployments; the
router picks among them by `strategy`, retries on another one, and falls back to other
models. Secret fields hold `secret:NAME` (the vault) or `env:NAME` references, resolved
when a deployment is first used, never at config load.
"""

from __future__ import annotations

import fnmatch
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mcp_gateway.config.base import StrictModel, check_authority_url

Provider = Literal["openai", "azure", "anthropic", "gemini", "vertex", "bedrock"]
Strategy = Literal["priority", "weighted", "least-latency", "lowest-cost", "least-busy"]

# The wire format each provider speaks natively: a client speaking the same one is passed through.
PROVIDER_WIRE: dict[str, str] = {
    "openai": "openai",
    "azure": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",  # Google AI Studio
    "vertex": "gemini",  # Gemini on Vertex AI
    "bedrock": "bedrock",  # AWS Bedrock Converse
}
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
# Vertex AI's regional endpoint; the `global` region has no prefix.
VERTEX_BASE_URL = "https://{region}-aiplatform.googleapis.com"
VERTEX_GLOBAL_BASE_URL = "https://aiplatform.googleapis.com"
BEDROCK_BASE_URL = "https://bedrock-runtime.{region}.amazonaws.com"
# Microsoft Entra ID: Azure OpenAI's tokens, by client credentials, for this scope.
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
_REGION = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")  # a GUID, a domain (contoso.onmicrosoft.com), organizations
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:-]{0,127}$")  # my-project-123, or a legacy example.com:project


class Price(StrictModel):
    """USD per million tokens; overrides the bundled price data (genai-prices) for a deployment."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0, description="default: input")
    cache_write: float | None = Field(default=None, ge=0, description="default: input")


class DeploymentConfig(StrictModel):
    """One provider endpoint that serves a model."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = (
        "api_key",
        "service_account",
        "client_secret",
        "aws_secret_access_key",
        "aws_session_token",
    )
    provider: Provider
    model: str | None = Field(
        default=None, description="the provider's model id (Azure: the deployment name); default: the name asked for"
    )
    name: str | None = Field(default=None, description="how health and usage name it; default: provider/model")
    api_key: str | None = Field(default=None, repr=False, description="secret:NAME or env:NAME")
    base_url: str | None = Field(default=None, description="default: the provider's public endpoint")
    api_version: str | None = Field(
        default=None,
        description="Azure's api-version; Anthropic's anthropic-version; Gemini's API version (v1beta; Vertex: v1)",
    )
    region: str | None = Field(
        default=None, description="Vertex AI: the location (us-central1, europe-west4, global); Bedrock: the AWS region"
    )
    project: str | None = Field(default=None, description="Vertex AI: the Google Cloud project id")
    service_account: str | None = Field(
        default=None, repr=False, description="Vertex AI: the service account's JSON key, secret:NAME or env:NAME"
    )
    tenant_id: str | None = Field(default=None, description="Azure with Entra ID: the directory (tenant) id")
    client_id: str | None = Field(default=None, description="Azure with Entra ID: the application (client) id")
    client_secret: str | None = Field(
        default=None, repr=False, description="Azure with Entra ID: the client secret, secret:NAME or env:NAME"
    )
    authority_url: str | None = Field(
        default=None, description=f"Azure with Entra ID: the identity platform's URL; default: {ENTRA_AUTHORITY}"
    )
    aws_access_key_id: str | None = Field(
        default=None, description="Bedrock: the access key id (AKIA..., or secret:NAME / env:NAME)"
    )
    aws_secret_access_key: str | None = Field(
        default=None, repr=False, description="Bedrock: the secret access key, secret:NAME or env:NAME"
    )
    aws_session_token: str | None = Field(
        default=None, repr=False, description="Bedrock: a temporary credential's session token, secret:NAME or env:NAME"
    )
    weight: float = Field(default=1.0, gt=0, description="share of traffic under the weighted strategy")
    timeout: float = Field(default=600.0, gt=0, description="seconds for one provider call (streams: to the end)")
    connect_timeout: float = Field(default=10.0, gt=0)
    first_byte_timeout: float = Field(
        default=120.0, gt=0, description="seconds until the provider's first byte; a retry may follow"
    )
    max_connections: int = Field(default=200, gt=0)
    price: Price | None = Field(default=None, description="USD per million tokens; default: genai-prices' data")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers sent to the provider")
    responses_api: bool = Field(
        default=True,
        description="openai/azure: whether the server has the Responses API; false translates /v1/responses to chat "
        "completions (vLLM, Ollama and other OpenAI-compatible servers without /responses)",
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _needs(self) -> DeploymentConfig:
        if self.provider == "azure" and not (self.base_url and self.model):
            raise ValueError("an azure deployment needs base_url (https://NAME.openai.azure.com) and model")
        if self.provider == "gemini" and not self.api_key:
            raise ValueError("a gemini deployment needs api_key (an AI Studio key: secret:NAME or env:NAME)")
        self._entra()
        if self.provider == "vertex":
            missing = [n for n in ("project", "region", "service_account") if not getattr(self, n)]
            if missing:
                raise ValueError(
                    f"a vertex deployment needs {', '.join(missing)} (project and region of the Vertex AI "
                    "endpoint; service_account: the service account's JSON key, secret:NAME)"
                )
            if self.api_key:
                raise ValueError("a vertex deployment authenticates with service_account, not api_key")
        elif self.project or self.service_account:
            raise ValueError("project and service_account are for vertex deployments only")
        self._aws()
        return self

    def _entra(self) -> None:
        """Azure with an Entra ID token: tenant, client and secret together, and no api_key."""
        entra = ("tenant_id", "client_id", "client_secret")
        given = [n for n in (*entra, "authority_url") if getattr(self, n)]
        if not given:
            return
        if self.provider != "azure":
            raise ValueError(f"{', '.join(given)}: for azure deployments (an Entra ID token) only")
        missing = [n for n in entra if not getattr(self, n)]
        if missing:
            raise ValueError(f"an azure deployment with an Entra ID token needs {', '.join(missing)} too")
        if self.api_key:
            raise ValueError("an azure deployment authenticates with api_key or an Entra ID token, not both")

    def _aws(self) -> None:
        """Bedrock: a region and an access key (id and secret) from the vault."""
        aws = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        if self.provider != "bedrock":
            if self.region and self.provider != "vertex":
                raise ValueError("region is for vertex and bedrock deployments only")
            if given := [n for n in aws if getattr(self, n)]:
                raise ValueError(f"{', '.join(given)}: for bedrock deployments only")
            return
        missing = [n for n in ("region", "aws_access_key_id", "aws_secret_access_key") if not getattr(self, n)]
        if missing:
            raise ValueError(
                f"a bedrock deployment needs {', '.join(missing)} (the AWS region, and an access key: "
                "aws_access_key_id, and aws_secret_access_key as secret:NAME; aws_session_token for a temporary one)"
            )
        if self.api_key:
            raise ValueError("a bedrock deployment signs its requests with an AWS access key, not api_key")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        # It becomes part of a host name: letters, digits and dashes only.
        if value is not None and not _REGION.match(value):
            raise ValueError("region must be a Vertex AI location (us-central1, global) or an AWS region (us-east-1)")
        return value

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        # It becomes part of the token URL's path.
        if value is not None and not _TENANT.match(value):
            raise ValueError("tenant_id must be an Entra ID tenant id (a GUID) or domain")
        return value

    @field_validator("authority_url")
    @classmethod
    def _authority(cls, value: str | None) -> str | None:
        return check_authority_url(value, "authority_url").rstrip("/") if value is not None else None

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        # It becomes part of a URL path: no slashes, no spaces.
        if value is not None and not _PROJECT.match(value):
            raise ValueError("project must be a Google Cloud project id (lower-case letters, digits, dashes)")
        return value

    @model_validator(mode="after")
    def _responses_api(self) -> DeploymentConfig:
        if not self.responses_api and PROVIDER_WIRE.get(self.provider) != "openai":
            raise ValueError("responses_api is for openai and azure deployments (the others are always translated)")
        return self

    def model_for(self, asked: str) -> str:
        """The provider's model id for a request that asked for `asked`."""
        return asked if self.model in (None, "*") else self.model

    def label(self, asked: str) -> str:
        """`name`, else `provider/model`."""
        return self.name or f"{self.provider}/{self.model_for(asked)}"


class ModelConfig(StrictModel):
    """A model name clients ask for and the deployments that serve it."""

    name: str = Field(description="the name clients send as `model`; a glob (`claude-*`) matches many")
    deployments: list[DeploymentConfig] = Field(min_length=1)
    strategy: Strategy = "priority"
    retries: int = Field(default=2, ge=0, le=10, description="more attempts after the first, on any deployment")
    total_timeout: float = Field(default=900.0, gt=0, description="seconds for all attempts of one request")
    cooldown_seconds: float = Field(default=30.0, ge=0, description="a deployment that keeps failing rests this long")
    fallbacks: list[str] = Field(default_factory=list, description="other models to try when every deployment failed")
    context_window_fallbacks: list[str] = Field(
        default_factory=list, description="models to try when the prompt is too long for this one"
    )
    content_policy_fallbacks: list[str] = Field(
        default_factory=list, description="models to try when a provider refuses the content"
    )
    drop_params: bool = Field(
        default=False, description="drop request fields a provider's format cannot carry instead of a 400"
    )
    default_max_tokens: int = Field(
        default=4096, gt=0, description="max_tokens sent where a provider requires one and the client gave none"
    )

    @property
    def is_glob(self) -> bool:
        """Whether `name` matches many model names."""
        return any(c in self.name for c in "*?[")

    def matches(self, asked: str) -> bool:
        """Whether a request for `asked` is served by this model."""
        return fnmatch.fnmatchcase(asked, self.name) if self.is_glob else asked == self.name

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or len(value) > 256 or any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("a model name is 1-256 characters without spaces")
        return value


# Provider keys in the usual environment variables serve models with no configuration at all.
# More specific globs first: a request is served by the first model whose name matches.
# Each: the key's variables (the first one set wins), the base URL's variable, provider, model glob.
ENV_PROVIDERS = (
    (("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL", "anthropic", "claude-*"),
    # Google's own SDKs read either name for an AI Studio key.
    (("GEMINI_API_KEY", "GOOGLE_API_KEY"), "GOOGLE_GEMINI_BASE_URL", "gemini", "gemini-*"),
    (("OPENAI_API_KEY",), "OPENAI_BASE_URL", "openai", "*"),
)


def models_from_environment(environ: dict[str, str] | None = None) -> list[ModelConfig]:
    """Models for the provider keys found in the environment (`OPENAI_API_KEY` serves every model
    name not claimed by another provider; `ANTHROPIC_API_KEY` serves `claude-*`; `GEMINI_API_KEY`,
    else `GOOGLE_API_KEY`, serves `gemini-*`)."""
    import os

    env = os.environ if environ is None else environ
    models = []
    for keys, base, provider, name in ENV_PROVIDERS:
        key = next((k for k in keys if env.get(k)), None)
        if key is not None:
            deployment = DeploymentConfig(provider=provider, api_key=f"env:{key}", base_url=env.get(base) or None)
            models.append(ModelConfig(name=name, deployments=[deployment]))
    return models
