"""Upstream: tool calls become HTTP requests; HTTP responses become tool results.

Every upstream kind sits behind one small interface, `Upstream`: REST APIs now,
LLM providers later. The pipeline only ever sees that interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import mcp_types as types

from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.upstream.credentials import Caller


class Upstream(Protocol):
    """Something a tool call can be sent to."""

    async def invoke(
        self,
        tool: ToolDefinition,
        arguments: Mapping[str, Any],
        caller: Caller = ...,
        facts: dict[str, Any] | None = None,
    ) -> types.CallToolResult:
        """Perform the call for `caller`; failures come back as tool error results, never as
        exceptions. `facts` gets what the exchange came to (status, sizes) for the ledger."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


__all__ = ["Caller", "Upstream"]
