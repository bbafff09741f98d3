"""What the Prometheus metrics add to a tool call and to an HTTP request, against the same call
without them, in the same run.

The tool call is the gateway's real pipeline (`meter_calls` over `validate_arguments`) over an
endpoint that answers at once (bench/limits_overhead.py's), its records going to the access log
(at the default level, as in limits_overhead) and:

  none            nothing else (the baseline)
  metrics         PrometheusMeter as well: a counter and a histogram per call
  multiprocess    the same with `--workers N`'s values in mmap'd files (PROMETHEUS_MULTIPROC_DIR)

and the front door's `RequestMetrics` middleware around an ASGI app that answers at once, against
the bare app. Variants are interleaved in rounds (one call at a time); per-call percentiles and
the added p50 against each baseline are printed with the target (a few µs) and the command line.

    python bench/metrics_overhead.py [--rounds 10] [--calls 5000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable

from limits_overhead import answered, percentile, run_loop, timed, tool_call
from prometheus_client import values

from mcp_gateway.metering import Meters
from mcp_gateway.observe.access_log import AccessLog
from mcp_gateway.observe.metrics import MULTIPROC_ENV, PrometheusMeter
from mcp_gateway.observe.requests import RequestMetrics
from mcp_gateway.pipeline import compose
from mcp_gateway.pipeline.stages import meter_calls, validate_arguments

TARGET_US = 5.0


async def app(scope: dict, receive: Callable, send: Callable) -> None:
    """An ASGI app that answers at once."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def measure(rounds: int, calls: int, shared: str) -> dict[str, list[float]]:
    call = tool_call()
    plain = PrometheusMeter()
    # Values in files, as in a worker: the value class prometheus-client picks at import when
    # PROMETHEUS_MULTIPROC_DIR is set.
    os.environ[MULTIPROC_ENV] = shared
    values.ValueClass = values.MultiProcessValue()
    in_files = PrometheusMeter()
    variants: dict[str, Callable[[], Awaitable[object]]] = {}
    for name, meters in (("none", ()), ("metrics", (plain,)), ("multiprocess", (in_files,))):
        handler = compose([meter_calls(Meters(AccessLog(), *meters)), validate_arguments], answered)
        variants[f"tool: {name}"] = lambda handler=handler: handler(call)
    scope = {"type": "http", "path": "/mcp", "method": "POST", "headers": []}

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        return None

    for name, asgi in (("none", app), ("metrics", RequestMetrics(app, meter=plain)),
                       ("multiprocess", RequestMetrics(app, meter=in_files))):  # fmt: skip
        variants[f"request: {name}"] = lambda asgi=asgi: asgi(scope, receive, send)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm up: label children, files
        await timed(run, 500)
    for _ in range(rounds):
        for name, run in variants.items():
            samples[name] += await timed(run, calls)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=5000, help="calls per variant per round")
    args = parser.parse_args()
    shared = tempfile.mkdtemp(prefix="bench-metrics-")
    load = os.getloadavg()
    try:
        samples = run_loop(measure(args.rounds, args.calls, shared))
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    print(f"{'variant':<26} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'added p50 µs':>13} {'ratio':>7}")
    for name, found in samples.items():
        base = statistics.median(samples[name.split(":")[0] + ": none"])
        p50 = statistics.median(found)
        added = "" if name.endswith("none") else f"{p50 - base:13.2f} {p50 / base:7.2f}"
        print(f"{name:<26} {p50:9.2f} {percentile(found, 0.9):9.2f} {percentile(found, 0.99):9.2f} {added}")
    for what in ("tool", "request"):
        base = statistics.median(samples[f"{what}: none"])
        for mode in ("metrics", "multiprocess"):
            added = statistics.median(samples[f"{what}: {mode}"]) - base
            verdict = "met" if added <= TARGET_US else "NOT met"
            print(f"{what} with {mode}: added {added:.2f} µs p50, target <= {TARGET_US:g} µs: {verdict}")
    print(f"{args.rounds} rounds x {args.calls} calls per variant; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
