"""Drift findings: where sampled upstream responses did not match the spec, per API and tool.

Written by every gateway process's drift checker, read by `apis drift NAME` and
`GET /admin/apis/{name}/drift`, so the report covers all workers and survives restarts.
Bounded: per tool, the `MAX_FINDINGS_PER_TOOL` most recently seen distinct problems.
Findings hold locations and value-free messages only, never response values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, tuple_

from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import drift_findings, drift_tools

MAX_FINDINGS_PER_TOOL = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One way a response did not match the spec.

    `kind`: `status` (undeclared status code), `content_type` (undeclared media type), `body`
    (the body breaks its schema, or is missing or unparsable), `header` (a declared response
    header), `spec` (the spec could not be loaded to check against). `path`: a JSON path into the
    body (`$.items[*].id`) or a header name; empty when the whole response is meant."""

    kind: str
    path: str
    message: str


@dataclass(frozen=True, slots=True)
class RecordedFinding:
    """A finding as stored: for which status, how often, first and last seen (epoch seconds)."""

    status: int
    finding: Finding
    count: int
    first_seen: float
    last_seen: float

    def public(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "status": self.status,
            "kind": self.finding.kind,
            "path": self.finding.path,
            "message": self.finding.message,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass(slots=True)
class ToolDrift:
    """One tool's drift report: how many responses were checked or dropped, and what was found."""

    tool: str
    checked: int = 0
    dropped: int = 0
    last_checked: float | None = None
    findings: list[RecordedFinding] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "tool": self.tool,
            "checked": self.checked,
            "dropped": self.dropped,
            "last_checked": self.last_checked,
            "findings": [f.public() for f in self.findings],
        }


class DriftStore:
    """Stored drift findings. Blocking: async callers run it in a worker thread."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, api: str, tool: str, status: int, findings: Sequence[Finding], at: float) -> None:
        """One checked response of `tool` and what was wrong with it (nothing, often)."""
        t, f = drift_tools.c, drift_findings.c
        with self.db.transaction() as tx:
            tool_row = {"api": api, "tool": tool, "checked": 1, "last_checked": at}
            self.db.upsert(tx, drift_tools, tool_row, {"checked": t.checked + 1, "last_checked": at})
            for finding in dict.fromkeys(findings):
                row = {
                    "api": api,
                    "tool": tool,
                    "status": status,
                    "kind": finding.kind,
                    "path": finding.path,
                    "message": finding.message,
                    "count": 1,
                    "first_seen": at,
                    "last_seen": at,
                }
                self.db.upsert(tx, drift_findings, row, {"count": f.count + 1, "last_seen": at})
            if findings:
                # Keep the most recently seen distinct problems; older ones make room.
                key = (f.status, f.kind, f.path, f.message)
                beyond = (
                    select(*key)
                    .where(f.api == api, f.tool == tool)
                    .order_by(f.last_seen.desc(), f.count.desc())
                    .offset(MAX_FINDINGS_PER_TOOL)
                )
                old = tx.execute(beyond).all()
                if old:
                    tx.execute(delete(drift_findings).where(f.api == api, f.tool == tool, tuple_(*key).in_(old)))

    def add_dropped(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Count sampled responses that were not checked because the queue was full, by (api, tool)."""
        if not counts:
            return
        with self.db.transaction() as tx:
            for (api, tool), n in counts.items():
                row = {"api": api, "tool": tool, "dropped": n}
                self.db.upsert(tx, drift_tools, row, {"dropped": drift_tools.c.dropped + n})

    def report(self, api: str) -> list[ToolDrift]:
        """Every tool of `api` with a checked or dropped response, by name; findings newest first."""
        t, f = drift_tools.c, drift_findings.c
        tools_query = select(t.tool, t.checked, t.dropped, t.last_checked).where(t.api == api).order_by(t.tool)
        findings_query = (
            select(f.tool, f.status, f.kind, f.path, f.message, f.count, f.first_seen, f.last_seen)
            .where(f.api == api)
            .order_by(f.tool, f.last_seen.desc(), f.status, f.path)
        )
        with self.db.engine.connect() as conn:  # one snapshot for both
            tools = {
                name: ToolDrift(name, checked, dropped, last)
                for name, checked, dropped, last in conn.execute(tools_query)
            }
            rows = conn.execute(findings_query).all()
        for tool, status, kind, path, message, count, first, last in rows:
            entry = tools.setdefault(tool, ToolDrift(tool))
            entry.findings.append(RecordedFinding(status, Finding(kind, path, message), count, first, last))
        return [tools[name] for name in sorted(tools)]

    def clear(self, api: str) -> bool:
        """Forget everything recorded for `api`; False when there was nothing."""
        with self.db.transaction() as tx:
            removed = tx.execute(delete(drift_tools).where(drift_tools.c.api == api)).rowcount
            removed += tx.execute(delete(drift_findings).where(drift_findings.c.api == api)).rowcount
        return removed > 0
