"""Metering: one record per tool or model call, handed to one meter (the log line; the ledger)."""

from mcp_gateway.metering.records import CallRecord, LogMeter, Meter, Meters, Usage

__all__ = ["CallRecord", "LogMeter", "Meter", "Meters", "Usage"]
