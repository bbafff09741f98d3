"""Added latency of a proxied tools/call over a direct call to the same upstream.

Starts the bench upstream and `mcp-gateway serve` as separate processes on
loopback, then measures from this process, in the same run:
  direct:  GET /items/{id} on the upstream
  proxied: JSON-RPC tools/call getItem on the gateway's /mcp (stateless HTTP, one
           POST per call, no MCP client library overhead on the measuring side)
at each concurrency, and prints p50/p99 latency, throughput and the difference.

    python bench/proxy_latency.py [--requests 3000] [--concurrency 1 32] [--era 2025-11-25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early: {proc.args}")
        try:
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready")


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux /proc), to report CPU per call."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(send, requests: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def measure(
    upstream: str, gateway: str, requests: int, concurrencies: list[int], era: str, gateway_pid: int
) -> list[dict]:
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": era,
    }
    params: dict = {"name": "getItem", "arguments": {"id": "42", "q": "bench"}}
    if era >= "2026":
        # The 2026-07-28 wire: every request carries its own envelope; no session.
        headers.update({"Mcp-Method": "tools/call", "Mcp-Name": "getItem"})
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": era,
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    rows = []
    async with httpx2.AsyncClient(limits=limits, timeout=30) as client:

        async def direct() -> None:
            r = await client.get(f"{upstream}/items/42", params={"q": "bench"})
            assert r.status_code == 200

        async def proxied() -> None:
            r = await client.post(gateway, content=body, headers=headers)
            assert r.status_code == 200 and b'"isError":true' not in r.content, r.text[:300]

        for concurrency in concurrencies:
            for name, send in (("direct", direct), ("proxied", proxied)):
                await run(send, min(200, requests), concurrency)  # warm-up: pools, caches
                cpu_before = cpu_seconds(gateway_pid)
                latencies, elapsed = await run(send, requests, concurrency)
                gateway_cpu = (cpu_seconds(gateway_pid) - cpu_before) / len(latencies) * 1000
                rows.append(
                    {
                        "path": name,
                        "concurrency": concurrency,
                        "p50_ms": percentile(latencies, 0.50) * 1000,
                        "p99_ms": percentile(latencies, 0.99) * 1000,
                        "mean_ms": statistics.fmean(latencies) * 1000,
                        "rps": len(latencies) / elapsed,
                        "gateway_cpu_ms": gateway_cpu if name == "proxied" else 0.0,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--era", default="2025-11-25", help="MCP-Protocol-Version header to send")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra `mcp-gateway serve` argument")
    args = parser.parse_args()

    up_port, gw_port = free_port(), free_port()
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{gw_port}")}
    upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), str(up_port)])
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_gateway.cli",
            "serve",
            "--spec",
            str(HERE / "bench_api.yaml"),
            "--base-url",
            f"http://127.0.0.1:{up_port}",
            "--port",
            str(gw_port),
            "--log-level",
            "warning",
            *args.gateway_arg,
        ],
        env=env,
    )
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/items/1", upstream)
        wait_ready(f"http://127.0.0.1:{gw_port}/readyz", gateway)
        rows = asyncio.run(
            measure(
                f"http://127.0.0.1:{up_port}",
                f"http://127.0.0.1:{gw_port}/mcp",
                args.requests,
                args.concurrency,
                args.era,
                gateway.pid,
            )
        )
    finally:
        for proc in (gateway, upstream):
            proc.terminate()
            proc.wait(10)

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}, era {args.era}")
    print(f"{'path':<8} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls/s':>9} {'gw cpu ms/call':>15}")
    for r in rows:
        print(
            f"{r['path']:<8} {r['concurrency']:>4} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['mean_ms']:>8.3f} "
            f"{r['rps']:>9.0f} {r['gateway_cpu_ms']:>15.3f}"
        )
    for c in args.concurrency:
        d = next(r for r in rows if r["path"] == "direct" and r["concurrency"] == c)
        p = next(r for r in rows if r["path"] == "proxied" and r["concurrency"] == c)
        print(
            f"concurrency {c}: added p50 {p['p50_ms'] - d['p50_ms']:+.3f} ms, "
            f"added p99 {p['p99_ms'] - d['p99_ms']:+.3f} ms, proxied/direct throughput {p['rps'] / d['rps']:.2f}"
        )


if __name__ == "__main__":
    main()
