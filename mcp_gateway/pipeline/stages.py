"""Pipeline stages that every tool call passes."""

from __future__ import annotations

import time

import mcp_types as types

from mcp_gateway.metering import CallRecord, Meter
from mcp_gateway.pipeline import Call, Handler, Stage
from mcp_gateway.upstream.response import error_result


def validate_arguments(next_handler: Handler) -> Handler:
    """Reject invalid arguments with a tool error naming each bad field; the upstream is not called."""

    async def handle(call: Call) -> types.CallToolResult:
        errors = call.tool.validate(call.arguments)
        if errors:
            lines = "\n".join(f"- {e}" for e in errors)
            return error_result(f"Invalid arguments for tool {call.tool.name}:\n{lines}")
        return await next_handler(call)

    return handle


def meter_calls(meter: Meter) -> Stage:
    """One record per call, handed to `meter` (the log line, the ledger): who, which tool, the
    upstream's status, sizes and duration. Never the arguments or results."""

    def stage(next_handler: Handler) -> Handler:
        async def handle(call: Call) -> types.CallToolResult:
            started = time.perf_counter()
            result = await next_handler(call)
            principal, facts = call.principal, call.context
            meter.record(
                CallRecord(
                    kind="tool",
                    consumer=principal.consumer if principal else None,
                    team=principal.team if principal else None,
                    org=principal.org if principal else None,
                    key_id=principal.credential_id if principal else None,
                    api=call.api.name,
                    tool=call.tool.name,
                    status=facts.get("status", 0),
                    error=bool(result.is_error),
                    latency_ms=(time.perf_counter() - started) * 1000,
                    request_bytes=facts.get("request_bytes", 0),
                    response_bytes=facts.get("response_bytes", 0),
                )
            )
            return result

        return handle

    return stage
