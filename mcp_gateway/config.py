"""Gateway configuration: pydantic models of `gateway.yaml`, with `${ENV}` interpolation.

Precedence: built-in defaults < config file < `MCP_GATEWAY_*` environment
variables < command-line flags.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mcp_gateway import yaml12

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_API_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def default_data_dir() -> Path:
    """`$MCP_GATEWAY_DATA_DIR`, else `$XDG_DATA_HOME/mcp-gateway`, else `~/.local/share/mcp-gateway`."""
    if os.environ.get("MCP_GATEWAY_DATA_DIR"):
        return Path(os.environ["MCP_GATEWAY_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcp-gateway"


def _check_name(value: str) -> str:
    """API and virtual-server names: they appear in URLs, tool prefixes and the store."""
    if not _API_NAME.match(value):
        raise ValueError("must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    return value


_SWITCH_WORDS = {"yes": "on", "true": "on", "y": "on", "no": "off", "false": "off", "n": "off"}


def _switch(value: Any) -> Any:
    """Booleans and yes/no/true/false (any case) as `on`/`off`."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return _SWITCH_WORDS.get(value.strip().lower(), value.strip().lower())
    return value


# An off/on/auto setting; booleans, yes/no and any letter case are accepted too.
Switch = Annotated[Literal["off", "on", "auto"], BeforeValidator(_switch)]


LogLevel = Annotated[
    Literal["debug", "info", "warning", "error"], BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
]


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolFilter(_Model):
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

SECRET_REF = re.compile(r"^(secret|env):(.+)$")


def plain_secret_fields(model: BaseModel, where: str) -> list[str]:
    """The secret fields of a credential model written as plain text (for the startup warning)."""
    out: list[str] = []
    for name in getattr(model, "SECRET_FIELDS", ()):
        value = getattr(model, name, None)
        if isinstance(value, str) and not SECRET_REF.match(value):
            out.append(f"{where}.{name}")
    return out


PLAIN_HIDDEN = "<plain-text secret, hidden>"


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


class ApiKeyCredential(_Model):
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


class BasicCredential(_Model):
    """HTTP basic authentication."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    type: Literal["basic"]
    username: str
    password: str = Field(repr=False)


class BearerCredential(_Model):
    """A static bearer token (HTTP bearer, or an OAuth token the operator already holds)."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("token",)
    type: Literal["bearer"]
    token: str = Field(repr=False)


class _OAuthClient(_Model):
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


class ClientCertConfig(_Model):
    """TLS towards the upstream: a client certificate (mutual TLS) and/or a private CA to trust."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("key_password",)
    cert_file: Path | None = Field(default=None, description="the client certificate (PEM); omit to only set ca_file")
    key_file: Path | None = Field(default=None, description="default: the key is in cert_file")
    key_password: str | None = Field(default=None, repr=False)
    ca_file: Path | None = Field(default=None, description="trust this CA for the upstream instead of the system's")


class ApiConfig(_Model):
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

    _name = field_validator("name")(classmethod(lambda cls, value: _check_name(value)))


class ServerConfig(_Model):
    """The HTTP front door."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    stateless: bool = Field(default=True, description="no MCP sessions: any replica can answer any request")
    json_response: bool = Field(default=False, description="plain JSON responses instead of SSE streams")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values; port may be *")
    allowed_origins: list[str] = Field(default_factory=list)
    page_size: int = Field(default=500, gt=0, description="tools per tools/list page")
    discovery: Switch = Field(
        default="off",
        description="on: list every tool only through search_tools/describe_tool/call_tool; "
        "auto: do so when more than discovery_threshold tools are served; off: only for APIs with discovery: true",
    )
    discovery_threshold: int = Field(default=100, gt=0)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)


# Asymmetric JWS algorithms only. HS* is left out on purpose: verifying with a shared secret would
# let anyone holding it mint tokens, and it is the half of the classic HS/RS key-confusion attack.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def check_authority_url(value: str, what: str) -> str:
    """An https URL (plain http only on loopback, for development), without query or fragment."""
    parsed = urlparse(value)
    loopback = parsed.hostname in ("localhost", "127.0.0.1", "::1")
    if not parsed.netloc or not (parsed.scheme == "https" or (parsed.scheme == "http" and loopback)):
        raise ValueError(f"{what} must be an https URL (http only on localhost): {value!r}")
    if parsed.query or parsed.fragment:
        raise ValueError(f"{what} must not have a query or fragment: {value!r}")
    return value


class IssuerConfig(_Model):
    """One OAuth 2.1 authorization server whose JWT access tokens the gateway accepts."""

    issuer: str = Field(description="the exact `iss` of its tokens (also its RFC 8414 metadata base)")
    jwks_uri: str | None = Field(
        default=None,
        description="its signing keys; default: discovered from its authorization-server or OpenID metadata",
    )
    audience: str | None = Field(default=None, description="required `aud`; default: auth.resource")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], description="accepted `alg` values")
    consumer_claim: str = Field(default="sub", description="the claim that names the consumer")
    team_claim: str | None = Field(default=None, description="the claim that names the team, if any")
    org_claim: str | None = Field(default=None, description="the claim that names the organisation, if any")
    scopes_claim: str = Field(default="scope", description="space-separated string or list of scopes")
    leeway_seconds: int = Field(default=60, ge=0, le=600, description="clock skew allowed on exp / nbf / iat")
    jwks_cache_seconds: int = Field(default=3600, gt=0, description="keys are fetched again when older")
    jwks_min_refetch_seconds: float = Field(
        default=30.0, ge=0, description="least time between fetches caused by tokens with an unknown kid"
    )
    introspection_endpoint: str | None = Field(
        default=None, description="RFC 7662 endpoint: opaque (non-JWT) access tokens are checked there"
    )
    introspection_client_id: str | None = Field(default=None, description="the gateway's client at the issuer")
    introspection_client_secret: str | None = Field(
        default=None, repr=False, description="secret:NAME, env:NAME or (warned) plain text"
    )
    introspection_cache_seconds: float = Field(
        default=60.0, ge=0, description="an active answer is reused this long at most (a revocation's delay)"
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return check_authority_url(value, "issuer")

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_authority_url(value, "jwks_uri")

    @field_validator("introspection_endpoint")
    @classmethod
    def _introspection_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_authority_url(value, "introspection_endpoint")

    @model_validator(mode="after")
    def _introspection_client(self) -> IssuerConfig:
        if self.introspection_endpoint and not (self.introspection_client_id and self.introspection_client_secret):
            raise ValueError("introspection_endpoint needs introspection_client_id and introspection_client_secret")
        return self

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is needed")
        for alg in value:
            if alg not in JWT_ALGORITHMS:
                reason = (
                    "shared-secret (HS*) and unsigned tokens are not supported"
                    if alg.upper().startswith("HS") or alg.lower() == "none"
                    else f"supported: {', '.join(JWT_ALGORITHMS)}"
                )
                raise ValueError(f"algorithm {alg!r} not accepted: {reason}")
        return value


class AuthConfig(_Model):
    """Who may call the gateway. Off by default: every caller sees every tool."""

    enabled: bool = Field(default=False, description="require a credential on /mcp and apply policies")
    stdio_consumer: str | None = Field(default=None, description="the consumer `mcp-gateway stdio` runs as")
    key_rotation_grace_seconds: int = Field(default=24 * 3600, ge=0, description="old key's life after a rotation")
    resource: str | None = Field(
        default=None,
        description="canonical URL of this MCP endpoint (e.g. https://gateway.example.com/mcp): "
        "the audience JWTs must carry (RFC 8707) and the `resource` of the RFC 9728 metadata",
    )
    issuers: list[IssuerConfig] = Field(default_factory=list, description="authorization servers trusted for JWTs")
    required_scopes: list[str] = Field(default_factory=list, description="scopes every JWT must carry (else 403)")
    scopes_supported: list[str] = Field(
        default_factory=list, description="scopes advertised in the resource metadata; default: required_scopes"
    )

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlparse(value)
            # RFC 8707 §2: an absolute URI without a fragment.
            if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
                raise ValueError(f"resource must be an absolute http(s) URL without fragment: {value!r}")
        return value

    @field_validator("required_scopes", "scopes_supported")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not s or any(c.isspace() for c in s)]
        if bad:
            raise ValueError(f"a scope is one non-empty word: {bad!r}")
        return value

    @model_validator(mode="after")
    def _oauth(self) -> AuthConfig:
        names = [i.issuer for i in self.issuers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"issuer(s) listed twice: {', '.join(dupes)}")
        if self.issuers and self.resource is None:
            raise ValueError("auth.resource (this gateway's /mcp URL) is required when issuers are configured")
        return self


class ToolPick(_Model):
    """Tools of one API that a virtual server exposes, optionally renamed and re-described."""

    api: str
    tool: str = Field(default="*", description="tool name or glob")
    rename: str | None = Field(default=None, description="the name to expose (only with a single tool)")
    description: str | None = None

    @field_validator("rename")
    @classmethod
    def _rename(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and any(c in (info.data.get("tool") or "") for c in "*?["):
            raise ValueError("rename needs one tool name, not a glob")
        if value is not None and not re.match(r"^[A-Za-z0-9_-]{1,64}$", value):
            raise ValueError("must match ^[A-Za-z0-9_-]{1,64}$")
        return value


class VirtualServerConfig(_Model):
    """A named MCP endpoint, `/mcp/<name>`, exposing a curated part of the catalog."""

    name: str
    tools: list[ToolPick]
    discovery: Switch = "off"

    _name = field_validator("name")(classmethod(lambda cls, value: _check_name(value)))


class GatewayConfig(_Model):
    """The whole gateway configuration (the `gateway.yaml` root)."""

    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    database_url: str | None = Field(default=None, description="defaults to sqlite:///<data_dir>/gateway.db")
    admin_token: str | None = Field(default=None, description="enables /admin when set")
    apis: list[ApiConfig] = Field(default_factory=list)
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    servers: list[VirtualServerConfig] = Field(default_factory=list, description="virtual servers at /mcp/<name>")
    log_level: LogLevel = "info"
    log_payloads: bool = Field(
        default=False,
        description="log message payloads (tool arguments and results, prompts) that libraries write at debug "
        "level; off: those parts of their records are cut out",
    )
    user_agent: str = "mcp-gateway/0.1"
    base_url: str | None = Field(
        default=None,
        description="this gateway's public URL (e.g. https://gateway.example.com): connect links and the "
        "OAuth callback (<base_url>/oauth/callback) are built on it; default: http://<server.host>:<server.port>",
    )

    @property
    def public_url(self) -> str:
        """`base_url`, else the address `serve` listens on."""
        if self.base_url:
            return self.base_url.rstrip("/")
        host = self.server.host if ":" not in self.server.host else f"[{self.server.host}]"
        return f"http://{host}:{self.server.port}"

    @field_validator("apis")
    @classmethod
    def _unique_names(cls, apis: list[ApiConfig]) -> list[ApiConfig]:
        names = [a.name for a in apis]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate API name(s): {', '.join(dupes)}")
        return apis

    def check_data_dir(self) -> None:
        """Create the data dir if needed; ConfigError naming the problem and the fix when it cannot hold state."""
        where = self.data_dir
        fix = "choose another with --data-dir, MCP_GATEWAY_DATA_DIR or data_dir in the config"
        if where.exists() and not where.is_dir():
            raise ConfigError(f"data dir {where} is a file, not a directory: {fix}")
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"data dir {where} cannot be created ({exc.strerror or exc}): {fix}") from None
        if not os.access(where, os.W_OK | os.X_OK):
            raise ConfigError(f"data dir {where} is not writable by this user: {fix}")

    @property
    def database_path(self) -> Path:
        """The SQLite file behind `database_url`."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'gateway.db'}"
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"unsupported database_url {url!r}: only sqlite:///PATH is supported")
        return Path(url[len("sqlite:///") :])


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Replace `${NAME}` / `${NAME:-default}` in every string of a parsed config."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:  # type: ignore[operator]
                return env[name]  # type: ignore[index]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


def _env_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "MCP_GATEWAY_ADMIN_TOKEN" in os.environ:
        out["admin_token"] = os.environ["MCP_GATEWAY_ADMIN_TOKEN"]
    if "MCP_GATEWAY_DATABASE_URL" in os.environ:
        out["database_url"] = os.environ["MCP_GATEWAY_DATABASE_URL"]
    if "MCP_GATEWAY_LOG_LEVEL" in os.environ:
        out["log_level"] = os.environ["MCP_GATEWAY_LOG_LEVEL"].lower()
    # Where `serve` listens: containers set these, and the image's health check reads the same.
    server = {
        key: os.environ[f"MCP_GATEWAY_{key.upper()}"]
        for key in ("host", "port")
        if f"MCP_GATEWAY_{key.upper()}" in os.environ
    }
    if server:
        out["server"] = server
    return out


def _models_by_name() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending: list[type[BaseModel]] = [_Model]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's annotation can hold (through lists, dicts, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return [m for a in args for m in _models_in(a)]
    if origin is dict:
        return _models_in(args[1]) if len(args) == 2 else []
    return [m for a in args for m in _models_in(a)]


def _did_you_mean(root: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """For an unknown key at `loc`: the closest valid key there, as ` (did you mean 'x'?)`."""
    models = [root] if root is not None else []
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list index: same models
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if fields:
            models = [m for f in fields for m in _models_in(f.annotation)]
        # else: a dict key (credentials' scheme names): the models stay those of the dict's values
    names = {alias or name for m in models for name, f in m.model_fields.items() for alias in (f.alias, None)}
    close = difflib.get_close_matches(str(loc[-1]), sorted(names), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (valid keys: {', '.join(sorted(names))})" if 0 < len(names) <= 12 else ""


def describe_errors(exc: ValidationError) -> str:
    """A validation error as `where: what` lines, without the input values pydantic would quote:
    a malformed credential must not put its secret into an error message or a log. An unknown
    key gets the closest valid one suggested."""
    root = _models_by_name().get(exc.title)
    lines = []
    for e in exc.errors(include_input=False):
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key{_did_you_mean(root, tuple(e['loc']))}")
        else:
            lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def load_config(path: Path | None) -> GatewayConfig:
    """Read a config file (or none) and apply environment overrides.

    Relative spec paths in the file are taken relative to the file's folder.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml12.load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: {yaml12.describe_error(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config must be a mapping")
        raw = interpolate(raw)
        for api in raw.get("apis") or []:
            if isinstance(api, dict) and isinstance(api.get("spec"), str) and "://" not in api["spec"]:
                spec_path = Path(api["spec"]).expanduser()
                if not spec_path.is_absolute():
                    api["spec"] = str((path.parent / spec_path).resolve())
        if isinstance(raw.get("data_dir"), str) and not Path(raw["data_dir"]).is_absolute():
            raw["data_dir"] = str((path.parent / raw["data_dir"]).resolve())
    overrides = _env_overrides()
    if "server" in overrides:
        server = raw.get("server")
        overrides["server"] = {**(server if isinstance(server, dict) else {}), **overrides["server"]}
    raw.update(overrides)
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'configuration'}: {describe_errors(exc)}") from None
    except ValueError as exc:
        raise ConfigError(f"{path or 'configuration'}: {exc}") from None
