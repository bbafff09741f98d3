"""What drift checking costs a tool call.

1. One tool call through the gateway's pipeline (`gateway.handler`) in this process, to
   bench/upstream.py on loopback, for the same operation under three APIs that differ only in
   drift settings: `drift_check: false` (the baseline), the default (a tool's first response,
   then one per 60 s: every measured call is an unsampled one), and `drift_sample_seconds: 0`
   (every response is queued and checked by the worker thread, or dropped when the queue is
   full: the worst case, with the checking competing for the same two cores). Variants are
   interleaved in rounds; the median round of each is reported with its ratio to the baseline
   measured in the same run, and how many responses the last variant had checked and dropped.
2. The observer alone, for an unsampled response (what the default adds to a call), in ns.

    python bench/drift_overhead.py [--rounds 15] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import auth_latency  # bench/ is on sys.path when this script runs
import httpx2

from mcp_gateway.config import ApiConfig, GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.pipeline import Call
from mcp_gateway.upstream.client import UpstreamResponse

HERE = Path(__file__).resolve().parent
SPEC = str(HERE / "bench_api.yaml")
VARIANTS = {
    "off": {"drift_check": False},
    "default": {},
    "every": {"drift_sample_seconds": 0},
}


async def pipeline_calls(upstream: str, rounds: int, calls: int) -> tuple[dict[str, list[float]], dict, float]:
    """µs per call of each variant, one figure per round; the `every` variant's drift report;
    and ns per unsampled observer call."""
    with tempfile.TemporaryDirectory() as tmp:
        config = GatewayConfig(
            data_dir=Path(tmp),
            apis=[
                ApiConfig(name=f"bench-{name}", prefix=name, spec=SPEC, base_url=upstream, **settings)
                for name, settings in VARIANTS.items()
            ],
        )
        gateway = Gateway(config)
        await gateway.start()
        snapshot = gateway.catalog.snapshot
        plans = {}
        for name in VARIANTS:
            tool = next(t for t in snapshot.ordered if t.api == f"bench-{name}")
            plans[name] = (tool, snapshot.apis[tool.api])
        results: dict[str, list[float]] = {name: [] for name in VARIANTS}
        try:
            for round_number in range(rounds + 1):
                for name, (tool, entry) in plans.items():
                    started = time.perf_counter()
                    for i in range(calls):
                        result = await gateway.handler(Call(tool, entry, {"id": str(i)}))
                        if result.is_error:
                            raise SystemExit(f"{name}: {result.content[0].text}")  # type: ignore[union-attr]
                    if round_number:  # round 0 warms pools, caches and the drift checker
                        results[name].append((time.perf_counter() - started) / calls * 1e6)
            await asyncio.sleep(2)  # let the worker finish and record what it dropped
            report = {t.tool: t for t in gateway.drift_store.report("bench-every")}
            # The default variant's observer, after its first (sampled) response: every call is unsampled.
            tool, entry = plans["default"]
            observe = gateway.drift.observer_for(entry)
            assert observe is not None
            response = UpstreamResponse(200, "OK", httpx2.Headers({"content-type": "application/json"}), b"{}", 0.0)
            observe(tool, response)
            n = 1_000_000
            per_call_ns = timeit.timeit(lambda: observe(tool, response), number=n) / n * 1e9
            empty_ns = timeit.timeit(lambda: None, number=n) / n * 1e9
        finally:
            await gateway.aclose()
    return results, report, per_call_ns - empty_ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print("command: python bench/drift_overhead.py " + " ".join(sys.argv[1:]))
    with auth_latency.bench_upstream() as upstream:
        results, report, observer_ns = asyncio.run(pipeline_calls(upstream, args.rounds, args.calls))
    base = statistics.median(results["off"])
    print(f"\n1. one tool call through the pipeline, µs (median of {args.rounds} rounds of {args.calls} calls)")
    print(f"{'drift':<10} {'median':>8} {'best':>8} {'added':>8} {'ratio':>6}")
    for name, rounds in results.items():
        median = statistics.median(rounds)
        print(f"{name:<10} {median:8.1f} {min(rounds):8.1f} {median - base:+8.1f} {median / base:6.3f}")
    every = next(iter(report.values()), None)
    if every is not None:
        total = (args.rounds + 1) * args.calls
        print(f"`every`: {every.checked} of {total} responses checked, {every.dropped} dropped (queue full), "
              f"{len(every.findings)} findings")  # fmt: skip
    print(f"\n2. the observer for an unsampled response: {observer_ns:.0f} ns per call")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
