"""What every part of the configuration shares: the model base, names, secret references, URLs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

_API_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def default_data_dir() -> Path:
    """`$MCP_GATEWAY_DATA_DIR`, else `$XDG_DATA_HOME/mcp-gateway`, else `~/.local/share/mcp-gateway`."""
    if os.environ.get("MCP_GATEWAY_DATA_DIR"):
        return Path(os.environ["MCP_GATEWAY_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcp-gateway"


_DATABASE_URL = re.compile(r"^(sqlite|postgres|postgresql|postgresql\+psycopg)://")


def check_database_url(value: str) -> str:
    """`sqlite:///PATH` or `postgresql://USER:PASSWORD@HOST:PORT/DB` (`postgres://` too). The error
    never quotes the value: it may hold a password."""
    match = _DATABASE_URL.match(value)
    if match is None:
        raise ValueError("must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    if match.group(1) == "sqlite" and (
        not value.startswith("sqlite:///") or value in ("sqlite:///", "sqlite:///:memory:")
    ):
        raise ValueError("a SQLite database_url names a file: sqlite:///relative/path or sqlite:////absolute/path")
    return value


def check_name(value: str) -> str:
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


class StrictModel(BaseModel):
    """A config model: unknown keys are errors (with the closest valid key suggested)."""

    model_config = ConfigDict(extra="forbid")


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
