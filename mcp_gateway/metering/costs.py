"""What a tool call cost: its API's or tool's configured cost (config/costs.py), applied to
what the upstream answered.

A call that never reached the upstream (refused arguments, a failed connection) costs nothing.
One the upstream answered costs what its response states (the configured header, or the value
at the JSON pointer: a number or a decimal string), else the flat `usd`; one the upstream
refused (4xx/5xx) costs only what its response states. The costs of an API are compiled once
per API configuration and tool, not per call.
"""

from __future__ import annotations

import fnmatch
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from mcp_gateway.config.apis import ApiConfig
from mcp_gateway.config.costs import ToolCost

ZERO = Decimal(0)
MAX_CACHED = 10_000


def _amount(value: Any) -> Decimal | None:
    """A stated cost: a non-negative finite number or decimal string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        found = Decimal(value)
    elif isinstance(value, str):
        try:
            found = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return found if found.is_finite() and found >= 0 else None


def _pointer(text: str) -> tuple[str, ...]:
    """A JSON pointer's reference tokens (RFC 6901: ~1 is /, ~0 is ~)."""
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in text.split("/")[1:]) if text else ()


class Price:
    """One tool's compiled cost."""

    __slots__ = ("header", "pointer", "reserve", "usd")

    def __init__(self, cost: ToolCost) -> None:
        self.usd = cost.usd
        self.reserve = cost.reserved
        self.header = cost.header.lower() if cost.header else None
        self.pointer = _pointer(cost.pointer) if cost.pointer is not None else None

    def of(self, facts: dict[str, Any]) -> Decimal:
        """The call's cost in USD, from what the upstream exchange came to (`status`, `response`)."""
        status = facts.get("status", 0)
        response = facts.get("response")
        if not status or response is None:
            return ZERO
        stated = self._stated(response)
        if stated is not None:
            return stated
        return self.usd if status < 400 else ZERO

    def _stated(self, response: Any) -> Decimal | None:
        if self.header is not None:
            return _amount(response.headers.get(self.header))
        if self.pointer is None:
            return None
        try:
            value: Any = json.loads(response.body, parse_float=Decimal)
        except ValueError:
            return None
        for token in self.pointer:
            if isinstance(value, dict):
                value = value.get(token)
            elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
                value = value[int(token)]
            else:
                return None
        return _amount(value)


class ToolCosts:
    """Every tool's compiled cost, looked up by API configuration and tool name."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], tuple[ApiConfig, Price | None]] = {}

    def of(self, api: ApiConfig, tool: str) -> Price | None:
        """The cost of `tool` (its catalog name) of `api`: the first `tool_costs` entry naming it
        (a name or glob), else the API's `cost`; None when it has none."""
        key = (api.name, tool)
        found = self._found.get(key)
        if found is not None and found[0] is api:
            return found[1]
        cost = next((c for pattern, c in api.tool_costs.items() if fnmatch.fnmatchcase(tool, pattern)), api.cost)
        price = Price(cost) if cost is not None else None
        if len(self._found) >= MAX_CACHED:
            self._found.clear()
        self._found[key] = (api, price)
        return price
