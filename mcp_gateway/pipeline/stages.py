"""Pipeline stages that every tool call passes."""

from __future__ import annotations

import logging
import time

import mcp_types as types

from mcp_gateway.pipeline import Call, Handler
from mcp_gateway.upstream.response import error_result

logger = logging.getLogger("mcp_gateway.calls")


def validate_arguments(next_handler: Handler) -> Handler:
    """Reject invalid arguments with a tool error naming each bad field; the upstream is not called."""

    async def handle(call: Call) -> types.CallToolResult:
        errors = call.tool.validate(call.arguments)
        if errors:
            lines = "\n".join(f"- {e}" for e in errors)
            return error_result(f"Invalid arguments for tool {call.tool.name}:\n{lines}")
        return await next_handler(call)

    return handle


def log_calls(next_handler: Handler) -> Handler:
    """One log line per call: tool, API, outcome, duration. Never the arguments or results."""

    async def handle(call: Call) -> types.CallToolResult:
        started = time.perf_counter()
        result = await next_handler(call)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "tool=%s api=%s error=%s ms=%.1f",
                call.tool.name, call.api.name, bool(result.is_error), (time.perf_counter() - started) * 1000,
            )  # fmt: skip
        return result

    return handle
