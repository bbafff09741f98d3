"""The live registry of APIs and their tools, versioned, with change events.

Readers take an immutable `Snapshot`, so a `tools/list` page and a `tools/call`
never see a half-applied change; writers swap in a new snapshot and tell the
listeners (the MCP server, which sends `list_changed`; the upstream pool, which
closes clients of removed APIs).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from mcp_gateway.config import ApiConfig
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.openapi import naming
from mcp_gateway.openapi.tools import IngestResult

logger = logging.getLogger(__name__)

Origin = Literal["config", "registered"]


@dataclass(frozen=True, slots=True)
class ApiEntry:
    """One served API: its configuration and what ingest made of it."""

    config: ApiConfig
    ingest: IngestResult
    origin: Origin = "config"
    # Who keeps a tool name two APIs both produce: config-file APIs in file order,
    # then registrations oldest first. Stable across restarts, and a newcomer can
    # never take over a name that is already served.
    rank: tuple[int, float] = (0, 0.0)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of the catalog at one version."""

    version: int
    apis: dict[str, ApiEntry] = field(default_factory=dict)
    tools: dict[str, ToolDefinition] = field(default_factory=dict)
    ordered: tuple[ToolDefinition, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """What one catalog update did, by API name."""

    version: int
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    replaced: frozenset[str] = frozenset()
    old: Snapshot | None = None


Listener = Callable[[Change], Awaitable[None]]


def _index(apis: dict[str, ApiEntry]) -> tuple[dict[str, ToolDefinition], tuple[ToolDefinition, ...]]:
    """Tools of all APIs by name; a clash across APIs is settled by `ApiEntry.rank`."""
    tools: dict[str, ToolDefinition] = {}
    taken: set[str] = set()
    for api_name in sorted(apis, key=lambda n: (apis[n].rank, n)):
        for tool in apis[api_name].ingest.tools:
            if tool.name in taken:
                new_name = naming.unique(tool.name, taken)
                logger.warning(
                    "tool %s of API %s clashes with another API's tool; served as %s (set a prefix to avoid this)",
                    tool.name, api_name, new_name,
                )  # fmt: skip
                tool = dataclasses.replace(tool, name=new_name)
            else:
                taken.add(tool.name)
            tools[tool.name] = tool
    return tools, tuple(tools.values())


class Catalog:
    """The APIs and tools being served right now."""

    def __init__(self) -> None:
        self._snapshot = Snapshot(version=0)
        self._listeners: list[Listener] = []

    @property
    def snapshot(self) -> Snapshot:
        """The current immutable view."""
        return self._snapshot

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after every change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def put(self, entry: ApiEntry) -> Change:
        """Add or replace one API."""
        return await self._apply([entry], ())

    async def remove(self, name: str) -> Change | None:
        """Remove one API; None when it was not served."""
        if name not in self._snapshot.apis:
            return None
        return await self._apply((), [name])

    async def replace_all(self, entries: Iterable[ApiEntry]) -> Change:
        """Serve exactly `entries` (by name), as one change."""
        entries = list(entries)
        keep = {e.name for e in entries}
        return await self._apply(entries, [n for n in self._snapshot.apis if n not in keep])

    async def _apply(self, entries: Iterable[ApiEntry], removals: Iterable[str]) -> Change:
        old = self._snapshot
        apis = dict(old.apis)
        added: set[str] = set()
        replaced: set[str] = set()
        removed: set[str] = set()
        for name in removals:
            if apis.pop(name, None) is not None:
                removed.add(name)
        for entry in entries:
            (replaced if entry.name in apis else added).add(entry.name)
            apis[entry.name] = entry
        tools, ordered = _index(apis)
        self._snapshot = Snapshot(version=old.version + 1, apis=apis, tools=tools, ordered=ordered)
        change = Change(old.version + 1, frozenset(added), frozenset(removed), frozenset(replaced), old)
        for listener in list(self._listeners):
            try:
                await listener(change)
            except Exception:  # one failing listener must not stop the others or the change
                logger.exception("catalog listener failed")
        return change
