"""Discovery mode: three meta-tools stand in for a large catalog.

`search_tools` ranks tools by a query (with the input schemas of the best hits),
`describe_tool` gives one tool's full definition, and `call_tool` calls a tool by
name through the same pipeline as a direct call (same validation, same errors).
Which tools go behind them is decided per catalog version: all of them (server
`discovery: on`, or `auto` above the threshold) or those of APIs configured with
`discovery: true`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types

from mcp_gateway.auth.principal import Principal
from mcp_gateway.catalog import Snapshot
from mcp_gateway.config import ServerConfig
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.discovery.index import ToolIndex
from mcp_gateway.pipeline import ANONYMOUS, Call, Handler
from mcp_gateway.upstream.credentials import Caller
from mcp_gateway.upstream.response import error_result

SEARCH, DESCRIBE, CALL = "search_tools", "describe_tool", "call_tool"
MAX_LIMIT = 20
SCHEMAS_IN_RESULTS = 3  # the best hits carry their input schema: often enough to call directly


def hidden_tools(snapshot: Snapshot, settings: ServerConfig) -> frozenset[str]:
    """Names of the tools listed only through the meta-tools."""
    everything = settings.discovery == "on" or (
        settings.discovery == "auto" and len(snapshot.tools) > settings.discovery_threshold
    )
    if everything:
        return frozenset(snapshot.tools)
    return frozenset(t.name for t in snapshot.ordered if snapshot.apis[t.api].config.discovery)


def meta_tools(api_names: list[str], count: int) -> list[types.Tool]:
    """The meta-tool definitions for a catalog whose hidden tools come from `api_names`."""
    api_arg: dict[str, Any] = {"type": "string", "description": "only tools of this API", "enum": api_names}
    read_only = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
    return [
        types.Tool(
            name=SEARCH,
            title="Search tools",
            description=(
                f"Find the right tool among {count} tools of {', '.join(api_names)} by describing the task in "
                "plain words (e.g. 'list open pull requests of a repository'). Returns the best matches, "
                "ranked, with the input schemas of the top ones; then use call_tool."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "description": "what you want to do"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 5},
                    "api": api_arg,
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            annotations=read_only,
        ),
        types.Tool(
            name=DESCRIBE,
            title="Describe a tool",
            description="The full definition of one tool found with search_tools: description, input and "
            "output schema, annotations, HTTP method and path.",
            input_schema={
                "type": "object",
                "properties": {"name": {"type": "string", "minLength": 1}},
                "required": ["name"],
                "additionalProperties": False,
            },
            annotations=read_only,
        ),
        types.Tool(
            name=CALL,
            title="Call a tool",
            description="Call a tool found with search_tools by its name, with arguments that match its input "
            "schema. Returns that tool's result; invalid arguments are reported field by field.",
            input_schema={
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "arguments": {"type": "object", "default": {}},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
            annotations=types.ToolAnnotations(destructive_hint=True, open_world_hint=True),
        ),
    ]


def _result(data: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(data, ensure_ascii=False))], structured_content=data
    )


@dataclass
class _IndexCache:
    version: int
    index: ToolIndex


class DiscoveryTools:
    """Serves the meta-tools for one gateway."""

    def __init__(self, handler: Handler, settings: ServerConfig) -> None:
        self.handler = handler
        self.settings = settings
        self._cache: _IndexCache | None = None
        self._lock = anyio.Lock()

    async def index(self, snapshot: Snapshot) -> ToolIndex:
        """The search index of the hidden tools at this catalog version (built once, off the event loop)."""
        async with self._lock:
            if self._cache is None or self._cache.version != snapshot.version:
                hidden = hidden_tools(snapshot, self.settings)
                tools = [t for t in snapshot.ordered if t.name in hidden]
                index = await anyio.to_thread.run_sync(ToolIndex, tools)
                self._cache = _IndexCache(snapshot.version, index)
            return self._cache.index

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        snapshot: Snapshot,
        visible: frozenset[str] | None = None,
        caller: Caller = ANONYMOUS,
        principal: Principal | None = None,
    ) -> types.CallToolResult:
        """Run one meta-tool; `visible` limits it to the tools the caller may use (None: all)."""
        if name == SEARCH:
            return await self._search(arguments, snapshot, visible)
        target = arguments.get("name")
        if not isinstance(target, str) or not target:
            return error_result("Invalid arguments: name: a tool name (string) is required")
        tool = snapshot.tools.get(target)
        if tool is None or (visible is not None and target not in visible):
            return error_result(f"Unknown tool: {target}. Use {SEARCH} to find tools by what they do.")
        if name == DESCRIBE:
            return _result(self._describe(tool))
        args = arguments.get("arguments", {})
        if not isinstance(args, dict):
            return error_result("Invalid arguments: arguments: must be an object")
        return await self.handler(Call(tool, snapshot.apis[tool.api], args, caller, principal))

    async def _search(
        self, arguments: Mapping[str, Any], snapshot: Snapshot, visible: frozenset[str] | None
    ) -> types.CallToolResult:
        query, limit, api = arguments.get("query"), arguments.get("limit", 5), arguments.get("api")
        errors = []
        if not isinstance(query, str) or not query.strip():
            errors.append("query: a non-empty string is required")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            errors.append(f"limit: an integer from 1 to {MAX_LIMIT}")
        if api is not None and api not in snapshot.apis:
            errors.append(f"api: unknown API {api!r}")
        unknown = sorted(set(arguments) - {"query", "limit", "api"})
        if unknown:
            errors.append(f"unexpected argument(s): {', '.join(unknown)}")
        if errors:
            return error_result("Invalid arguments for tool search_tools:\n" + "\n".join(f"- {e}" for e in errors))
        hits = (await self.index(snapshot)).search(str(query), int(limit), api=api, allowed=visible)
        found = []
        for rank, hit in enumerate(hits):
            entry: dict[str, Any] = {
                "name": hit.tool.name,
                "api": hit.tool.api,
                "description": hit.tool.description,
                "score": hit.score,
            }
            if rank < SCHEMAS_IN_RESULTS:
                entry["inputSchema"] = hit.tool.input_schema
            found.append(entry)
        return _result({"query": query, "tools": found})

    @staticmethod
    def _describe(tool: ToolDefinition) -> dict[str, Any]:
        out = tool.public()
        out.update(api=tool.api, method=tool.operation.method, path=tool.operation.path)
        return out
