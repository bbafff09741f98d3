"""What a rate-limit check and a budget check add to a call: in this process, and with Redis on
loopback, against the same call without them, in the same run.

The call is the gateway's real tool pipeline (`meter_calls` with the log line, `validate_arguments`,
and `limit_calls` when limits are on, `budget_calls` and `price_calls` when budgets are) over an
endpoint that answers at once, so the difference between the variants is their own cost. Variants:

  none            no limit stage (the baseline)
  local           counters in this process
  redis           counters in a redis-server this script starts on a free loopback port
                  (or `--redis-url`), one EVALSHA round trip per call
each with two rule sets (limits high enough never to refuse):
  requests        per consumer per minute, per team per hour, for everyone per second
  requests+slots  the same and a per-consumer concurrency limit: the slot is freed after the
                  call, a second round trip on Redis
and, for a model call, `tokens`: a per-consumer token limit reserved before and settled after
(admit + release, as the /v1 doors do). Budgets, on the same backends:
  budgets         per consumer per month, per team per day, for everyone in total (caps never
                  reached): the call's flat cost reserved on all three in one check (one round
                  trip on Redis), settled after (a second)
and, for a model call, `budget`: the same three budgets, the call's most possible cost reserved
and its record's cost settled (admit, spend, release, as the /v1 doors do).

Variants are interleaved in rounds (uvloop, one call at a time); per-call latency percentiles
over every round, and the added p50 against the baseline, are printed with the issue's targets
(<= 50 µs p50 in-process, <= 0.5 ms with Redis) and the command line.

    python bench/limits_overhead.py [--rounds 10] [--calls 2000] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import mcp_types as types

from mcp_gateway.auth.principal import Principal
from mcp_gateway.catalog import ApiEntry
from mcp_gateway.config import ApiConfig
from mcp_gateway.config.budgets import BudgetsConfig
from mcp_gateway.config.limits import LimitsConfig
from mcp_gateway.metering.budgets import Budgets, budgets_for
from mcp_gateway.metering.costs import ToolCosts
from mcp_gateway.metering.limits import Limiter, limiter_for, subject_of
from mcp_gateway.observe.access_log import AccessLog
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.pipeline import Call, Handler, compose
from mcp_gateway.pipeline.stages import budget_calls, limit_calls, meter_calls, price_calls, validate_arguments

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
SPEC = str(HERE / "bench_api.yaml")
BIG = 1_000_000_000  # limits that never refuse
REQUEST_RULES = [
    {"scope": "consumer", "requests_per_minute": BIG},
    {"scope": "team", "requests_per_hour": BIG},
    {"scope": "global", "requests_per_second": BIG},
]
SLOT_RULES = [*REQUEST_RULES, {"scope": "consumer", "concurrent": BIG}]
TOKEN_RULES = [{"scope": "consumer", "tokens_per_minute": BIG}]
BUDGETS = [
    {"scope": "consumer", "usd": BIG - 1, "period": "month"},
    {"scope": "team", "usd": BIG - 1, "period": "day"},
    {"scope": "global", "usd": BIG - 1, "period": "total"},
]
ALICE = Principal("alice", "payments", "acme", credential_id="key-1")


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a free loopback port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (bash scripts/test installs it), or pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    sys.exit("redis-server did not start")


def limits(rules: list[dict], redis_url: str | None) -> Limiter:
    config = LimitsConfig.model_validate(
        {"rules": rules, "redis_url": redis_url, "redis_prefix": f"bench-{uuid.uuid4().hex[:8]}:"}
    )
    found = limiter_for(config)
    assert found is not None
    return found


def budgets(redis_url: str | None) -> Budgets:
    limits = LimitsConfig.model_validate({"redis_url": redis_url, "redis_prefix": f"bench-{uuid.uuid4().hex[:8]}:"})
    return budgets_for(BudgetsConfig.model_validate(BUDGETS), limits)


def tool_call() -> Call:
    config = ApiConfig(name="bench", spec=SPEC, base_url="http://127.0.0.1:9/", cost="0.001")  # type: ignore[arg-type]
    ingest = ingest_api(config)
    tool = next(t for t in ingest.tools if t.name == "getItem")
    return Call(tool, ApiEntry(config, ingest), {"id": "42", "q": "x"}, principal=ALICE)


async def answered(call: Call) -> types.CallToolResult:
    """The endpoint: an upstream that answers at once."""
    return types.CallToolResult(content=[])


async def timed(run: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    """µs of each of `calls` calls, one at a time."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        started = clock()
        await run()
        out.append((clock() - started) / 1000)
    return out


async def measure(rounds: int, calls: int, redis_url: str) -> dict[str, list[float]]:
    call = tool_call()
    variants: dict[str, Callable[[], Awaitable[object]]] = {}
    limiters: list[Limiter | Budgets] = []
    meter = meter_calls(AccessLog())
    base: Handler = compose([meter, validate_arguments], answered)
    variants["tool: none"] = lambda: base(call)
    for backend, url in (("local", None), ("redis", redis_url)):
        for name, rules in (("requests", REQUEST_RULES), ("requests+slots", SLOT_RULES)):
            limiter = limits(rules, url)
            limiters.append(limiter)
            handler = compose([meter, validate_arguments, limit_calls(limiter)], answered)
            variants[f"tool: {backend} {name}"] = lambda handler=handler: handler(call)
    costs = ToolCosts()
    for backend, url in (("local", None), ("redis", redis_url)):
        spend = budgets(url)
        limiters.append(spend)
        handler = compose([meter, validate_arguments, budget_calls(spend, costs), price_calls(costs)], answered)
        variants[f"tool: {backend} budgets"] = lambda handler=handler: handler(call)
    model = subject_of(ALICE, model="gpt-4o")
    for backend, url in (("local", None), ("redis", redis_url)):
        limiter = limits(TOKEN_RULES, url)
        limiters.append(limiter)

        async def tokens(limiter: Limiter = limiter) -> None:
            admission = await limiter.admit(model, 1200)
            assert admission is not None
            admission.use_tokens(300)
            await admission.release()

        variants[f"model: {backend} tokens"] = tokens
    for backend, url in (("local", None), ("redis", redis_url)):
        spend = budgets(url)
        limiters.append(spend)

        async def budget(spend: Budgets = spend) -> None:
            hold = await spend.admit(model, Decimal("0.0125"))
            assert hold is not None
            hold.spend(Decimal("0.0003125"))
            await hold.release()

        variants[f"model: {backend} budget"] = budget
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm up: connections, script cache, counters
        await timed(run, 200)
    for _ in range(rounds):
        for name, run in variants.items():
            samples[name] += await timed(run, calls)
    for limiter in limiters:
        await limiter.aclose()
    return samples


def run_loop(main: Awaitable[T]) -> T:
    """Run `main` on uvloop when it is installed (as `serve` does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant per round")
    parser.add_argument("--redis-url", help="an existing Redis (default: start one on loopback)")
    args = parser.parse_args()
    process, url = (None, args.redis_url) if args.redis_url else start_redis()
    load = os.getloadavg()
    try:
        samples = run_loop(measure(args.rounds, args.calls, url))
    finally:
        if process is not None:
            process.kill()
    baseline = statistics.median(samples["tool: none"])
    print(f"{'variant':<30} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'added p50 µs':>13}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        added = "" if name == "tool: none" or name.startswith("model") else f"{p50 - baseline:13.1f}"
        print(f"{name:<30} {p50:9.1f} {percentile(values, 0.9):9.1f} {percentile(values, 0.99):9.1f} {added}")
    for what in ("requests", "budgets"):
        local = statistics.median(samples[f"tool: local {what}"]) - baseline
        remote = statistics.median(samples[f"tool: redis {what}"]) - baseline
        print(f"\n{what}: target in-process <= 50 µs p50: {local:.1f} µs ({'met' if local <= 50 else 'NOT met'})")
        print(f"{what}: target with Redis <= 500 µs p50: {remote:.1f} µs ({'met' if remote <= 500 else 'NOT met'})")
    print(f"{args.rounds} rounds x {args.calls} calls per variant; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}; Redis: {'given' if args.redis_url else 'started on loopback'}")  # fmt: skip
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
