"""Reading tool results in tests."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types


def text_of(result: types.CallToolResult) -> str:
    """The text blocks of a result, joined by newlines."""
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def body_of(result: types.CallToolResult) -> dict[str, Any]:
    """The structured content of a result, else its text parsed as JSON."""
    if isinstance(result.structured_content, dict):
        return result.structured_content
    return json.loads(text_of(result))
