"""Metering: one record per tool or model call, handed to one meter (`records`: the log line;
`ledger`: the ledger's writer); rate limits on tool and model calls (`limits`), their counters in
this process (`counters`) or in Redis (`redis`), and the RateLimit headers that report them
(`headers`)."""

from mcp_gateway.metering.records import CallRecord, LogMeter, Meter, Meters, Usage

__all__ = ["CallRecord", "LogMeter", "Meter", "Meters", "Usage"]
