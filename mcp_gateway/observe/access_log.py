"""One access line per call, tool or model: who, what, how it went, how long, what it used and
cost, and its trace id. Never arguments, prompts or answers: a call record holds none.

The line is text for people; its fields also ride on the log record (`record.call()`, made only
when asked: the text format does not), which the JSON format (observe/json_log.py) writes as keys
of the line's object.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from mcp_gateway.metering.records import CallRecord

tool_logger = logging.getLogger("mcp_gateway.calls")
model_logger = logging.getLogger("mcp_gateway.models")


def call_fields(record: CallRecord) -> dict[str, Any]:
    """The access line's fields: names, counts and times only."""
    fields: dict[str, Any] = {
        "kind": record.kind,
        "consumer": record.consumer,
        "status": record.status,
        "error": record.error,
        "duration_ms": round(record.latency_ms, 3),
        "cost": None if record.cost is None else str(record.cost),
        "trace_id": record.trace_id,
        "bytes_in": record.request_bytes,
        "bytes_out": record.response_bytes,
    }
    if record.kind == "tool":
        fields.update(api=record.api, tool=record.tool)
    else:
        u = record.usage
        fields.update(
            model=record.model,
            provider=record.provider,
            deployment=record.deployment,
            tokens={"input": u.input, "output": u.output, "cache_read": u.cache_read,
                    "cache_write": u.cache_write, "reasoning": u.reasoning, "estimated": u.estimated},
            ttft_ms=None if record.ttft_ms is None else round(record.ttft_ms, 3),
            retries=record.retries,
            fallbacks=record.fallbacks,
            stream=record.streamed,
        )  # fmt: skip
    if record.error_kind is not None:
        fields["error_kind"] = record.error_kind
    return fields


class AccessLog:
    """A Meter writing one INFO line per call to `mcp_gateway.calls` (tools) or `mcp_gateway.models`."""

    def record(self, record: CallRecord) -> None:
        logger = tool_logger if record.kind == "tool" else model_logger
        if not logger.isEnabledFor(logging.INFO):
            return
        trace = record.trace_id or "-"
        if record.kind == "tool":
            logger.info(
                "tool=%s api=%s consumer=%s error=%s status=%d ms=%.1f bytes_in=%d bytes_out=%d cost=%s trace_id=%s",
                record.tool, record.api, record.consumer, record.error, record.status, record.latency_ms,
                record.request_bytes, record.response_bytes, "-" if record.cost is None else record.cost, trace,
                extra={"call": partial(call_fields, record)},
            )  # fmt: skip
            return
        u = record.usage
        logger.info(
            "model=%s deployment=%s consumer=%s status=%d in=%d out=%d cache_read=%d cache_write=%d reasoning=%d%s "
            "cost=%s ms=%.1f ttft_ms=%s retries=%d fallbacks=%d stream=%s trace_id=%s",
            record.model, record.deployment, record.consumer, record.status, u.input, u.output, u.cache_read,
            u.cache_write, u.reasoning, " estimated" if u.estimated else "",
            "-" if record.cost is None else f"{record.cost:.6f}", record.latency_ms,
            "-" if record.ttft_ms is None else f"{record.ttft_ms:.1f}", record.retries, record.fallbacks,
            record.streamed, trace, extra={"call": partial(call_fields, record)},
        )  # fmt: skip
