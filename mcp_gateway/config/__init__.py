"""Gateway configuration: pydantic models of `gateway.yaml`, with `${ENV}` interpolation.

Precedence: built-in defaults < config file < `MCP_GATEWAY_*` environment
variables < command-line flags.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from mcp_gateway import yaml12
from mcp_gateway.config.apis import (
    HTTP_METHODS,
    ApiConfig,
    ApiKeyCredential,
    BasicCredential,
    BearerCredential,
    ClientCertConfig,
    ClientCredentialsCredential,
    Credential,
    TokenExchangeCredential,
    ToolFilter,
    UserOAuthCredential,
    public_api_config,
    registration_secret_problems,
)
from mcp_gateway.config.auth import AuthConfig, IssuerConfig
from mcp_gateway.config.base import (
    JWT_ALGORITHMS,
    PLAIN_HIDDEN,
    SECRET_REF,
    ConfigError,
    LogLevel,
    StrictModel,
    Switch,
    check_authority_url,
    check_database_url,
    check_name,
    default_data_dir,
    plain_secret_fields,
)
from mcp_gateway.config.budgets import AlertsConfig, BudgetRule, BudgetsConfig
from mcp_gateway.config.costs import ToolCost
from mcp_gateway.config.limits import LimitMatch, LimitRule, LimitsConfig
from mcp_gateway.config.models import DeploymentConfig, ModelConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ServerConfig(StrictModel):
    """The HTTP front door."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    stateless: bool = Field(default=True, description="no MCP sessions: any replica can answer any request")
    json_response: bool = Field(default=False, description="plain JSON responses instead of SSE streams")
    fast_path: bool = Field(
        default=True,
        description="serve a plain stateless tools/call without the SDK's per-request transport (same "
        "answers, JSON or SSE; anything else takes the SDK path)",
    )
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
    max_model_request_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="largest /v1 request body (prompts with images are large)"
    )


# Asymmetric JWS algorithms only. HS* is left out on purpose: verifying with a shared secret would
# let anyone holding it mint tokens, and it is the half of the classic HS/RS key-confusion attack.
class ToolPick(StrictModel):
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


class VirtualServerConfig(StrictModel):
    """A named MCP endpoint, `/mcp/<name>`, exposing a curated part of the catalog."""

    name: str
    tools: list[ToolPick]
    discovery: Switch = "off"

    _name = field_validator("name")(classmethod(lambda cls, value: check_name(value)))


class MeteringConfig(StrictModel):
    """The ledger: one row per tool or model call, in the gateway's database."""

    ledger: bool = Field(default=True, description="write every call to the ledger")
    flush_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often records are written: at most this much is lost in a crash"
    )
    retention_days: float = Field(
        default=30, ge=0, description="raw rows older than this are deleted once rolled up into hourly totals "
        "(kept for good); 0 keeps raw rows for good",
    )  # fmt: skip


class MetricsConfig(StrictModel):
    """`GET /metrics` in the Prometheus text format."""

    enabled: bool = Field(default=True, description="serve /metrics and count calls")
    public: bool = Field(
        default=False,
        description="false: /metrics needs the admin token, as /admin does (without an admin token it is not "
        "served: 404); true: anyone who reaches the port may read it",
    )
    consumer_labels: bool = Field(
        default=False, description="label tool and model call counts by consumer (one series per consumer)"
    )


class TracesConfig(StrictModel):
    """OpenTelemetry traces (observe/traces.py), exported over OTLP/HTTP."""

    enabled: bool | None = Field(
        default=None,
        description="default: on when OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or "
        "OTEL_TRACES_EXPORTER (otlp or console) is set, off otherwise (and off with OTEL_SDK_DISABLED=true)",
    )
    endpoint: str | None = Field(
        default=None,
        description="the collector's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (/v1/traces is appended); "
        "default: the OTEL_EXPORTER_OTLP_* variables",
    )
    service_name: str | None = Field(default=None, description="default: OTEL_SERVICE_NAME, else mcp-gateway")
    capture_content: bool = Field(
        default=False,
        description="record prompts, completions, tool arguments and results on spans, with every known secret "
        "scrubbed (also on with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (the collector's OTLP/HTTP address)")
        return value


class GatewayConfig(StrictModel):
    """The whole gateway configuration (the `gateway.yaml` root)."""

    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    database_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB; defaults to sqlite:///<data_dir>/gateway.db",
    )
    admin_token: str | None = Field(default=None, description="enables /admin when set")
    apis: list[ApiConfig] = Field(default_factory=list)
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    servers: list[VirtualServerConfig] = Field(default_factory=list, description="virtual servers at /mcp/<name>")
    models: list[ModelConfig] = Field(
        default_factory=list,
        description="LLM models served at /v1; default: one per provider key found in the environment",
    )
    models_from_env: bool = Field(
        default=True,
        description="with no models configured, serve the providers whose keys are in OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY, GEMINI_API_KEY",
    )
    metering: MeteringConfig = Field(default_factory=MeteringConfig)
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="rate limits on tool and model calls (rules, and Redis to share them)"
    )
    budgets: BudgetsConfig = Field(
        default_factory=BudgetsConfig,
        description="spend caps in USD per day, week, month or in total, on tool and model calls (and alerts)",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    traces: TracesConfig = Field(default_factory=TracesConfig)
    log_level: LogLevel = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line, the call lines' fields as keys"
    )
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

    @field_validator("apis", "models")
    @classmethod
    def _unique_names(cls, items: list[ApiConfig] | list[ModelConfig], info: ValidationInfo) -> list[Any]:
        names = [item.name for item in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            what = "API" if info.field_name == "apis" else "model"
            raise ValueError(f"duplicate {what} name(s): {', '.join(dupes)}")
        return items

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

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return check_database_url(value) if value is not None else None

    @property
    def database(self) -> str:
        """`database_url`, else the SQLite file `<data_dir>/gateway.db`."""
        return self.database_url or f"sqlite:///{self.data_dir / 'gateway.db'}"


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
    if "MCP_GATEWAY_LOG_FORMAT" in os.environ:
        out["log_format"] = os.environ["MCP_GATEWAY_LOG_FORMAT"].lower()
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
    pending: list[type[BaseModel]] = [StrictModel]
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
    return f" (valid keys: {', '.join(sorted(names))})" if 0 < len(names) <= 20 else ""


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


__all__ = [
    "HTTP_METHODS",
    "JWT_ALGORITHMS",
    "PLAIN_HIDDEN",
    "SECRET_REF",
    "AlertsConfig",
    "ApiConfig",
    "ApiKeyCredential",
    "AuthConfig",
    "BasicCredential",
    "BearerCredential",
    "BudgetRule",
    "BudgetsConfig",
    "ClientCertConfig",
    "ClientCredentialsCredential",
    "ConfigError",
    "Credential",
    "DeploymentConfig",
    "GatewayConfig",
    "IssuerConfig",
    "LimitMatch",
    "LimitRule",
    "LimitsConfig",
    "LogLevel",
    "MetricsConfig",
    "ModelConfig",
    "ServerConfig",
    "Switch",
    "TokenExchangeCredential",
    "ToolCost",
    "ToolFilter",
    "ToolPick",
    "TracesConfig",
    "UserOAuthCredential",
    "VirtualServerConfig",
    "check_authority_url",
    "check_name",
    "default_data_dir",
    "describe_errors",
    "interpolate",
    "load_config",
    "plain_secret_fields",
    "public_api_config",
    "registration_secret_problems",
]
