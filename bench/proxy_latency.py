"""Added latency of a proxied tools/call over a direct call to the same upstream.

Starts the bench upstream (bench/upstream.py) and `mcp-gateway serve` as separate
processes on loopback, then, in the same run and at each concurrency, measures
  direct:  GET /items/42?q=bench on the upstream
  proxied: a JSON-RPC tools/call of getItem (same arguments) on the gateway's /mcp,
           stateless HTTP, one POST per call
and prints p50/p99 latency, throughput, the gateway's CPU time per call, and the
differences. The load comes from `wrk` (C, so the measuring side takes little of
the 2 cores) when it is installed (`apt-get install wrk`), else from httpx2 in
this process (`--load python`).

    python bench/proxy_latency.py [--load wrk|python] [--seconds 10] [--concurrency 1 32]
                                  [--era 2026-07-28] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

HERE = Path(__file__).resolve().parent

WRK_SCRIPT = """
wrk.method = "%(method)s"
wrk.body = %(body)s
%(headers)s
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.timeout + summary.errors.status
  io.write(string.format("WRK-JSON {\\"p50\\": %%d, \\"p99\\": %%d, \\"mean\\": %%f, \\"requests\\": %%d, "
    .. "\\"duration\\": %%d, \\"errors\\": %%d}\\n", latency:percentile(50), latency:percentile(99),
    latency.mean, summary.requests, summary.duration, errors))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process and its children so far (Linux /proc)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (Linux /proc)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until `url` answers 200; SystemExit when `proc` exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exited early ({proc.returncode}): {' '.join(map(str, proc.args))}")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout:g}s")


class Target:
    """One thing to measure: a request (method, URL, headers, body) and a check of its answer."""

    def __init__(self, name: str, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        self.name, self.method, self.url, self.headers, self.body = name, method, url, headers, body

    def check(self) -> None:
        r = httpx2.request(self.method, self.url, headers=self.headers, content=self.body, timeout=10)
        if r.status_code != 200 or b'"isError":true' in r.content:
            raise SystemExit(f"{self.name}: unexpected answer {r.status_code}: {r.text[:300]}")


def targets(upstream: str, gateway: str, era: str) -> tuple[Target, Target]:
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
    return (
        Target("direct", "GET", f"{upstream}/items/42?q=bench", {}, None),
        Target("proxied", "POST", gateway, headers, body),
    )


def run_wrk(target: Target, concurrency: int, seconds: float) -> dict:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    body = json.dumps(target.body.decode()) if target.body else "nil"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"method": target.method, "body": body, "headers": headers})
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                target.url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    stats = json.loads(out.split("WRK-JSON ", 1)[1].splitlines()[0])
    if stats["errors"]:
        raise SystemExit(f"{target.name}: {stats['errors']} failed requests under load")
    return {
        "p50_ms": stats["p50"] / 1000,
        "p99_ms": stats["p99"] / 1000,
        "mean_ms": stats["mean"] / 1000,
        "rps": stats["requests"] / (stats["duration"] / 1e6),
        "requests": stats["requests"],
    }


async def _run_python(target: Target, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await client.request(target.method, target.url, headers=target.headers, content=target.body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"{target.name}: HTTP {r.status_code}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "rps": len(latencies) / elapsed,
        "requests": len(latencies),
    }


def measure(load: str, target: Target, concurrency: int, seconds: float, gateway_pid: int) -> dict:
    run = run_wrk if load == "wrk" else lambda t, c, s: asyncio.run(_run_python(t, c, s))
    run(target, concurrency, min(2.0, seconds))  # warm-up: connection pools, caches
    cpu_before = cpu_seconds(gateway_pid)
    row = run(target, concurrency, seconds)
    row["gateway_cpu_ms"] = (cpu_seconds(gateway_pid) - cpu_before) / row["requests"] * 1000
    row.update(path=target.name, concurrency=concurrency)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--era", default="2026-07-28", help="MCP protocol version the requests use")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `mcp-gateway serve` argument")
    args = parser.parse_args()

    up_port, gw_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="mcp-gateway-bench-")
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": data_dir}
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
            "--workers",
            str(args.workers),
            *args.serve_arg,
        ],
        env=env,
    )
    rows = []
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/items/1", upstream)
        wait_ready(f"http://127.0.0.1:{gw_port}/readyz", gateway)
        direct, proxied = targets(f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{gw_port}/mcp", args.era)
        direct.check()
        proxied.check()
        for concurrency in args.concurrency:
            for target in (direct, proxied):
                rows.append(measure(args.load, target, concurrency, args.seconds, gateway.pid))
    finally:
        for proc in (gateway, upstream):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}; load: {args.load}; era {args.era}; "
        f"gateway workers: {args.workers} {' '.join(args.serve_arg)}"
    )
    print(f"{'path':<8} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls/s':>9} {'gw cpu ms/call':>15}")
    for r in rows:
        cpu = f"{r['gateway_cpu_ms']:>15.3f}" if r["path"] == "proxied" else f"{'-':>15}"
        print(
            f"{r['path']:<8} {r['concurrency']:>4} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['mean_ms']:>8.3f} "
            f"{r['rps']:>9.0f} {cpu}"
        )
    for c in args.concurrency:
        d = next(r for r in rows if r["path"] == "direct" and r["concurrency"] == c)
        p = next(r for r in rows if r["path"] == "proxied" and r["concurrency"] == c)
        print(
            f"concurrency {c}: added p50 {p['p50_ms'] - d['p50_ms']:+.3f} ms, "
            f"added p99 {p['p99_ms'] - d['p99_ms']:+.3f} ms, proxied {p['rps']:.0f} calls/s "
            f"({p['rps'] / d['rps']:.2f} of direct)"
        )


if __name__ == "__main__":
    main()
