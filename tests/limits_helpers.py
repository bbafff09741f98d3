"""Helpers of the rate-limit tests: limiters over each backend, fresh windows, expected Retry-After."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import anyio

from mcp_gateway.config.limits import LimitsConfig
from mcp_gateway.metering.limits import Limiter, limiter_for

BACKENDS = ["local", "redis"]


def limits_config(backend: str, redis_url: str | None, rules: list[dict[str, Any]], **extra: Any) -> LimitsConfig:
    """`rules` counted in this process or in the test's Redis, under a key prefix of their own."""
    # A roomy timeout: a loaded test machine must not turn a slow round trip into "Redis is down"
    # (the tests of timeouts give their own).
    shared = (
        {"redis_url": redis_url, "redis_prefix": f"test-{uuid.uuid4().hex[:10]}:", "redis_timeout": 2.0}
        if backend == "redis"
        else {}
    )
    return LimitsConfig.model_validate({"rules": rules, **shared, **extra})


def limiter(config: LimitsConfig) -> Limiter:
    found = limiter_for(config)
    assert found is not None
    return found


async def fresh_window(seconds: int, need: float) -> None:
    """Wait, if need be, until the current window of `seconds` has at least `need` seconds left."""
    left = seconds - time.time() % seconds
    if left < need:
        await anyio.sleep(left + 0.02)


def wait_for_window(seconds: int, need: float) -> None:
    """`fresh_window` for tests that are not async."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.02)


def retry_bounds(seconds: int, before: float, after: float) -> tuple[int, int]:
    """The Retry-After a refusal between `before` and `after` (epoch seconds) may say for a window of `seconds`."""
    return max(1, math.ceil(seconds - after % seconds)), max(1, math.ceil(seconds - before % seconds))
