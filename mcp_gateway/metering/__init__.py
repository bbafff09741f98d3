"""Metering: one record per tool or model call, handed to one meter (`records`; `ledger`: the
ledger's writer; observe/ has the access log and the metrics); events for instrumentation
(`hooks`); rate limits on tool and model calls (`limits`), their counters in this process
(`counters`) or in Redis (`redis`), and the RateLimit headers that report them (`headers`)."""

from mcp_gateway.metering.records import CallRecord, Meter, Meters, Usage

__all__ = ["CallRecord", "Meter", "Meters", "Usage"]
