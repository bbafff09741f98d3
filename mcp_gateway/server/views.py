"""Views of the catalog: what one MCP endpoint exposes.

The main endpoint (`/mcp`) exposes every tool. A virtual server
(`/mcp/<name>`) exposes a curated subset: chosen tools from several APIs, with
optional new names and descriptions. A view turns a catalog snapshot into a
snapshot of its own (cached per catalog version), so the MCP server, discovery
and policies work on it unchanged. Renamed tools remember their source name:
policies are written against the catalog's names, not a view's.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Sequence

from mcp_gateway.catalog import Snapshot
from mcp_gateway.config import ToolPick
from mcp_gateway.definitions import ToolDefinition

logger = logging.getLogger(__name__)


class CatalogView:
    """Everything (no picks) or the tools that `picks` choose, in pick order."""

    def __init__(self, name: str | None = None, picks: Sequence[ToolPick] | None = None) -> None:
        self.name = name
        self.picks = list(picks) if picks is not None else None
        self._cached: tuple[int, Snapshot] | None = None

    def of(self, snapshot: Snapshot) -> Snapshot:
        """This view of `snapshot`."""
        if self.picks is None:
            return snapshot
        if self._cached is not None and self._cached[0] == snapshot.version:
            return self._cached[1]
        chosen: dict[str, ToolDefinition] = {}
        for pick in self.picks:
            for tool in snapshot.ordered:
                if tool.api != pick.api or not fnmatch.fnmatchcase(tool.name, pick.tool):
                    continue
                exposed = self._exposed(tool, pick)
                if exposed.name in chosen:
                    if chosen[exposed.name].operation is not tool.operation:
                        logger.warning("virtual server %s: two tools would be named %s; keeping the first",
                                       self.name, exposed.name)  # fmt: skip
                    continue
                chosen[exposed.name] = exposed
        view = Snapshot(version=snapshot.version, apis=snapshot.apis, tools=chosen, ordered=tuple(chosen.values()))
        self._cached = (snapshot.version, view)
        return view

    @staticmethod
    def _exposed(tool: ToolDefinition, pick: ToolPick) -> ToolDefinition:
        if pick.rename is None and pick.description is None:
            return tool
        return dataclasses.replace(
            tool,
            name=pick.rename or tool.name,
            description=pick.description or tool.description,
            source_name=tool.source_name or tool.name,
        )
