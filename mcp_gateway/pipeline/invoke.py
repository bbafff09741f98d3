"""The pipeline's endpoint: hand the call to its API's upstream.

Upstreams (and their connection pools) are made on first use and retired when
their API is removed or replaced; a retired pool closes once its last
in-flight call has finished, so a re-registration never cuts a call short.
"""

from __future__ import annotations

from dataclasses import dataclass

import mcp_types as types

from mcp_gateway.catalog import ApiEntry, Change
from mcp_gateway.pipeline import Call
from mcp_gateway.upstream import Upstream
from mcp_gateway.upstream.client import ClientSettings
from mcp_gateway.upstream.rest import RestUpstream


@dataclass(slots=True)
class _Slot:
    entry: ApiEntry
    upstream: Upstream
    in_flight: int = 0
    retired: bool = False


def rest_upstream(entry: ApiEntry, user_agent: str) -> Upstream:
    """The upstream for a REST API entry, with that API's limits."""
    cfg = entry.config
    settings = ClientSettings(
        timeout=cfg.timeout,
        connect_timeout=cfg.connect_timeout,
        max_response_bytes=cfg.max_response_bytes,
        max_connections=cfg.max_connections,
        user_agent=user_agent,
    )
    return RestUpstream(entry.name, entry.ingest.base_url, settings)


class UpstreamPool:
    """Maps each served API to its upstream; the pipeline's final handler."""

    def __init__(self, user_agent: str = "mcp-gateway") -> None:
        self.user_agent = user_agent
        self._slots: dict[str, _Slot] = {}

    async def __call__(self, call: Call) -> types.CallToolResult:
        slot = self._slots.get(call.api.name)
        if slot is None or slot.entry is not call.api:
            slot = _Slot(call.api, rest_upstream(call.api, self.user_agent))
            old = self._slots.get(call.api.name)
            self._slots[call.api.name] = slot
            if old is not None:
                await self._retire(old)
        slot.in_flight += 1
        try:
            return await slot.upstream.invoke(call.tool, call.arguments)
        finally:
            slot.in_flight -= 1
            if slot.retired and slot.in_flight == 0:
                await slot.upstream.aclose()

    async def on_change(self, change: Change) -> None:
        """Catalog listener: retire the upstreams of removed and replaced APIs."""
        for name in change.removed | change.replaced:
            slot = self._slots.pop(name, None)
            if slot is not None:
                await self._retire(slot)

    async def _retire(self, slot: _Slot) -> None:
        slot.retired = True
        if slot.in_flight == 0:
            await slot.upstream.aclose()

    async def aclose(self) -> None:
        """Close every pool (at shutdown)."""
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            await slot.upstream.aclose()
