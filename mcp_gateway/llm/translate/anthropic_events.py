"""Writing an Anthropic Messages stream, whatever it is translated from: events, and content
blocks opened, filled and closed one at a time, numbered in order."""

from __future__ import annotations

from typing import Any

from mcp_gateway.llm import sse


def event(name: str, data: dict[str, Any]) -> bytes:
    """One Anthropic stream event, framed (`event:` line and `type` both name it)."""
    return sse.encode({"type": name, **data}, name)


class Blocks:
    """The content blocks of one Anthropic stream: at most one open at a time."""

    def __init__(self) -> None:
        self.index = -1  # the last content block started
        self.open: str | None = None  # what the block open now holds ("text", "thinking", ...)

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        """Start a block of `kind` unless one is open already (the one open before is closed)."""
        if self.open == kind:
            return []
        out = self._close()
        self.index += 1
        self.open = kind
        out.append(event("content_block_start", {"index": self.index, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        """Close the open block, if any."""
        if self.open is None:
            return []
        self.open = None
        return [event("content_block_stop", {"index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        """A delta of the open block."""
        return event("content_block_delta", {"index": self.index, "delta": delta})
