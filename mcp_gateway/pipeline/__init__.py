"""The call pipeline: every tool call passes the same stages, composed like middleware.

A stage is a plain callable that takes the next handler and returns a handler,
so stages compose the way Starlette middleware does and add no per-call
machinery: `compose([validate_arguments, log_calls], endpoint)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types

from mcp_gateway.auth.principal import Principal
from mcp_gateway.catalog import ApiEntry
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.upstream.credentials import Caller

ANONYMOUS = Caller()


@dataclass(slots=True)
class Call:
    """One tool call on its way through the pipeline."""

    tool: ToolDefinition
    api: ApiEntry
    arguments: dict[str, Any]
    # Who the call runs for: picks per-user upstream tokens and feeds token exchange.
    caller: Caller = ANONYMOUS
    # Who asked, with team, org and key (limits count by them); None when access control is off.
    principal: Principal | None = None
    # Filled by later stages (identity, limits, metering); plain data, no behaviour.
    context: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[types.CallToolResult]]
Stage = Callable[[Handler], Handler]


def compose(stages: Sequence[Stage], endpoint: Handler) -> Handler:
    """Wrap `endpoint` in `stages`; the first stage runs first."""
    handler = endpoint
    for stage in reversed(stages):
        handler = stage(handler)
    return handler


__all__ = ["Call", "Handler", "Stage", "compose"]
