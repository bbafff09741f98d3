"""The caller's W3C trace context, traced or not: which trace a call belongs to.

A call's trace id reaches its call record (the access line, the ledger) whenever a trace context
exists: the caller's `traceparent` (an HTTP header, or `_meta` of an MCP request), or the
gateway's own span when tracing is on (observe/traces.py). Only the OpenTelemetry API is used
here (no SDK): with tracing off its no-op tracer still carries the caller's context, so the
upstream request gets the caller's `traceparent` (upstream/client.py injects it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from opentelemetry.context import Context, attach, detach
from opentelemetry.propagate import extract
from opentelemetry.trace import format_trace_id, get_current_span

from mcp_gateway.config import TracesConfig

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32

# The inbound credential of the MCP request being handled (only with content capture on):
# what captured arguments are scrubbed of.
INBOUND_CREDENTIAL: ContextVar[str | None] = ContextVar("mcp_gateway_inbound_credential", default=None)


def truthy(value: str | None) -> bool:
    """An OTEL_* boolean: only `true` (any case) is true."""
    return (value or "").strip().lower() == "true"


def tracing_on(config: TracesConfig, env: Mapping[str, str] | None = None) -> bool:
    """Whether to trace: the config's `enabled`, else whether an `OTEL_*` variable asks for it."""
    env = os.environ if env is None else env
    if config.enabled is not None:
        return config.enabled
    if truthy(env.get("OTEL_SDK_DISABLED")):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(config.endpoint or any(env.get(name) for name in endpoints))


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`); None when it is
    absent or malformed."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    trace_id = parts[1]
    if not set(trace_id) <= _HEX or trace_id == _ZERO_TRACE or not set(parts[2]) <= _HEX:
        return None
    return trace_id


def current_trace_id() -> str | None:
    """The trace id of the current span (the SDK's MCP request span, the caller's context under a
    no-op tracer); None outside any trace."""
    context = get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def bearer(headers: Any) -> str | None:
    """The credential a request carries (`Authorization`, `x-api-key`, `api-key`), for scrubbing."""
    value = headers.get("authorization")
    if value:
        return value.partition(" ")[2].strip() or value.strip()
    return headers.get("x-api-key") or headers.get("api-key")


class TraceHeaders:
    """MCP server middleware, placed before the SDK's OpenTelemetry middleware: a `traceparent`
    HTTP header becomes the ambient context, so the SDK's request span (or, untraced, the call
    record and the upstream request) continues the caller's trace. A `traceparent` in `_meta`
    still wins: the SDK's span middleware prefers it; untraced, that middleware is left out (a
    span of the no-op tracer is work for nothing on every request) and `from_meta` does the same
    here. With `keep_credential`, the request's credential is kept in `INBOUND_CREDENTIAL` while
    it is handled (captured arguments are scrubbed of it)."""

    def __init__(self, keep_credential: bool = False, *, from_meta: bool = False) -> None:
        self.keep_credential = keep_credential
        self.from_meta = from_meta

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        headers = getattr(ctx.request, "headers", None)
        carried = _meta_context(ctx.meta) if self.from_meta else None
        if carried is None and headers is not None and "traceparent" in headers:
            carried = extract(headers)
        kept = INBOUND_CREDENTIAL.set(bearer(headers)) if self.keep_credential and headers is not None else None
        token = attach(carried) if carried is not None else None
        try:
            return await call_next(ctx)
        finally:
            if token is not None:
                detach(token)
            if kept is not None:
                INBOUND_CREDENTIAL.reset(kept)


def _meta_context(meta: Mapping[str, Any] | None) -> Context | None:
    """The trace context of a request's `_meta` (as the SDK's span middleware reads it); None when
    it carries no valid `traceparent`."""
    if not meta or "traceparent" not in meta:
        return None
    try:
        context = extract(meta)
    except (ValueError, TypeError):
        return None
    return context if get_current_span(context).get_span_context().is_valid else None
