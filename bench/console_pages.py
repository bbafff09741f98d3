"""How long the console's ledger pages take over a large ledger (default: a million rows).

Fills a fresh SQLite database (or the PostgreSQL database given with --database) with `--rows`
calls spread over the last 30 days (50 consumers in 5 teams, 10 tools, 3 models), rolls finished
hours up as a running gateway does, then serves it with a real gateway and times each page over
HTTP with a logged-in session: the median of `--repeat` loads, and the slowest.

    python bench/console_pages.py [--rows 1000000] [--repeat 5] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_gateway.config import GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.metering.records import CallRecord, Usage
from mcp_gateway.store.database import Database
from mcp_gateway.store.ledger import LedgerStore
from tests.servers import serve_in_thread

TOKEN = "bench-admin-token-0123456789"
PAGES = [
    "/ui/?period=24h", "/ui/?period=7d", "/ui/?period=30d", "/ui/?period=90d",
    "/ui/usage?by=consumer&period=7d", "/ui/usage?by=tool&period=30d", "/ui/usage?by=model&period=90d",
    "/ui/usage.csv?by=consumer&period=30d", "/ui/calls", "/ui/calls?consumer=c7", "/ui/calls/{id}", "/ui/limits",
]  # fmt: skip


def fill(store: LedgerStore, rows: int, now: float) -> None:
    rng = random.Random(7)
    batch: list[CallRecord] = []
    for n in range(rows):
        consumer = rng.randrange(50)
        at = now - rng.random() * 30 * 86400
        common = {"consumer": f"c{consumer}", "team": f"t{consumer % 5}", "org": "acme", "key_id": f"k{consumer}",
                  "latency_ms": rng.lognormvariate(3, 0.6), "started_at": at, "error": rng.random() < 0.02}  # fmt: skip
        if n % 3:
            record = CallRecord("tool", api="api", tool=f"tool{rng.randrange(10)}", **common)  # type: ignore[arg-type]
        else:
            usage = Usage(input=rng.randrange(50, 2000), output=rng.randrange(10, 500))
            record = CallRecord("model", model=f"m{rng.randrange(3)}", provider="openai", usage=usage,
                                cost=Decimal(usage.input + 4 * usage.output) / 10**6, **common)  # type: ignore[arg-type]  # fmt: skip
        batch.append(record)
        if len(batch) == 20000:
            store.write(batch)
            batch.clear()
    store.write(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", help="a PostgreSQL URL (default: a new SQLite file)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="console-bench-"))
    url = args.database or f"sqlite:///{folder / 'gateway.db'}"
    now = time.time()
    started = time.perf_counter()
    db = Database(url)
    store = LedgerStore(db)
    fill(store, args.rows, now)
    store.rollup(now)
    print(f"{store.count()} ledger rows written and rolled up in {time.perf_counter() - started:.0f} s ({db.dialect})")
    db.close()
    config = GatewayConfig.model_validate(
        {
            "data_dir": str(folder),
            "database_url": url,
            "admin_token": TOKEN,
            "models_from_env": False,
            "budgets": {"rules": [{"name": "team-month", "scope": "team", "usd": "100"}]},
        }
    )
    gateway = Gateway(config)
    with serve_in_thread(gateway.http_app(), lifespan="on") as base:
        client = httpx2.Client(base_url=base, timeout=120)
        assert client.post("/ui/login", data={"token": TOKEN}).status_code == 303
        first = client.get("/ui/calls").text
        call_id = re.search(r'href="/ui/calls/(\d+)"', first).group(1)  # type: ignore[union-attr]
        print(f"{'page':45} {'median ms':>10} {'max ms':>8}")
        for page in PAGES:
            path = page.format(id=call_id)
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            print(f"{path:45} {statistics.median(times):10.1f} {max(times):8.1f}")


if __name__ == "__main__":
    main()
