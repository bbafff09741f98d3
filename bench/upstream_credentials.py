"""What upstream credentials cost a tool call: applying them, and scrubbing them from responses.

1. One tool call through the gateway's pipeline (`gateway.handler`: validation, request
   building, credentials, the pooled HTTP client, response conversion) in this process, to
   bench/upstream.py on loopback, for the same operation under six APIs that differ only in
   credentials: none (the baseline), a static bearer token and an API key in the query (both
   from the vault), an OAuth client-credentials token (from a loopback token endpoint, cached),
   a per-user token (a consumer's stored connection) and RFC 8693 token exchange (cached per
   inbound token). Variants are interleaved in rounds; the median round of each is reported,
   with its ratio to the baseline measured in the same run.
2. Scrubbing alone: `Scrubber.text()` (upstream/scrub.py) over decoded response bodies of
   several sizes, for one call's secrets (two secrets, every spelling), absent from the body
   (the usual case: one substring search per form) and present.

    python bench/upstream_credentials.py [--rounds 15] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import auth_latency  # bench/ is on sys.path when this script runs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.pipeline import Call
from mcp_gateway.upstream.credentials import Caller
from mcp_gateway.upstream.oauth import Token
from mcp_gateway.upstream.scrub import scrubber

HERE = Path(__file__).resolve().parent
SPEC = str(HERE / "bench_api.yaml")


def token_endpoint() -> Starlette:
    """A minimal OAuth token endpoint: any client, any grant; tokens valid an hour."""
    issued = {"n": 0}

    async def token(request: Request) -> JSONResponse:
        await request.form()
        issued["n"] += 1
        return JSONResponse({"access_token": f"bench-token-{issued['n']:06d}", "token_type": "Bearer",
                             "expires_in": 3600})  # fmt: skip

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


def variants(token_url: str) -> dict[str, dict]:
    oauth = {"client_id": "bench", "client_secret": "secret:client-secret", "token_url": token_url}
    return {
        "none": {},
        "bearer": {"*": {"type": "bearer", "token": "secret:bench-token"}},
        "api_key_query": {"*": {"type": "api_key", "in": "query", "name": "api_key", "value": "secret:bench-token"}},
        "client_credentials": {"*": {"type": "oauth2_client_credentials", **oauth}},
        "per_user": {"*": {"type": "oauth2_user", "authorization_url": token_url, **oauth}},
        "token_exchange": {"*": {"type": "oauth2_token_exchange", **oauth}},
    }


async def pipeline_calls(upstream: str, token_url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """µs per call of each variant, one figure per round."""
    with tempfile.TemporaryDirectory() as tmp:
        kinds = variants(token_url)
        config = GatewayConfig(
            data_dir=Path(tmp),
            apis=[
                ApiConfig(name=f"bench-{name}", prefix=name, spec=SPEC, base_url=upstream, credentials=credentials)
                for name, credentials in kinds.items()
            ],
        )
        gateway = Gateway(config)
        gateway.vault.set("bench-token", "bench-static-token-0123456789")
        gateway.vault.set("client-secret", "bench-client-secret-0123456789")
        await gateway.start()
        snapshot = gateway.catalog.snapshot
        await gateway.connections.save("bench", "bench-per_user", Token("bench-user-token-0123", time.time() + 7200))
        caller = Caller("bench", subject_token="inbound-jwt-stand-in")
        plans = {}
        for name in kinds:
            tool = next(t for t in snapshot.ordered if t.api == f"bench-{name}" and t.operation.method == "GET")
            plans[name] = (tool, snapshot.apis[tool.api])
        results: dict[str, list[float]] = {name: [] for name in kinds}
        try:
            for round_number in range(rounds + 1):
                for name, (tool, entry) in plans.items():
                    started = time.perf_counter()
                    for i in range(calls):
                        result = await gateway.handler(Call(tool, entry, {"id": str(i)}, caller))
                        if result.is_error:
                            raise SystemExit(f"{name}: {result.content[0].text}")  # type: ignore[union-attr]
                    if round_number:  # round 0 warms pools, tokens and caches
                        results[name].append((time.perf_counter() - started) / calls * 1e6)
        finally:
            await gateway.aclose()
    return results


def scrubbing(repeat: int = 200) -> list[tuple[str, float, float]]:
    """(size, µs with the secrets absent, µs with one present) per body size."""
    scrub = scrubber(["bench-static-token-0123456789", "bench-client-secret-0123456789"])
    out = []
    for size in (1_000, 100_000, 1_000_000):
        clean = ('{"name": "widget", "tags": ["a", "b"]} ' * (size // 40 + 1))[:size]
        dirty = clean[: size // 2] + "bench-static-token-0123456789" + clean[size // 2 :]
        timings = []
        for body in (clean, dirty):
            started = time.perf_counter()
            for _ in range(repeat):
                scrub.text(body)
            timings.append((time.perf_counter() - started) / repeat * 1e6)
        out.append((f"{size:,} B", timings[0], timings[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print("command: python bench/upstream_credentials.py " + " ".join(sys.argv[1:]))
    from tests.servers import serve_in_thread  # the loopback server helper the tests use

    with auth_latency.bench_upstream() as upstream, serve_in_thread(token_endpoint()) as token_base:
        results = asyncio.run(pipeline_calls(upstream, f"{token_base}/token", args.rounds, args.calls))
    base = statistics.median(results["none"])
    print(f"\n1. one tool call through the pipeline, µs (median of {args.rounds} rounds of {args.calls} calls)")
    print(f"{'credential':<20} {'median':>8} {'best':>8} {'added':>8} {'ratio':>6}")
    for name, rounds in results.items():
        median = statistics.median(rounds)
        print(f"{name:<20} {median:8.1f} {min(rounds):8.1f} {median - base:+8.1f} {median / base:6.3f}")
    print("\n2. scrubbing a response of the call's secrets, µs per response")
    print(f"{'body':<12} {'absent':>8} {'present':>8}")
    for size, absent, present in scrubbing():
        print(f"{size:<12} {absent:8.1f} {present:8.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
