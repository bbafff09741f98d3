"""Pipeline stages that every tool call passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import mcp_types as types

from mcp_gateway.metering import CallRecord, Meter
from mcp_gateway.metering.budgets import BudgetExceeded, Budgets, BudgetsUnavailable
from mcp_gateway.metering.costs import ZERO, ToolCosts
from mcp_gateway.metering.limits import Limiter, LimitExceeded, LimitsUnavailable, subject_of
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


def _no_trace() -> str | None:
    return None


def meter_calls(meter: Meter, trace_id: Callable[[], str | None] = _no_trace) -> Stage:
    """One record per call, handed to `meter` (the log line, the ledger): who, which tool, the
    upstream's status, sizes, duration, cost (`price_calls`') and the trace the call is in
    (`trace_id`, asked once per call). Never the arguments or results.

    The record is handed over on the event loop's next turn: where the answer is written
    without yielding (the fast path), the log line, metrics and ledger row follow the response
    instead of delaying it. Nothing is lost: the turn comes before the loop reads anything else."""

    def stage(next_handler: Handler) -> Handler:
        async def handle(call: Call) -> types.CallToolResult:
            started = time.perf_counter()
            result = await next_handler(call)
            principal, facts = call.principal, call.context
            asyncio.get_running_loop().call_soon(
                meter.record,
                CallRecord(
                    kind="tool",
                    consumer=principal.consumer if principal else None,
                    team=principal.team if principal else None,
                    org=principal.org if principal else None,
                    key_id=principal.credential_id if principal else None,
                    api=call.api.name,
                    tool=call.tool.catalog_name,  # as policies, limits and budgets name it
                    status=facts.get("status", 0),
                    error=bool(result.is_error),
                    latency_ms=(time.perf_counter() - started) * 1000,
                    request_bytes=facts.get("request_bytes", 0),
                    response_bytes=facts.get("response_bytes", 0),
                    cost=facts.get("cost", ZERO),
                    error_kind=facts.get("error_kind"),
                    trace_id=trace_id(),
                ),
            )
            return result

        return handle

    return stage


RETRY_AFTER_META = "mcp-gateway/retry-after"  # seconds, on a tool error from a rate limit


def limit_calls(limiter: Limiter) -> Stage:
    """Check the rate limits of every call before its upstream request; a refusal is a tool error
    naming the limit and when to retry (also in `_meta`), and the upstream is not called.
    Concurrency slots are held until the call ends, however it ends."""

    def stage(next_handler: Handler) -> Handler:
        async def handle(call: Call) -> types.CallToolResult:
            if not limiter.rules:  # none configured or added (yet)
                return await next_handler(call)
            subject = subject_of(call.principal, api=call.api.name, tool=call.tool.catalog_name)
            try:
                admission = await limiter.admit(subject)
            except (LimitExceeded, LimitsUnavailable) as refusal:
                result = error_result(refusal.message)
                if refusal.retry_after is not None:
                    result.meta = {RETRY_AFTER_META: refusal.retry_after}
                return result
            if admission is None or not admission.holds:
                return await next_handler(call)
            try:
                return await next_handler(call)
            finally:
                await admission.release()

        return handle

    return stage


def budget_calls(budgets: Budgets, costs: ToolCosts) -> Stage:
    """Reserve each call's configured cost on every budget that applies before its upstream
    request, and settle it to what the call cost (`price_calls`) after, however it ends. A
    refusal is a tool error naming the budget, what is left and when it resets (the seconds
    until then also in `_meta`), and the upstream is not called."""

    def stage(next_handler: Handler) -> Handler:
        async def handle(call: Call) -> types.CallToolResult:
            if not budgets.active:
                return await next_handler(call)
            name = call.tool.catalog_name
            price = costs.of(call.api.config, name)
            subject = subject_of(call.principal, api=call.api.name, tool=name)
            try:
                hold = await budgets.admit(subject, price.reserve if price is not None else ZERO)
            except (BudgetExceeded, BudgetsUnavailable) as refusal:
                result = error_result(refusal.message)
                if refusal.retry_after is not None:
                    result.meta = {RETRY_AFTER_META: refusal.retry_after}
                return result
            if hold is None:
                return await next_handler(call)
            try:
                return await next_handler(call)
            finally:
                hold.spend(call.context.get("cost"))
                await hold.release()

        return handle

    return stage


def price_calls(costs: ToolCosts) -> Stage:
    """What each call cost, by its API's or tool's configured cost and the upstream's response,
    into `call.context["cost"]` (for the ledger's record and the budgets' settlement)."""

    def stage(next_handler: Handler) -> Handler:
        async def handle(call: Call) -> types.CallToolResult:
            result = await next_handler(call)
            price = costs.of(call.api.config, call.tool.catalog_name)
            if price is not None:
                call.context["cost"] = price.of(call.context)
            return result

        return handle

    return stage
