"""The collector kept off the hot path: start-up's heap frozen, and garbage of old catalogs still
collected (heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import anyio
import pytest

from mcp_gateway.catalog import Change
from mcp_gateway.heap import SETTLE_DELAY, YOUNG_THRESHOLD, HeapKeeper, settle


class Node:
    """A cyclic object: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_disabled_keeper_leaves_the_collector_alone(collector: None) -> None:
    threshold = gc.get_threshold()
    HeapKeeper(False).start()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold


def test_start_freezes_the_heap_and_settling_again_collects_frozen_garbage(collector: None) -> None:
    alive = Node()
    ref = weakref.ref(alive)
    HeapKeeper(True).start()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() > 0  # the start-up heap, `alive` among it
    del alive
    gc.collect()
    assert ref() is not None  # frozen: no collection looks at it
    settle()
    assert ref() is None  # unfrozen, collected, the rest frozen again
    assert gc.get_freeze_count() > 0


@pytest.mark.anyio
async def test_a_catalog_change_settles_the_heap_once_its_burst_is_over(collector: None) -> None:
    keeper = HeapKeeper(True)
    keeper.start()
    old = Node()  # something of the catalog being replaced, frozen with the rest
    ref = weakref.ref(old)
    settle()
    del old
    async with anyio.create_task_group() as tg:
        tg.start_soon(keeper.run)
        for version in range(3):
            await keeper.on_change(Change(version))
            await anyio.sleep(SETTLE_DELAY / 4)
        assert ref() is not None  # not during the burst
        with anyio.fail_after(SETTLE_DELAY * 4):
            while ref() is not None:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
