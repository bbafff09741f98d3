"""Upstream APIs: a spec, where to send calls, which operations become tools, credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
)

from mcp_gateway.config.base import (
    PLAIN_HIDDEN,
    StrictModel,
    check_authority_url,
    check_name,
    plain_secret_fields,
)
from mcp_gateway.config.costs import ToolCost

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ToolFilter(StrictModel):
    """Which operations of an API become tools. Exclusions win over inclusions.

    Each list is optional; an empty include list means "everything".
    Globs use shell-style wildcards (`*`, `?`, `[...]`).
    """

    include_tags: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)
    include_operations: list[str] = Field(default_factory=list, description="operationId or tool-name globs")
    exclude_operations: list[str] = Field(default_factory=list)
    include_paths: list[str] = Field(default_factory=list, description="path globs, e.g. /pets/*")
    exclude_paths: list[str] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list, description="HTTP methods to keep, e.g. [get]")

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        lowered = [m.lower() for m in value]
        bad = [m for m in lowered if m not in HTTP_METHODS]
        if bad:
            raise ValueError(f"unknown HTTP method(s): {', '.join(bad)}")
        return lowered


# -- upstream credentials ------------------------------------------------------------
# Secret fields hold a reference: `secret:NAME` (the vault), `env:NAME` (an environment
# variable), or, with a warning, the plain value. They are resolved when the API's upstream is
# built, never at config load, so a config file can be shown without revealing anything.


def public_api_config(api: ApiConfig) -> dict[str, Any]:
    """An API's config as JSON for display (admin API, CLI): plain-text secrets are masked;
    references (`secret:NAME`, `env:NAME`) are shown, since they reveal nothing."""
    data = api.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    for scheme, credential in api.credentials.items():
        for name in plain_secret_fields(credential, ""):
            data["credentials"][scheme][name.lstrip(".")] = PLAIN_HIDDEN
    if api.client_cert is not None:
        for name in plain_secret_fields(api.client_cert, ""):
            data["client_cert"][name.lstrip(".")] = PLAIN_HIDDEN
    return data


def registration_secret_problems(api: ApiConfig) -> list[str]:
    """Why a run-time registration's credentials are refused: those must name vault secrets.

    Plain text would put the secret in the registration store unencrypted; `env:` would let
    whoever holds the admin token send any of the gateway's environment (the master key among
    it) to a base URL of their choosing. Both stay possible in the operator's config file."""
    problems: list[str] = []
    refs: list[tuple[str, str]] = []
    for scheme, credential in api.credentials.items():
        for name in getattr(credential, "SECRET_FIELDS", ()):
            value = getattr(credential, name)
            if isinstance(value, str):
                refs.append((f"credentials.{scheme}.{name}", value))
    if api.client_cert is not None and api.client_cert.key_password is not None:
        refs.append(("client_cert.key_password", api.client_cert.key_password))
    for where, value in refs:
        if not value.startswith("secret:"):
            problems.append(f"{where} must be a vault reference (secret:NAME) in a registration")
    if api.client_cert is not None:
        problems.append("client_cert reads files on the gateway host: set it in the config file")
    return problems


class ApiKeyCredential(StrictModel):
    """An API key; where it goes comes from the spec's apiKey scheme (or `in`/`name` here)."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("value",)
    type: Literal["api_key"]
    value: str = Field(repr=False)
    location: Literal["header", "query", "cookie"] | None = Field(
        default=None, alias="in", description="required when not bound to an apiKey scheme"
    )
    name: str | None = Field(default=None, description="header, query or cookie name (with `in`)")
    prefix: str = Field(default="", description="put before the key, e.g. 'token ' (GitHub-style headers)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BasicCredential(StrictModel):
    """HTTP basic authentication."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    type: Literal["basic"]
    username: str
    password: str = Field(repr=False)


class BearerCredential(StrictModel):
    """A static bearer token (HTTP bearer, or an OAuth token the operator already holds)."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("token",)
    type: Literal["bearer"]
    token: str = Field(repr=False)


class _OAuthClient(StrictModel):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("client_secret",)
    client_id: str
    client_secret: str | None = Field(default=None, repr=False)
    token_url: str | None = Field(default=None, description="default: the scheme's flow tokenUrl")
    scopes: list[str] | None = Field(default=None, description="default: the scopes the operation requires")
    auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = "client_secret_basic"

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return None if value is None else check_authority_url(value, "token_url")


class ClientCredentialsCredential(_OAuthClient):
    """OAuth 2.0 client credentials grant: the gateway's own token, cached and refreshed."""

    type: Literal["oauth2_client_credentials"]
    audience: str | None = None
    resource: str | None = None


class UserOAuthCredential(_OAuthClient):
    """Per-user OAuth (authorization code + PKCE): each consumer connects their own account."""

    type: Literal["oauth2_user"]
    authorization_url: str | None = Field(default=None, description="default: the scheme's flow authorizationUrl")
    revocation_url: str | None = Field(default=None, description="RFC 7009 endpoint, used on disconnect")

    @field_validator("authorization_url", "revocation_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else check_authority_url(value, "authorization_url / revocation_url")


class TokenExchangeCredential(_OAuthClient):
    """RFC 8693: trade the caller's inbound token for an upstream token at `token_url`."""

    type: Literal["oauth2_token_exchange"]
    token_url: str  # type: ignore[assignment]
    audience: str | None = None
    resource: str | None = None


Credential = Annotated[
    ApiKeyCredential
    | BasicCredential
    | BearerCredential
    | ClientCredentialsCredential
    | UserOAuthCredential
    | TokenExchangeCredential,
    Field(discriminator="type"),
]


class ClientCertConfig(StrictModel):
    """TLS towards the upstream: a client certificate (mutual TLS) and/or a private CA to trust."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("key_password",)
    cert_file: Path | None = Field(default=None, description="the client certificate (PEM); omit to only set ca_file")
    key_file: Path | None = Field(default=None, description="default: the key is in cert_file")
    key_password: str | None = Field(default=None, repr=False)
    ca_file: Path | None = Field(default=None, description="trust this CA for the upstream instead of the system's")


class ApiConfig(StrictModel):
    """One upstream API: its spec, where to send calls, and how its tools look."""

    name: str = Field(description="unique API name (letters, digits, _ and -)")
    spec: str = Field(description="path or URL of the OpenAPI / Swagger document")
    base_url: str | None = Field(default=None, description="overrides the spec's servers")
    prefix: str | None = Field(default=None, description="prepended to every tool name as PREFIX_")
    filter: ToolFilter = Field(default_factory=ToolFilter)
    timeout: float = Field(default=30.0, gt=0, description="seconds for one upstream call")
    connect_timeout: float = Field(default=10.0, gt=0)
    max_response_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_connections: int = Field(default=100, gt=0)
    description_max_chars: int = Field(default=1024, ge=80)
    # Ingest tuning for large APIs (README, "Configuration reference").
    schema_description_max_chars: int = Field(
        default=200, ge=0, description="descriptions inside argument and result schemas are trimmed to this; 0 drops"
    )
    output_schema_max_bytes: int = Field(
        default=2048, ge=0, description="result schemas over this are cut to their shape and fewer $defs levels"
    )
    discovery: bool = Field(default=False, description="list this API's tools only through the search meta-tools")
    credentials: dict[str, Credential] = Field(
        default_factory=dict,
        description="securityScheme name -> credential; '*' applies to operations no named binding covers",
    )
    client_cert: ClientCertConfig | None = None
    allow_unauthenticated: bool = Field(
        default=False,
        description="send operations whose security no configured credential meets without credentials "
        "(for APIs that also serve anonymous callers); default: refuse them with a clear tool error",
    )
    cost: ToolCost | None = Field(
        default=None,
        description="what each tool call costs, in USD: a number (flat), or {header: NAME} / {pointer: /json/pointer} "
        "read from the response (ledger and budgets); default: nothing",
    )
    tool_costs: dict[str, ToolCost] = Field(
        default_factory=dict, description="tool name or glob -> its cost, over `cost` (the first match wins)"
    )
    drift_check: bool = Field(
        default=True,
        description="check sampled upstream responses against the spec in the background and report where they "
        "differ (`mcp-gateway apis drift NAME`, GET /admin/apis/NAME/drift)",
    )
    drift_sample_seconds: float = Field(
        default=60.0,
        ge=0,
        description="check a tool's first response, then at most one per this many seconds (per gateway process); "
        "0: every response, as long as the checking queue has room",
    )

    _name = field_validator("name")(classmethod(lambda cls, value: check_name(value)))
