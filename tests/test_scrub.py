"""Scrubbing a call's secrets from what the agent sees, in every spelling an upstream may use.

The unit tests spell secrets the ways real encoders do (PHP's `\\/`, Go's `\\u0026`, Python's
ensure_ascii `\\u00e9` and surrogate pairs, upper-case hex, JSON inside JSON, percent-encoding
in either case, base64 at any alignment); the end-to-end test runs a real upstream that echoes
its credentials in each of those styles, through a running gateway and the MCP client, and
checks both the text and the structured content the agent gets.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, GatewayConfig
from mcp_gateway.upstream.scrub import REDACTED, scrubber
from tests.conftest import running_gateway
from tests.leaks import leaked
from tests.results import text_of
from tests.servers import serve_in_thread

HEADER_SECRET = "hk/5f1c&9e2a<7b3d>x"
QUERY_SECRET = 'qk/é😀&"x<y>-77aa88bb'
SECRETS = [HEADER_SECRET, QUERY_SECRET, "ghp_R3alLyS3cretT0kenValue0123456789", 'pa:ss w0rd-é"quoted"']


def upper_hex(text: str) -> str:
    return re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m[0][2:].upper(), text)


def lower_percent(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), text)


def spellings(secret: str) -> dict[str, str]:
    """How encoders in the wild write `secret` (inside a JSON string, or on its own)."""
    ascii_json = json.dumps(secret)[1:-1]
    return {
        "plain": secret,
        "percent": quote(secret, safe=""),
        "percent lower-case": lower_percent(quote(secret, safe="")),
        "form": quote_plus(secret),
        "json": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json ensure_ascii": ascii_json,
        "json upper-case hex": upper_hex(ascii_json),
        "php": ascii_json.replace("/", "\\/"),
        "go": json.dumps(secret, ensure_ascii=False)[1:-1]
        .replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e"),
        "json in json": json.dumps(json.dumps({"k": secret}))[1:-1],
        "json in json in json": json.dumps(json.dumps(json.dumps({"k": secret})))[1:-1],
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64 url-safe": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        "basic pair": base64.b64encode(f"user:{secret}".encode()).decode(),
        "basic pair, offset 2": base64.b64encode(f"us:{secret}!".encode()).decode(),
        "basic pair latin-1": base64.b64encode(f"u:{secret}".encode("latin-1", "replace")).decode(),
    }


@pytest.mark.parametrize("secret", SECRETS)
def test_every_spelling_is_scrubbed(secret: str) -> None:
    scrub = scrubber(SECRETS)
    for name, spelled in spellings(secret).items():
        if name == "basic pair latin-1" and not secret.isascii() and any(ord(c) > 255 for c in secret):
            continue  # not representable in Latin-1: authlib could not send it either
        text = f"before {spelled} after"
        assert leaked(secret, text), f"the detector must see the {name} spelling"
        cleaned = scrub.text(text)
        assert not leaked(secret, cleaned), f"{name}: {cleaned!r}"
        assert REDACTED in cleaned and cleaned.startswith("before ") and cleaned.endswith(" after")


def test_json_is_scrubbed_as_decoded_keys_values_numbers_and_nested_json() -> None:
    scrub = scrubber([QUERY_SECRET, "12345678"])
    data = {
        "kept": "visible",
        QUERY_SECRET: "as a key",
        "list": ["a", f"Bearer {QUERY_SECRET}", 12345678, 7, True],
        "nested": json.dumps({"inner": QUERY_SECRET, "n": 1}),
        "fragment": "not json: " + json.dumps(QUERY_SECRET)[1:-1],
    }
    cleaned = scrub.data(data)
    shown = json.dumps(cleaned, ensure_ascii=False)
    assert not leaked(QUERY_SECRET, shown) and "12345678" not in shown
    assert cleaned["kept"] == "visible" and cleaned["list"][3:] == [7, True]
    assert json.loads(cleaned["nested"]) == {"inner": REDACTED, "n": 1}  # still JSON


def test_clean_text_and_data_are_returned_untouched() -> None:
    scrub = scrubber(SECRETS)
    text = '{"name": "widget", "tags": ["a", "b"]} ' * 100
    data = json.loads('{"a": ["b", {"c": 1}], "d": 2.5}')
    assert scrub.text(text) is text and not scrub.present(text)
    assert scrub.data(data) is data
    assert not scrubber(["abc"])  # too short to scrub without mangling ordinary text


# -- end to end: a real upstream echoing its credentials in each style --------------------------


def echo_styles() -> Starlette:
    """Answers with the credentials it received, encoded as the `style` path segment says."""

    async def echo(request: Request) -> Response:
        payload = {
            "header": request.headers.get("x-api-key", ""),
            "query": request.query_params.get("api_key", ""),
            "raw_query": request.url.query,
            "kept": "visible-marker",
        }
        style = request.path_params["style"]
        as_json = "application/json"
        if style == "python":  # json.dumps' default: \u00e9 and surrogate pairs
            return Response(json.dumps(payload), media_type=as_json)
        if style == "upper-hex":
            return Response(upper_hex(json.dumps(payload)), media_type=as_json)
        if style == "php":
            return Response(json.dumps(payload).replace("/", "\\/"), media_type=as_json)
        if style == "go":
            text = json.dumps(payload, ensure_ascii=False)
            for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
                text = text.replace(char, escape)
            return Response(text, media_type=as_json)
        if style == "nested":
            inner = json.dumps({"inner": json.dumps(payload)})
            return Response(json.dumps({"kept": "visible-marker", "payload": inner}), media_type=as_json)
        if style == "utf-16":
            body = json.dumps(payload, ensure_ascii=False).encode("utf-16")
            return Response(body, media_type="application/json; charset=utf-16")
        if style == "text":
            basic = base64.b64encode(f"user:{payload['query']}".encode()).decode()
            text = f"got {json.dumps(payload)}; basic {basic}; query {lower_percent(payload['raw_query'])}"
            return Response(text, media_type="text/plain")
        if style == "error":
            page = f"<pre>{json.dumps(payload).replace('/', chr(92) + '/')}</pre>"
            return Response(page, status_code=500, media_type="text/html")
        return Response(status_code=404)

    return Starlette(routes=[Route("/echo/{style}", echo)])


STYLES = ["python", "upper-hex", "php", "go", "nested", "utf-16", "text", "error"]
SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "echo styles", "version": "1"},
    "components": {
        "securitySchemes": {
            "hk": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "qk": {"type": "apiKey", "in": "query", "name": "api_key"},
        }
    },
    "security": [{"hk": [], "qk": []}],
    "paths": {
        "/echo/{style}": {
            "get": {
                "operationId": "echoStyle",
                "parameters": [{"name": "style", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok"}},
            }
        }
    },
}


@pytest.fixture
def styles_gateway(tmp_path: Path) -> Iterator[str]:
    spec = tmp_path / "styles.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    credentials = {
        "hk": {"type": "api_key", "value": "secret:hk"},
        "qk": {"type": "api_key", "value": "secret:qk"},
    }
    with serve_in_thread(echo_styles()) as upstream:
        api = ApiConfig(name="styles", spec=str(spec), base_url=upstream, credentials=credentials)
        with running_gateway(GatewayConfig(data_dir=tmp_path / "data", apis=[api])) as (url, gateway):
            gateway.vault.set("hk", HEADER_SECRET)
            gateway.vault.set("qk", QUERY_SECRET)
            yield url


@pytest.mark.anyio
async def test_echoed_credentials_are_scrubbed_in_every_style(styles_gateway: str) -> None:
    async with Client(styles_gateway, mode="legacy") as client:
        results = {style: await client.call_tool("echoStyle", {"style": style}) for style in STYLES}
    shown = {
        style: (text_of(result), json.dumps(result.structured_content, ensure_ascii=False))
        for style, result in results.items()
    }
    leaks = [
        f"{style}: {seen[:200]}"
        for style, views in shown.items()
        for seen in views
        for secret in (HEADER_SECRET, QUERY_SECRET)
        if leaked(secret, seen)
    ]
    assert not leaks, "\n".join(leaks)
    for style, (text, structured) in shown.items():
        assert REDACTED in text and "visible-marker" in text, style  # scrubbed; the rest is kept
        if style not in ("text", "error"):
            assert not results[style].is_error and "visible-marker" in structured, style
