"""Logs in batches: the stderr handler's writes and the access log's lines, soon, nothing lost or reordered."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import pytest

from mcp_gateway.metering.records import CallRecord
from mcp_gateway.observe.access_log import AccessLog, model_logger, tool_logger
from mcp_gateway.observe.batched_log import BatchedStreamHandler

pytestmark = pytest.mark.anyio


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def handled(
    interval: float = 0.05, capacity: int = 1000, chunk: int = 32
) -> tuple[logging.Logger, BatchedStreamHandler, Writes]:
    stream = Writes()
    handler = BatchedStreamHandler(stream, interval=interval, capacity=capacity, chunk=chunk)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.Logger(f"batched-{id(stream)}", logging.DEBUG)  # not in the manager: no root handlers
    logger.addHandler(handler)
    return logger, handler, stream


async def test_info_lines_in_a_loop_are_written_together_within_the_interval() -> None:
    logger, _, stream = handled()
    for n in range(5):
        logger.info("call %d", n)
    assert stream.getvalue() == ""  # held
    await anyio.sleep(0.2)
    assert stream.getvalue() == "".join(f"INFO call {n}\n" for n in range(5))
    assert stream.writes == 1
    logger.info("later")  # a new batch gets its own timer
    await anyio.sleep(0.2)
    assert stream.getvalue().endswith("INFO later\n") and stream.writes == 2


async def progress(count: Callable[[], int], seconds: float) -> list[int]:
    """`count()` at every turn of the event loop for `seconds`: what others saw while a batch was written."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(count())
        await anyio.sleep(0)
    return seen


async def test_a_batch_is_written_a_chunk_per_turn_of_the_loop() -> None:
    logger, _, stream = handled(chunk=2)
    for n in range(5):
        logger.info("call %d", n)
    seen = await progress(lambda: stream.writes, 0.3)
    # Others ran between the chunks (the loop was not held for the whole batch), and in order.
    assert sorted(set(seen)) == [0, 1, 2, 3]
    assert stream.getvalue() == "".join(f"INFO call {n}\n" for n in range(5))
    logger.info("later")  # a new batch gets its own timer
    await anyio.sleep(0.2)
    assert stream.getvalue().endswith("INFO later\n") and stream.writes == 4


async def test_a_warning_is_written_at_once_after_what_was_pending() -> None:
    logger, _, stream = handled(interval=60)
    logger.info("first")
    logger.warning("trouble")
    assert stream.getvalue() == "INFO first\nWARNING trouble\n"


async def test_capacity_and_flush_write_what_waits() -> None:
    logger, handler, stream = handled(interval=60, capacity=3)
    for n in range(4):
        logger.info("n%d", n)
    assert stream.getvalue() == "INFO n0\nINFO n1\nINFO n2\n"
    handler.flush()
    assert stream.getvalue().endswith("INFO n3\n")
    logger.info("at close")
    handler.close()
    assert stream.getvalue().endswith("INFO at close\n")


def test_outside_an_event_loop_each_line_is_written_at_once() -> None:
    logger, _, stream = handled(interval=60)
    logger.info("from the CLI")
    assert stream.getvalue() == "INFO from the CLI\n"
    thread = threading.Thread(target=logger.info, args=("from a worker thread",))
    thread.start()
    thread.join()
    assert stream.getvalue().endswith("INFO from a worker thread\n")


async def test_a_line_from_a_thread_writes_the_loops_pending_lines_first() -> None:
    logger, _, stream = handled(interval=60)
    logger.info("on the loop")
    await anyio.to_thread.run_sync(logger.info, "in a thread")
    assert stream.getvalue() == "INFO on the loop\nINFO in a thread\n"


def test_a_timer_on_a_finished_loop_does_not_hold_later_lines() -> None:
    logger, _, stream = handled(interval=60)

    async def one(text: str) -> None:
        logger.info(text)

    anyio.run(one, "first loop")  # its timer never fires: the loop is gone
    anyio.run(one, "second loop")  # another loop: what waits is written, not left behind
    assert stream.getvalue().startswith("INFO first loop\n")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def tool_record(tool: str) -> CallRecord:
    return CallRecord(kind="tool", consumer="alice", team=None, org=None, key_id=None, api="echo", tool=tool)


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    lines = Lines()
    tool_logger.addHandler(lines)
    level = tool_logger.level
    tool_logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        tool_logger.removeHandler(lines)
        tool_logger.setLevel(level)


async def test_access_lines_are_made_in_a_batch_stamped_when_each_call_was_recorded(access_lines: Lines) -> None:
    log = AccessLog(interval=0.3)
    recorded = time.time()
    log.record(tool_record("first"))
    log.record(tool_record("second"))
    assert access_lines.records == []  # not on the call's path
    await anyio.sleep(0.5)
    assert [r.getMessage().split()[0] for r in access_lines.records] == ["tool=first", "tool=second"]
    for line in access_lines.records:
        assert abs(line.created - recorded) < 0.1 and line.msecs == pytest.approx((line.created % 1) * 1000)
        assert line.call()["consumer"] == "alice"  # type: ignore[attr-defined]


async def test_access_lines_are_made_a_chunk_per_turn_of_the_loop(access_lines: Lines) -> None:
    log = AccessLog(interval=0.05, chunk=2)
    for n in range(5):
        log.record(tool_record(f"t{n}"))
    seen = await progress(lambda: len(access_lines.records), 0.3)
    assert sorted(set(seen)) == [0, 2, 4, 5]
    assert [r.getMessage().split()[0] for r in access_lines.records] == [f"tool=t{n}" for n in range(5)]
    log.record(tool_record("later"))  # a new batch gets its own timer
    await anyio.sleep(0.2)
    assert access_lines.records[-1].getMessage().startswith("tool=later")


async def test_access_lines_are_made_at_once_at_flush_at_capacity_and_without_a_loop(access_lines: Lines) -> None:
    log = AccessLog(interval=60, capacity=2)
    log.record(tool_record("a"))
    log.flush()  # the gateway's stop
    assert len(access_lines.records) == 1
    log.record(tool_record("b"))
    log.record(tool_record("c"))  # capacity
    assert len(access_lines.records) == 3
    await anyio.to_thread.run_sync(log.record, tool_record("d"))  # no event loop in that thread
    assert [r.getMessage().split()[0] for r in access_lines.records] == ["tool=a", "tool=b", "tool=c", "tool=d"]


async def test_no_record_is_kept_when_the_access_log_is_off(access_lines: Lines) -> None:
    tool_logger.setLevel(logging.WARNING)
    log = AccessLog(interval=60)
    log.record(tool_record("quiet"))
    assert log._pending == [] and access_lines.records == []


async def test_a_model_calls_line_is_made_at_once() -> None:
    lines = Lines()
    model_logger.addHandler(lines)
    level = model_logger.level
    model_logger.setLevel(logging.INFO)
    try:
        AccessLog(interval=60).record(
            CallRecord(kind="model", consumer="alice", team=None, org=None, key_id=None, model="m")
        )
        assert [r.getMessage().split()[0] for r in lines.records] == ["model=m"]
    finally:
        model_logger.removeHandler(lines)
        model_logger.setLevel(level)


async def test_after_write_through_every_line_is_written_at_once() -> None:
    logger, handler, stream = handled(interval=60)
    logger.info("waiting")
    handler.write_through()  # a server begins to stop
    assert stream.getvalue() == "INFO waiting\n"
    logger.info("Application shutdown complete.")
    assert stream.getvalue().endswith("INFO Application shutdown complete.\n")
