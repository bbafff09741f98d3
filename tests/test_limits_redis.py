"""Rate limits in Redis: replicas share one limit exactly; leases free a dead replica's slots;
Redis down, hung or restarted behaves as `redis_failure` says, within a bounded time."""

from __future__ import annotations

import logging
import socket
import time

import anyio
import pytest

from mcp_gateway.metering.limits import LimitExceeded, LimitsUnavailable, Subject
from tests.limits_helpers import limiter, limits_config
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
ALICE = Subject(consumer="alice", team="payments", org="acme", key="k1", api="echo", tool="getItem")


async def test_a_live_replica_renews_its_slots_and_a_dead_ones_expire(redis_url: str) -> None:
    rules = [{"name": "one", "scope": "consumer", "concurrent": 1}]
    config = limits_config("redis", redis_url, rules, concurrency_lease_seconds=1)
    live, other = limiter(config), limiter(config)
    dead = limiter(config)
    try:
        held = await live.admit(ALICE)
        assert held is not None
        for _ in range(5):  # 2.5 s, over two leases: the live replica keeps renewing
            with pytest.raises(LimitExceeded):
                await other.admit(ALICE)
            await anyio.sleep(0.5)
        await held.release()
        taken = await dead.admit(ALICE)
        assert taken is not None
        await dead.aclose()  # the replica dies: no release, no renewal
        with pytest.raises(LimitExceeded):
            await other.admit(ALICE)
        started = time.monotonic()
        while True:
            try:
                admitted = await other.admit(ALICE)
                break
            except LimitExceeded:
                assert time.monotonic() - started < 3
                await anyio.sleep(0.1)
        assert admitted is not None and 0.5 < time.monotonic() - started <= 1.5
    finally:
        await live.aclose()
        await other.aclose()


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_redis_down_follows_the_failure_mode_quickly_and_recovers(
    redis_server: RedisServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    rules = [{"name": "w", "scope": "consumer", "requests_per_hour": 100}]
    limits = limiter(limits_config("redis", redis_server.url, rules, redis_failure=mode, redis_timeout=0.2))
    try:
        assert await limits.admit(ALICE) is not None
        redis_server.stop()
        caplog.set_level(logging.WARNING, "mcp_gateway.limits")
        for _ in range(20):
            started = time.monotonic()
            if mode == "fail_closed":
                with pytest.raises(LimitsUnavailable) as refused:
                    await limits.admit(ALICE)
                assert "the limits store is unreachable" in refused.value.message
                assert refused.value.retry_after == 1
            else:
                assert await limits.admit(ALICE) is None  # let through, unchecked
            assert time.monotonic() - started < 0.7
        assert limits.unchecked == 20
        lines = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.limits"]
        assert len(lines) == 1 and "Redis is unreachable" in lines[0]  # one line, not one per call
        assert ("let through unchecked" if mode == "fail_open" else "refused") in lines[0]
        # Back: checked again once the pause after a failure is over; a fresh Redis has lost the
        # script cache and the counts (no persistence): EVALSHA falls back to EVAL.
        redis_server.start()
        await anyio.sleep(1.05)
        admitted = await limits.admit(ALICE)
        assert admitted is not None and admitted.states[0].remaining == 99
    finally:
        await limits.aclose()


async def test_a_hung_redis_costs_a_call_its_timeout_not_a_hang() -> None:
    """A Redis that accepts connections and never answers: each check gives up after the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        rules = [{"name": "w", "scope": "global", "requests_per_minute": 5}]
        limits = limiter(limits_config("redis", url, rules, redis_timeout=0.2))
        try:
            started = time.monotonic()
            with pytest.raises(LimitsUnavailable):
                await limits.admit(ALICE)
            assert time.monotonic() - started < 0.9
            started = time.monotonic()
            with pytest.raises(LimitsUnavailable):  # within the pause: refused at once
                await limits.admit(ALICE)
            assert time.monotonic() - started < 0.05
        finally:
            await limits.aclose()


async def test_the_redis_password_never_reaches_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(None, "--requirepass", "the-right-one").start()
    try:
        password = "wrong-pass-5f1e2d3c4b"
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        config = limits_config("redis", url, [{"name": "w", "scope": "global", "concurrent": 5}])
        assert password not in repr(config)
        limits = limiter(config)
        caplog.set_level(logging.DEBUG)
        try:
            with pytest.raises(LimitsUnavailable) as refused:
                await limits.admit(ALICE)
        finally:
            await limits.aclose()
        assert password not in refused.value.message
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "Redis is unreachable" in logged and password not in logged
    finally:
        server.stop()
