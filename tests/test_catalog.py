"""The catalog: versioned snapshots, change events, and who keeps a contested tool name."""

from __future__ import annotations

import pytest

from mcp_gateway.catalog import ApiEntry, Catalog, Change
from mcp_gateway.config import ApiConfig
from mcp_gateway.openapi.tools import ingest_api
from tests.conftest import ECHO_SPEC

pytestmark = pytest.mark.anyio


def _entry(name: str, rank: tuple[int, float], prefix: str | None = None) -> ApiEntry:
    config = ApiConfig(name=name, spec=str(ECHO_SPEC), base_url="http://127.0.0.1:9/api", prefix=prefix)
    return ApiEntry(config, ingest_api(config), "config" if rank[0] == 0 else "registered", rank)


async def test_a_newcomer_cannot_take_a_served_name() -> None:
    catalog = Catalog()
    await catalog.put(_entry("zeta", (0, 0.0)))
    assert catalog.snapshot.tools["getItem"].api == "zeta"
    # Sorts first by name, registered later: must not hijack `getItem`.
    await catalog.put(_entry("aaa", (1, 100.0)))
    snapshot = catalog.snapshot
    assert snapshot.tools["getItem"].api == "zeta"
    assert snapshot.tools["getItem_2"].api == "aaa"
    # The same outcome however the entries arrive (a restart loads them together).
    fresh = Catalog()
    await fresh.replace_all([_entry("aaa", (1, 100.0)), _entry("zeta", (0, 0.0))])
    assert fresh.snapshot.tools["getItem"].api == "zeta"


async def test_changes_are_versioned_and_announced() -> None:
    catalog = Catalog()
    changes: list[Change] = []

    async def listener(change: Change) -> None:
        changes.append(change)

    async def broken(change: Change) -> None:
        raise RuntimeError("a failing listener must not stop the others")

    catalog.subscribe(broken)
    catalog.subscribe(listener)
    await catalog.put(_entry("one", (0, 0.0), prefix="one"))
    before = catalog.snapshot
    await catalog.put(_entry("one", (0, 0.0), prefix="uno"))
    assert await catalog.remove("missing") is None
    await catalog.remove("one")
    assert [c.version for c in changes] == [1, 2, 3]
    assert changes[0].added == {"one"} and changes[1].replaced == {"one"} and changes[2].removed == {"one"}
    # Snapshots are immutable: a reader holding the old one still sees the old tools.
    assert "one_getItem" in before.tools and not catalog.snapshot.tools
