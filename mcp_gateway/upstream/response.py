"""Upstream HTTP responses -> MCP tool results.

JSON becomes `structured_content` plus its text; text stays text; images and
audio become image/audio content; other binary becomes an embedded resource.
HTTP errors become tool errors that carry the status and a trimmed body.
Whatever the agent will see (the decoded text, the parsed JSON, binary content) is
scrubbed of the call's secrets here, after decoding, so no spelling of them gets through.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import mcp_types as types

from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.upstream.client import UpstreamResponse
from mcp_gateway.upstream.scrub import NO_SECRETS, Scrubber

MAX_ERROR_BODY_CHARS = 2000


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json") or content_type.endswith("/json")


def _is_text(content_type: str) -> bool:
    return (
        content_type.startswith("text/")
        or content_type.endswith("/xml")
        or content_type.endswith("+xml")
        or content_type in ("application/javascript", "application/x-www-form-urlencoded", "application/yaml")
    )


def _decode(body: bytes, response: UpstreamResponse) -> str:
    charset = "utf-8"
    for part in response.headers.get("content-type", "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def error_result(message: str) -> types.CallToolResult:
    """A tool error with one text block."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _scrubbed_json(text: str, data: Any, scrub: Scrubber) -> tuple[str, Any]:
    """The text and parsed value of a JSON body, both free of secrets. Re-encoded only when a
    decoded string held one: a secret may be spelled with escapes the raw text hides."""
    if not scrub.present(text):
        return text, data
    cleaned = scrub.data(data)
    if cleaned is not data:
        text = json.dumps(cleaned, ensure_ascii=False)
    return scrub.text(text), cleaned


def to_result(tool: ToolDefinition, response: UpstreamResponse, scrub: Scrubber = NO_SECRETS) -> types.CallToolResult:
    """Convert a read upstream response into the tool result the agent sees, without `scrub`'s secrets."""
    ctype = response.content_type
    body = response.body
    reason = scrub.text(response.reason)  # the upstream's words too
    if response.status >= 400:
        # Scrubbed before trimming: a cut through a secret would leave a part of it unmatched.
        text = scrub.text(_decode(body, response)).strip()
        if len(text) > MAX_ERROR_BODY_CHARS:
            text = text[:MAX_ERROR_BODY_CHARS] + "… (truncated)"
        head = f"HTTP {response.status} {reason}".strip()
        return error_result(f"{head}: {text}" if text else head)

    wants_structure = tool.output_schema is not None
    if not body:
        text = f"HTTP {response.status} {reason}".strip() + " (no content)"
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content={} if wants_structure else None
        )
    if _is_json(ctype) or (not ctype and body[:1] in (b"{", b"[")):
        text = _decode(body, response)
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = None
            ctype = "text/plain"
        else:
            text, data = _scrubbed_json(text, data, scrub)
            # Whatever shape the upstream sends, structured content is an object:
            # non-objects are wrapped, so the client's outputSchema check cannot fail.
            structured = data if isinstance(data, dict) else {"result": data}
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)], structured_content=structured
            )
    if _is_text(ctype) or not ctype or ctype == "text/plain":
        text = scrub.text(_decode(body, response))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content={"result": text} if wants_structure else None,
        )
    body = scrub.binary(body)
    blob = base64.b64encode(body).decode("ascii")
    if ctype.startswith("image/"):
        block: Any = types.ImageContent(type="image", data=blob, mime_type=ctype)
    elif ctype.startswith("audio/"):
        block = types.AudioContent(type="audio", data=blob, mime_type=ctype)
    else:
        # A synthetic URI: the upstream URL may carry query values that must not be echoed.
        block = types.EmbeddedResource(
            type="resource",
            resource=types.BlobResourceContents(
                uri=f"mcp-gateway://{tool.api}/{tool.name}/response", mime_type=ctype, blob=blob
            ),
        )
    note = types.TextContent(type="text", text=f"HTTP {response.status}: {ctype} content, {len(body)} bytes")
    return types.CallToolResult(content=[note, block], structured_content={} if wants_structure else None)
