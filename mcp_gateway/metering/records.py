"""One record per call, tool or model: who, what, how it went, what it used and cost.

The tool pipeline and the model router both hand their records to one `Meter`; the ledger
implements it (batched writes off the hot path), and so do the access log and the metrics
(observe/).
Records hold no secret, argument, prompt or answer: only names, counts and times.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

Kind = Literal["tool", "model"]


@dataclass(slots=True)
class Usage:
    """Token counts of one call; cache reads and writes and reasoning are kept apart from plain input/output.

    `input` counts every prompt token, cached ones included (as OpenAI counts); `cache_read`
    and `cache_write` say how many of those were read from or written to a cache.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    estimated: bool = False

    @property
    def empty(self) -> bool:
        """No token was reported."""
        return not (self.input or self.output or self.cache_read or self.cache_write)


@dataclass(slots=True)
class CallRecord:
    """One tool or model call, as the ledger keeps it.

    Tool calls fill `api` and `tool`; model calls `model` (as the client asked), `provider`,
    `provider_model`, `deployment` and the token counts. `status` is the upstream's HTTP status
    when it answered (a model door's own refusal: the status it answered with), 0 when the call
    never reached it (refused arguments, a failed connection); `error` says whether the caller
    got an error.
    """

    kind: Kind
    consumer: str | None
    team: str | None
    org: str | None
    key_id: str | None
    api: str | None = None
    tool: str | None = None
    model: str | None = None
    provider: str | None = None
    provider_model: str | None = None
    deployment: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Decimal | None = None  # USD; None when no price is known
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error: bool = False
    request_bytes: int = 0
    response_bytes: int = 0
    retries: int = 0
    fallbacks: int = 0
    streamed: bool = False
    endpoint: str = ""
    trace_id: str | None = None
    error_kind: str | None = None  # how reaching the upstream failed (dns, refused, read-timeout...)
    started_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        """JSON-ready (cost as a decimal string)."""
        data = asdict(self)
        data["cost"] = None if self.cost is None else str(self.cost)
        return data


class Meter(Protocol):
    """Where call records go (the ledger implements it)."""

    def record(self, record: CallRecord) -> None:
        """Take one record; must return at once (no I/O on the caller's path)."""
        ...


class Meters:
    """Several meters as one (the access log, the metrics, the ledger)."""

    def __init__(self, *meters: Meter) -> None:
        self.meters = meters

    def record(self, record: CallRecord) -> None:
        for meter in self.meters:
            meter.record(record)
