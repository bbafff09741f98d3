"""What a tool call costs: a flat amount per call, or an amount the upstream's response states
(a header, or a JSON pointer into its body). Amounts are USD, kept exact as Decimal.

`apis[].cost` prices every tool of an API; `apis[].tool_costs` prices single tools (by name or
glob) and wins over it. Without either a tool call costs nothing.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from mcp_gateway.config.base import StrictModel

PLACES = 12  # picodollars: what the ledger stores
MAX_USD = 1_000_000_000  # far below what the counters hold exactly (Redis: 2**53 microdollars)


def _usd(value: Any) -> Any:
    """A number or a decimal string as an exact Decimal: a float goes through its shortest repr
    (YAML's `0.1` is 0.1, not 0.1000000000000000055...)."""
    if isinstance(value, bool):
        raise ValueError("an amount in USD is a number or a decimal string")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, int | str):
        try:
            found = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("an amount in USD is a number or a decimal string, e.g. 0.002 or '12.50'") from None
        if not found.is_finite() or not 0 <= found < MAX_USD:
            raise ValueError(f"an amount in USD is 0 or more and under {MAX_USD:,}")
        if found != found.quantize(Decimal(1).scaleb(-PLACES)):
            raise ValueError(f"an amount in USD has at most {PLACES} decimal places")
        return found
    return value


# USD, exact: a number or a decimal string, 0 or more, at most 12 decimal places.
Usd = Annotated[Decimal, BeforeValidator(_usd)]

_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP field name (RFC 9110 token)


def _flat(value: Any) -> Any:
    """`cost: 0.002` is `cost: {usd: 0.002}`."""
    return {"usd": value} if isinstance(value, int | float | str) and not isinstance(value, bool) else value


class ToolCost(StrictModel):
    """A tool call's cost: flat (`usd`), or read from the response (`header` or `pointer`), in USD."""

    usd: Usd = Field(
        default=Decimal(0),
        description="USD per call; with header or pointer: the cost when the response does not state one",
    )
    header: str | None = Field(default=None, description="a response header that states the call's cost in USD")
    pointer: str | None = Field(
        default=None, description="a JSON pointer (RFC 6901) into the response body to the call's cost in USD"
    )
    reserve: Usd | None = Field(
        default=None,
        description="what budgets hold for the call while it runs; default: usd (so 0 for costs read from the "
        "response unless set: set it to the most a call can cost)",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _flat(value)

    @model_validator(mode="after")
    def _one_source(self) -> ToolCost:
        if self.header is not None and self.pointer is not None:
            raise ValueError("a cost is read from a header or a JSON pointer, not both")
        if self.header is not None and not _HEADER.match(self.header):
            raise ValueError("header must be an HTTP header name")
        if self.pointer is not None and self.pointer and not self.pointer.startswith("/"):
            raise ValueError("pointer must be a JSON pointer: empty, or starting with '/' (e.g. /usage/cost)")
        return self

    @property
    def reserved(self) -> Decimal:
        """What a budget holds while the call runs."""
        return self.reserve if self.reserve is not None else self.usd
