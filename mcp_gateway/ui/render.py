"""Rendering the console's pages: Jinja2 templates shipped in the package, autoescaped, and the
headers every console answer carries (no caching, no framing, a strict Content-Security-Policy)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, Response

# Scripts, styles and images from the console itself only: no inline script or style at all
# (the charts are SVG with classes), so an injected tag could do nothing even if it got through.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send `Origin: null` on form posts, which the front door refuses.
    "Referrer-Policy": "same-origin",
}


def when(at: float | None) -> str:
    """Epoch seconds as a UTC time, to the second."""
    return "—" if at is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def usd(value: Decimal | str | None) -> str:
    """A cost for people: up to six decimals, exact sums kept in CSV exports."""
    if value is None:
        return "—"
    amount = Decimal(value)
    return f"${amount:.6f}".rstrip("0").rstrip(".") if amount else "$0"


def pretty_json(value: Any) -> str:
    """Indented JSON (a tool's schemas)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def environment() -> Environment:
    """The templates' environment: autoescape on for every template, unknown names an error."""
    env = Environment(
        loader=PackageLoader("mcp_gateway.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, usd=usd, pretty_json=pretty_json)
    return env


def page(env: Environment, template: str, status: int = 200, **context: Any) -> Response:
    """A rendered page with the console's headers."""
    html = env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
