"""The model router's cost: a chat completion direct to a provider, through the gateway, through LiteLLM.

Starts, as separate processes on loopback:
  provider  bench/llm_provider.py: a fast fake OpenAI-compatible provider (bare uvloop + httptools)
  gateway   `mcp-gateway serve` serving one model (gpt-4o-mini) from that provider, access
            control on (a gateway key, a consumer, a policy allowing the model: as in production)
  noauth    the same gateway with access control off
  litellm   LiteLLM proxy (pinned, installed by this script into its own venv, never a project
            dependency) with a master key, the same model from the same provider (`openai/`)
and measures, in one run and back to back per phase, chat completions not streamed and
streamed, at each concurrency:
- latency p50/p99 and calls/s with `wrk` (Lua-scripted POSTs; a streamed call's latency is
  the whole stream), and each proxy's CPU time per call (from /proc);
- time to first token (the first content token's bytes) and to the end of the stream, with a
  small asyncio + httptools client (wrk cannot see the first token);
- the gateway's memory: RSS after every phase, then over `--requests-for-memory` more calls of
  each kind (RSS at 0, 10%, 50% and 100% of them).
It prints the tables, the gateway's added latency over direct calls, the gateway/LiteLLM
throughput ratios (from the same run), the issue's targets met or not, and the command line.
The machine is shared and small: the load average before and after is printed with the figures;
`--rounds` repeats the timed phases (the medians are printed).

    python bench/llm_proxy.py [--seconds 10] [--concurrency 1 32] [--skip-litellm]
                              [--requests-for-memory 100000] [--rounds 1] [--ttft-seconds 5]
                              [--log-level info] [--gap-ms 0] [--prompt-chars 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httptools
import httpx2
import peer_venv
import proxy_latency  # bench/ is on sys.path when this script runs: same helpers
import uvloop
import yaml

HERE = Path(__file__).resolve().parent
LITELLM_VERSION = "1.106.12"
LITELLM_VENV = peer_venv.ROOT / "litellm-venv"
MODEL = "gpt-4o-mini"  # genai-prices and LiteLLM both price it: each proxy computes a cost per call
PROVIDER_KEY = "sk-bench-provider-0123456789abcdef"
LITELLM_KEY = "sk-bench-litellm-master"
FIRST_TOKEN = b"Hello"  # the fake provider's first content token

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %(authorization)s
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.timeout + summary.errors.status
  io.write(string.format("WRK-JSON {\\"p50\\": %%d, \\"p99\\": %%d, \\"mean\\": %%f, \\"requests\\": %%d, "
    .. "\\"duration\\": %%d, \\"errors\\": %%d}\\n", latency:percentile(50), latency:percentile(99),
    latency.mean, summary.requests, summary.duration, errors))
end
"""


@dataclass
class Target:
    """One way to reach the model: a base URL, the credential it takes, the process(es) serving it."""

    name: str
    base: str  # .../v1
    key: str
    process: subprocess.Popen[bytes] | None = None  # the proxy measured (None: direct)

    @property
    def url(self) -> str:
        return f"{self.base}/chat/completions"


def request_body(prompt_chars: int, stream: bool) -> bytes:
    """A chat completion request with a system prompt and a user message of about `prompt_chars` in all."""
    words = "You are a careful assistant. Answer briefly and cite the documents you were given. "
    system = (words * (prompt_chars // (2 * len(words)) + 1))[: prompt_chars // 2]
    user = ("Summarise the following notes for the weekly report: " + "item, " * prompt_chars)[: prompt_chars // 2]
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True  # no stream_options: the gateway adds include_usage and drops the extra chunk
    return json.dumps(body).encode()


# -- processes ----------------------------------------------------------------------------------------


def litellm_executable(venv: Path, version: str) -> Path:
    """LiteLLM proxy `version` in `venv`, installed there (from PyPI) when missing or another version."""
    peer_venv.ensure(venv, "litellm", version, [f"litellm[proxy]=={version}"])
    return venv / "bin" / "litellm"


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def start_gateway(work: Path, env: dict[str, str], name: str, provider: str, auth: bool, log_level: str) -> Target:
    port = proxy_latency.free_port()
    config = {
        "log_level": log_level,
        "server": {"host": "127.0.0.1", "port": port},
        "auth": {"enabled": auth},
        "models": [
            {
                "name": MODEL,
                "deployments": [
                    {"provider": "openai", "base_url": f"{provider}/v1", "api_key": "env:BENCH_PROVIDER_KEY"}
                ],
            }
        ],
    }
    path = work / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (work / f"gateway-{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_gateway.cli", "serve", "-c", str(path)], env=env, stdout=log, stderr=log
    )
    # With access control off the key is not looked at; clients send one all the same.
    return Target(name, f"http://127.0.0.1:{port}/v1", "sk-not-checked", process)


def start_litellm(work: Path, executable: Path, provider: str) -> Target:
    port = proxy_latency.free_port()
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"{provider}/v1",
                    "api_key": "os.environ/BENCH_PROVIDER_KEY",
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_KEY},
    }
    path = work / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "BENCH_PROVIDER_KEY": PROVIDER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = (work / "litellm.log").open("wb")
    process = subprocess.Popen(
        [str(executable), "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        env=env,
        stdout=log,
        stderr=log,
    )
    return Target("litellm", f"http://127.0.0.1:{port}/v1", LITELLM_KEY, process)


def check(target: Target, prompt_chars: int) -> None:
    """One call of each kind answers as the provider did (the gateway drops the usage chunk it asked for)."""
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
    whole = httpx2.post(target.url, content=request_body(prompt_chars, False), headers=headers, timeout=30)
    if whole.status_code != 200 or whole.json()["usage"]["completion_tokens"] != 16:
        raise SystemExit(f"{target.name}: unexpected answer {whole.status_code}: {whole.text[:300]}")
    streamed = httpx2.post(target.url, content=request_body(prompt_chars, True), headers=headers, timeout=30)
    text = streamed.text
    if streamed.status_code != 200 or "data: [DONE]" not in text or FIRST_TOKEN.decode() not in text:
        raise SystemExit(f"{target.name}: unexpected stream {streamed.status_code}: {text[:300]}")
    if '"choices":[]' in text.replace(" ", ""):
        raise SystemExit(f"{target.name}: the usage chunk the client did not ask for reached it")


# -- load -----------------------------------------------------------------------------------------------


def run_wrk(target: Target, body: bytes, concurrency: int, seconds: float) -> dict:
    """wrk POSTing `body` for `seconds`."""
    script_text = WRK_SCRIPT % {
        "body": json.dumps(body.decode()),
        "authorization": json.dumps(f"Bearer {target.key}"),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    duration = f"{max(1, round(seconds))}s"
    try:
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}", "--timeout", "10s", "-s", script.name]
        out = subprocess.run([*command, target.url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    stats = json.loads(out.split("WRK-JSON ", 1)[1].splitlines()[0])
    if stats["errors"]:
        raise SystemExit(f"{target.name}: {stats['errors']} failed requests under load")
    return {
        "p50_ms": stats["p50"] / 1000,
        "p99_ms": stats["p99"] / 1000,
        "rps": stats["requests"] / (stats["duration"] / 1e6),
        "requests": stats["requests"],
    }


def cpu_ms_per_call(process: subprocess.Popen[bytes] | None, before: float, calls: int) -> float | None:
    if process is None:
        return None
    return (proxy_latency.cpu_seconds(process.pid) - before) / calls * 1000


def cpu_now(process: subprocess.Popen[bytes] | None) -> float:
    return proxy_latency.cpu_seconds(process.pid) if process is not None else 0.0


def measure(
    target: Target, provider: subprocess.Popen[bytes], kind: str, body: bytes, concurrency: int, seconds: float
) -> dict:
    run_wrk(target, body, concurrency, min(2.0, seconds))  # warm-up: pools, caches, lazy imports
    proxy_before, provider_before = cpu_now(target.process), cpu_now(provider)
    row = run_wrk(target, body, concurrency, seconds)
    row["proxy_cpu_ms"] = cpu_ms_per_call(target.process, proxy_before, row["requests"])
    row["provider_cpu_ms"] = cpu_ms_per_call(provider, provider_before, row["requests"])
    row.update(target=target.name, kind=kind, concurrency=concurrency)
    return row


class _StreamReader:
    """httptools callbacks for one streamed answer: status, when the first token came, when it ended."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.first: float | None = None
        self.done = False
        self.tail = b""

    def on_body(self, body: bytes) -> None:
        if self.first is None and FIRST_TOKEN in self.tail + body:
            self.first = time.perf_counter()
        self.tail = body[-16:]

    def on_message_complete(self) -> None:
        self.done = True


async def _ttft_worker(target: Target, body: bytes, more: Callable[[], bool], out: list[tuple[float, float]]) -> None:
    host, port = target.base.split("//", 1)[1].split("/", 1)[0].split(":")
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {target.key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        while more():
            answer = _StreamReader()
            started = time.perf_counter()
            writer.write(head + body)
            while not answer.done:
                data = await reader.read(65536)
                if not data:
                    raise SystemExit(f"{target.name}: the connection closed mid-answer")
                answer.parser.feed_data(data)
            ended = time.perf_counter()
            if answer.parser.get_status_code() != 200 or answer.first is None:
                raise SystemExit(f"{target.name}: HTTP {answer.parser.get_status_code()} or no first token")
            out.append((answer.first - started, ended - started))
    finally:
        writer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_ttft(target: Target, body: bytes, concurrency: int, seconds: float) -> dict:
    """Time to first token and to the end of a stream, from a client holding `concurrency` connections."""

    async def run(duration: float) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        deadline = time.perf_counter() + duration
        more = lambda: time.perf_counter() < deadline  # noqa: E731
        await asyncio.gather(*(_ttft_worker(target, body, more, out) for _ in range(concurrency)))
        return out

    uvloop.run(run(min(1.0, seconds)))  # warm-up
    samples = uvloop.run(run(seconds))
    first = [s[0] * 1000 for s in samples]
    whole = [s[1] * 1000 for s in samples]
    return {
        "target": target.name,
        "concurrency": concurrency,
        "ttft_p50": percentile(first, 0.5),
        "ttft_p99": percentile(first, 0.99),
        "stream_p50": percentile(whole, 0.5),
        "calls": len(samples),
    }


def memory(target: Target, bodies: dict[str, bytes], total: int) -> list[tuple[str, int, float]]:
    """RSS of the gateway at 0, 10%, 50% and 100% of `total` calls of each kind, at concurrency 32."""
    assert target.process is not None
    points: list[tuple[str, int, float]] = []
    for kind, body in bodies.items():
        done = 0
        points.append((kind, 0, proxy_latency.rss_mb(target.process.pid)))
        for mark in (total // 10, total // 2, total):
            done += calls(target, body, 32, mark - done)
            points.append((kind, done, proxy_latency.rss_mb(target.process.pid)))
    return points


def calls(target: Target, body: bytes, concurrency: int, count: int) -> int:
    """Exactly `count` calls over `concurrency` connections (wrk cannot stop at a count)."""
    started = 0

    def more() -> bool:
        nonlocal started
        started += 1
        return started <= count

    async def run() -> int:
        out: list[tuple[float, float]] = []
        await asyncio.gather(*(_ttft_worker(target, body, more, out) for _ in range(concurrency)))
        return len(out)

    return uvloop.run(run())


# -- report ---------------------------------------------------------------------------------------------


def median_rows(rows: list[dict], keys: tuple[str, ...], fields: tuple[str, ...]) -> list[dict]:
    """One row per `keys` combination, each of `fields` the median over the rounds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for group in groups.values():
        merged = dict(group[0])
        for f in fields:
            values = [r[f] for r in group if r.get(f) is not None]
            merged[f] = statistics.median(values) if values else None
        merged["rounds"] = len(group)
        out.append(merged)
    return out


def report(args: argparse.Namespace, rows: list[dict], ttft: list[dict], mem: list, rss: dict, load: tuple) -> None:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} cpus, load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"python {sys.version.split()[0]}; gateway log level {args.log_level}; {args.seconds:g} s per phase, "
        f"{args.rounds} round(s) (medians); prompt {args.prompt_chars} chars, 16 tokens answered"
    )
    rows = median_rows(
        rows, ("kind", "concurrency", "target"), ("p50_ms", "p99_ms", "rps", "proxy_cpu_ms", "provider_cpu_ms")
    )
    print(
        f"\n{'kind':<7} {'conc':>4} {'target':<8} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'calls/s':>8} "
        f"{'proxy cpu ms/call':>18} {'provider cpu ms/call':>21}"
    )
    by = {(r["kind"], r["concurrency"], r["target"]): r for r in rows}
    for r in rows:
        direct = by[(r["kind"], r["concurrency"], "direct")]
        added = None if r["target"] == "direct" else r["p50_ms"] - direct["p50_ms"]
        print(
            f"{r['kind']:<7} {r['concurrency']:>4} {r['target']:<8} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{fmt(added, '+10.3f'):>10} {r['rps']:>8.0f} {fmt(r['proxy_cpu_ms'], '18.3f'):>18} "
            f"{fmt(r['provider_cpu_ms'], '21.3f'):>21}"
        )
    ttft = median_rows(ttft, ("concurrency", "target"), ("ttft_p50", "ttft_p99", "stream_p50"))
    print(
        f"\nstreams (asyncio client): {'conc':>4} {'target':<8} {'TTFT p50':>9} {'TTFT p99':>9} {'added TTFT p50':>15} "
        f"{'whole p50':>10}"
    )
    first = {(r["concurrency"], r["target"]): r for r in ttft}
    for r in ttft:
        direct = first[(r["concurrency"], "direct")]
        added = None if r["target"] == "direct" else r["ttft_p50"] - direct["ttft_p50"]
        print(
            f"{'':<25} {r['concurrency']:>4} {r['target']:<8} {r['ttft_p50']:>9.3f} {r['ttft_p99']:>9.3f} "
            f"{fmt(added, '+15.3f'):>15} {r['stream_p50']:>10.3f}"
        )
    if mem:
        print(f"\ngateway RSS: {rss['start']:.1f} MB at start, {rss['timed']:.1f} MB after the timed phases; then")
        for kind in dict.fromkeys(k for k, _, _ in mem):
            points = [(n, mb) for k, n, mb in mem if k == kind]
            print(f"  {kind:<6} " + ", ".join(f"{n:,} calls {mb:.1f} MB" for n, mb in points))
    if "litellm" in rss:
        print(f"litellm RSS after the timed phases: {rss['litellm']:.1f} MB")

    print("\ntargets (the issue's; at concurrency 32 a 2-core machine queues, so latency there is shown, not judged):")
    low = min(args.concurrency)
    added = by[("json", low, "gateway")]["p50_ms"] - by[("json", low, "direct")]["p50_ms"]
    verdict = "met" if added <= 1 else "NOT met"
    print(f"  added p50, not streamed, concurrency {low}: {added:+.3f} ms (target <= 1 ms): {verdict}")
    added = first[(low, "gateway")]["ttft_p50"] - first[(low, "direct")]["ttft_p50"]
    verdict = "met" if added <= 1 else "NOT met"
    print(f"  added time to first token p50, concurrency {low}: {added:+.3f} ms (target <= 1 ms): {verdict}")
    added = by[("stream", low, "gateway")]["p50_ms"] - by[("stream", low, "direct")]["p50_ms"]
    print(f"  (added p50 to a whole 16-event stream, concurrency {low}: {added:+.3f} ms)")
    for kind in ("json", "stream"):
        for c in args.concurrency:
            if (kind, c, "litellm") in by:
                gw, ll = by[(kind, c, "gateway")], by[(kind, c, "litellm")]
                ratio = gw["rps"] / ll["rps"]
                noauth = by[(kind, c, "noauth")]["rps"] / ll["rps"]
                print(
                    f"  calls/s gateway / litellm, {kind}, concurrency {c}: {ratio:.1f}x (auth off {noauth:.1f}x; "
                    f"target >= 10x): {'met' if ratio >= 10 else 'NOT met'}"
                )
    for kind in dict.fromkeys(k for k, _, _ in mem):
        points = [(n, mb) for k, n, mb in mem if k == kind]
        growth = points[-1][1] - points[1][1]
        print(
            f"  memory, {kind}: {growth:+.1f} MB from {points[1][0]:,} to {points[-1][0]:,} calls "
            f"(flat: within 5 MB): {'met' if abs(growth) <= 5 else 'NOT met'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per timed phase (after a warm-up)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--skip-litellm", action="store_true", help="measure direct and the gateway only")
    parser.add_argument("--requests-for-memory", type=int, default=100_000, help="per kind; 0 skips")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the timed phases; medians are printed")
    parser.add_argument("--ttft-seconds", type=float, default=None, help="per TTFT phase (default: --seconds / 2)")
    parser.add_argument("--log-level", default="info", help="the gateway's (info, its default, logs each call)")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="the provider's pause between stream events")
    parser.add_argument("--prompt-chars", type=int, default=2000, help="size of the request's messages")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    ttft_seconds = args.ttft_seconds if args.ttft_seconds is not None else max(1.0, args.seconds / 2)
    litellm = None if args.skip_litellm else litellm_executable(args.litellm_venv, args.litellm_version)
    load = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="mcp-gateway-llm-bench-"))
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(work / "data"), "BENCH_PROVIDER_KEY": PROVIDER_KEY}
    port = proxy_latency.free_port()
    provider = subprocess.Popen(
        [sys.executable, str(HERE / "llm_provider.py"), str(port), PROVIDER_KEY, "--gap-ms", str(args.gap_ms)]
    )
    provider_url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = [provider]
    rows: list[dict] = []
    ttft: list[dict] = []
    mem: list = []
    rss: dict[str, float] = {}
    try:
        cli(env, "consumers", "add", "bench", "--team", "bench-team")
        gateway_key = cli(env, "keys", "create", "bench").strip().splitlines()[-1]
        cli(env, "policies", "add", "--consumer", "bench", "--allow", "--model", MODEL)
        targets = [Target("direct", f"{provider_url}/v1", PROVIDER_KEY)]
        gateway = start_gateway(work, env, "gateway", provider_url, True, args.log_level)
        gateway.key = gateway_key
        targets.append(gateway)
        targets.append(start_gateway(work, env, "noauth", provider_url, False, args.log_level))
        if litellm is not None:
            targets.append(start_litellm(work, litellm, provider_url))
        processes += [t.process for t in targets if t.process is not None]
        proxy_latency.wait_ready(f"{provider_url}/health", provider)
        for target in targets[1:3]:
            assert target.process is not None
            proxy_latency.wait_ready(target.base.replace("/v1", "/readyz"), target.process, timeout=120)
        rss["start"] = proxy_latency.rss_mb(gateway.process.pid)  # type: ignore[union-attr]
        if litellm is not None:
            proxy = targets[3]
            assert proxy.process is not None
            proxy_latency.wait_ready(proxy.base.replace("/v1", "/health/liveliness"), proxy.process, 120)
        for target in targets:
            check(target, args.prompt_chars)
        bodies = {"json": request_body(args.prompt_chars, False), "stream": request_body(args.prompt_chars, True)}
        for _ in range(args.rounds):
            for kind, body in bodies.items():
                for c in args.concurrency:
                    for target in targets:
                        rows.append(measure(target, provider, kind, body, c, args.seconds))
            for c in args.concurrency:
                for target in targets:
                    ttft.append(measure_ttft(target, bodies["stream"], c, ttft_seconds))
        rss["timed"] = proxy_latency.rss_mb(gateway.process.pid)  # type: ignore[union-attr]
        if litellm is not None:
            rss["litellm"] = proxy_latency.rss_mb(targets[3].process.pid)  # type: ignore[union-attr]
        if args.requests_for_memory:
            mem = memory(gateway, bodies, args.requests_for_memory)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        if args.keep:
            print(f"work directory: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(args, rows, ttft, mem, rss, load)


if __name__ == "__main__":
    main()
