"""The base URL of an API (or of one operation) from a spec's `servers`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit


def server_url(data: Mapping[str, Any], spec_uri: str) -> str | None:
    """The first usable server URL: variables set to their defaults, relative URLs resolved
    against the spec's URL. No `servers` at all means `/` (OpenAPI 3.x), i.e. the host that
    serves the spec. None when nothing usable is left (e.g. a relative URL and a spec file)."""
    servers = data.get("servers")
    if not isinstance(servers, list) or not servers:
        servers = [{"url": "/"}]
    for server in servers:
        if isinstance(server, dict) and (url := one_server_url(server, spec_uri)):
            return url
    return None


def one_server_url(server: Mapping[str, Any], spec_uri: str) -> str | None:
    """One Server Object's URL, or None when it cannot be made absolute http(s)."""
    url = str(server.get("url", ""))
    variables = server.get("variables")
    for name, var in (variables if isinstance(variables, dict) else {}).items():
        if isinstance(var, dict) and "default" in var:
            url = url.replace("{" + name + "}", str(var["default"]))
    if not urlsplit(url).scheme:
        # Relative server URLs are relative to where the spec came from.
        if not spec_uri.startswith(("http://", "https://")):
            return None
        url = urljoin(spec_uri, url)
    if urlsplit(url).scheme not in ("http", "https") or "{" in url:
        return None
    return url
