"""What the hot path hands to the drift checker: one sampled upstream response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcp_gateway.catalog import ApiEntry
from mcp_gateway.definitions import OperationPlan


@dataclass(frozen=True, slots=True)
class Sample:
    """One upstream response handed to the drift checker (its body already scrubbed of secrets)."""

    entry: ApiEntry
    tool: str
    operation: OperationPlan
    status: int
    content_type: str
    headers: Mapping[str, str]
    body: bytes
    at: float
