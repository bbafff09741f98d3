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

from mcp_gateway.store.database import Database

MAX_FINDINGS_PER_TOOL = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_tools (
    api          TEXT NOT NULL,
    tool         TEXT NOT NULL,
    checked      INTEGER NOT NULL DEFAULT 0,
    dropped      INTEGER NOT NULL DEFAULT 0,
    last_checked REAL,
    PRIMARY KEY (api, tool)
);
CREATE TABLE IF NOT EXISTS drift_findings (
    api        TEXT NOT NULL,
    tool       TEXT NOT NULL,
    status     INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    path       TEXT NOT NULL,
    message    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    PRIMARY KEY (api, tool, status, kind, path, message)
);
"""


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
        db.migrate(_SCHEMA)

    def record(self, api: str, tool: str, status: int, findings: Sequence[Finding], at: float) -> None:
        """One checked response of `tool` and what was wrong with it (nothing, often)."""
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO drift_tools (api, tool, checked, last_checked) VALUES (?, ?, 1, ?) "
                "ON CONFLICT(api, tool) DO UPDATE SET checked = checked + 1, last_checked = excluded.last_checked",
                (api, tool, at),
            )
            for f in dict.fromkeys(findings):
                tx.execute(
                    "INSERT INTO drift_findings (api, tool, status, kind, path, message, count, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT(api, tool, status, kind, path, message) "
                    "DO UPDATE SET count = count + 1, last_seen = excluded.last_seen",
                    (api, tool, status, f.kind, f.path, f.message, at, at),
                )
            if findings:
                # Keep the most recently seen distinct problems; older ones make room.
                tx.execute(
                    "DELETE FROM drift_findings WHERE api = ? AND tool = ? AND rowid NOT IN ("
                    "SELECT rowid FROM drift_findings WHERE api = ? AND tool = ? "
                    "ORDER BY last_seen DESC, count DESC LIMIT ?)",
                    (api, tool, api, tool, MAX_FINDINGS_PER_TOOL),
                )

    def add_dropped(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Count sampled responses that were not checked because the queue was full, by (api, tool)."""
        if not counts:
            return
        with self.db.transaction() as tx:
            for (api, tool), n in counts.items():
                tx.execute(
                    "INSERT INTO drift_tools (api, tool, dropped) VALUES (?, ?, ?) "
                    "ON CONFLICT(api, tool) DO UPDATE SET dropped = dropped + excluded.dropped",
                    (api, tool, n),
                )

    def report(self, api: str) -> list[ToolDrift]:
        """Every tool of `api` with a checked or dropped response, by name; findings newest first."""
        tools = {
            name: ToolDrift(name, checked, dropped, last)
            for name, checked, dropped, last in self.db.query(
                "SELECT tool, checked, dropped, last_checked FROM drift_tools WHERE api = ? ORDER BY tool", (api,)
            )
        }
        rows = self.db.query(
            "SELECT tool, status, kind, path, message, count, first_seen, last_seen FROM drift_findings "
            "WHERE api = ? ORDER BY tool, last_seen DESC, status, path",
            (api,),
        )
        for tool, status, kind, path, message, count, first, last in rows:
            entry = tools.setdefault(tool, ToolDrift(tool))
            entry.findings.append(RecordedFinding(status, Finding(kind, path, message), count, first, last))
        return [tools[name] for name in sorted(tools)]

    def clear(self, api: str) -> bool:
        """Forget everything recorded for `api`; False when there was nothing."""
        with self.db.transaction() as tx:
            removed = tx.execute("DELETE FROM drift_tools WHERE api = ?", (api,)).rowcount
            removed += tx.execute("DELETE FROM drift_findings WHERE api = ?", (api,)).rowcount
        return removed > 0
