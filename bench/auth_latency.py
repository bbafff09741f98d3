"""Added latency of access control: authenticating a request, and a whole tools/call with auth off vs on.

1. `AccessControl.authenticate` alone, in process: a cached gateway API key, and JWTs
   (RS256 with a 2048-bit key, ES256 on P-256) whose issuer's JWKS is already cached (the
   JWKS is served on loopback by this script and fetched once, before timing): the same token
   again (remembered after its first check) and distinct tokens (each signature checked).
2. A whole tools/call of getItem (2026-07-28 era, stateless) through the gateway's ASGI app
   in this process, with no inbound network: auth off, and auth on with each credential.
   The variants are interleaved in rounds and the best round of each is kept, so that
   other load on the machine affects them alike; the upstream is bench/upstream.py.
3. The same call through a running `mcp-gateway serve` process, loaded as
   bench/proxy_latency.py does (`wrk` when installed, else httpx2): auth off, then auth on
   with an API key and with a JWT. This includes the network stack and is the most
   sensitive to other load on the machine.

    python bench/auth_latency.py [--iterations 20000] [--rounds 15] [--calls 200]
                                 [--load wrk|python] [--seconds 5] [--served-rounds 3] [--concurrency 1 32]
                                 [--no-served]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import httpx2
import proxy_latency  # bench/ is on sys.path when this script runs: same load method and helpers
import uvicorn
import yaml
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_gateway.auth import keys
from mcp_gateway.auth.jwt import JwtVerifier
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, IssuerConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import IdentityStore, Selector

HERE = Path(__file__).resolve().parent
ERA = "2026-07-28"
RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "bench-rsa", "use": "sig"})
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "bench-ec", "use": "sig"})


@contextmanager
def jwks_server() -> Iterator[str]:
    """An issuer's JWKS on a loopback port (uvicorn in a thread); yields the issuer URL."""

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [RSA_KEY.as_dict(private=False), EC_KEY.as_dict(private=False)]})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/jwks", jwks)]), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def bench_upstream() -> Iterator[str]:
    """bench/upstream.py in its own process; yields its base URL."""
    port = proxy_latency.free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), str(port)])
    try:
        proxy_latency.wait_ready(f"http://127.0.0.1:{port}/items/1", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def token(issuer: str, resource: str, key: RSAKey | ECKey, alg: str, n: int = 0) -> str:
    """A JWT for the bench consumer; `n` makes it a distinct token (its `jti`)."""
    now = int(time.time())
    claims = {"iss": issuer, "aud": resource, "sub": "bench", "team": "bench-team", "scope": "mcp:tools",
              "iat": now, "nbf": now, "exp": now + 3600, "jti": f"bench-{n}"}  # fmt: skip
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def auth_config(issuer: str, resource: str, *, enabled: bool = True) -> AuthConfig:
    return AuthConfig(
        enabled=enabled,
        resource=resource,
        required_scopes=["mcp:tools"],
        issuers=[IssuerConfig(issuer=issuer, jwks_uri=issuer + "/jwks", team_claim="team")],
    )


# -- 1. authenticate() alone ------------------------------------------------------------------


async def time_authenticate(access: AccessControl, credentials: list[str], iterations: int) -> dict[str, float]:
    """µs per authenticate; with one credential it is seen again and again, with `iterations`
    distinct ones each is seen once (a JWT's signature is then checked every time)."""
    await access.authenticate(credentials[0])  # warm: loads the key row / fetches the JWKS
    samples = []
    for i in range(iterations):
        credential = credentials[i % len(credentials)]
        started = time.perf_counter_ns()
        await access.authenticate(credential)
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return {"p50": samples[len(samples) // 2], "p99": samples[int(0.99 * len(samples))],
            "mean": statistics.fmean(samples)}  # fmt: skip


async def authenticate_alone(issuer: str, iterations: int) -> list[tuple[str, dict[str, float]]]:
    resource = "https://gateway.bench/mcp"
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "gateway.db")
        store = IdentityStore(db)
        store.add_consumer("bench", "bench-team")
        _, api_key = keys.issue(store, "bench")
        access = AccessControl(store, enabled=True, jwt=JwtVerifier(auth_config(issuer, resource)))
        await access.reload()
        rows = []
        distinct = min(iterations, 2000)  # signing is slow; 2,000 distinct tokens of each kind
        for label, credentials in (
            ("API key (cached)", [api_key]),
            ("JWT RS256, seen before", [token(issuer, resource, RSA_KEY, "RS256")]),
            ("JWT ES256, seen before", [token(issuer, resource, EC_KEY, "ES256")]),
            ("JWT RS256, first sight", [token(issuer, resource, RSA_KEY, "RS256", n) for n in range(distinct)]),
            ("JWT ES256, first sight", [token(issuer, resource, EC_KEY, "ES256", n) for n in range(distinct)]),
        ):
            runs = iterations if len(credentials) == 1 else len(credentials)
            rows.append((label, await time_authenticate(access, credentials, runs)))
        await access.aclose()
        db.close()
    return rows


# -- 2. a whole tools/call through the ASGI app, in process ----------------------------------------


def in_process_gateway(upstream: str, auth: AuthConfig, data_dir: Path) -> tuple[Gateway, str]:
    """A gateway over the bench API where everyone may use every tool; returns it and an API key."""
    config = GatewayConfig(
        data_dir=data_dir,
        apis=[ApiConfig(name="bench", spec=str(HERE / "bench_api.yaml"), base_url=upstream)],
        auth=auth,
    )
    gateway = Gateway(config)
    gateway.identities.add_consumer("bench", "bench-team")
    gateway.identities.add_policy("everyone", "*", "allow", Selector(), None)
    return gateway, keys.issue(gateway.identities, "bench")[1]


async def whole_call_in_process(issuer: str, upstream: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """µs per tools/call of each variant, one figure per round."""
    resource = "http://127.0.0.1/mcp"
    _, target = proxy_latency.targets(upstream, resource, ERA)
    with tempfile.TemporaryDirectory() as tmp:
        off, _ = in_process_gateway(upstream, auth_config(issuer, resource, enabled=False), Path(tmp) / "off")
        on, api_key = in_process_gateway(upstream, auth_config(issuer, resource), Path(tmp) / "on")
        off_app, on_app = off.http_app(), on.http_app()
        variants = {
            "auth off": (off_app, None),
            "API key": (on_app, api_key),
            "JWT RS256": (on_app, token(issuer, resource, RSA_KEY, "RS256")),
            "JWT ES256": (on_app, token(issuer, resource, EC_KEY, "ES256")),
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        async with AsyncExitStack() as stack:
            clients = {}
            for app in (off_app, on_app):
                await stack.enter_async_context(app.router.lifespan_context(app))
            for name, (app, _) in variants.items():
                client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1")
                clients[name] = await stack.enter_async_context(client)
            headers = {
                name: {**target.headers, **({"Authorization": f"Bearer {c}"} if c else {})}
                for name, (_, c) in variants.items()
            }
            for round_number in range(rounds + 1):
                for name in variants:
                    started = time.perf_counter()
                    for _ in range(calls):
                        response = await clients[name].post("/mcp", content=target.body, headers=headers[name])
                        if response.status_code != 200 or b'"isError":true' in response.content:
                            raise SystemExit(f"{name}: {response.status_code} {response.text[:300]}")
                    if round_number:  # round 0 warms pools, caches and the JWKS
                        results[name].append((time.perf_counter() - started) / calls * 1e6)
    return results


# -- 3. through a running gateway process -------------------------------------------------------


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def start_gateway(data_dir: str, env: dict[str, str], name: str, config: dict) -> subprocess.Popen[bytes]:
    config_path = Path(data_dir) / f"gateway-{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "-c", str(config_path)], env=env)


def through_served_gateway(args: argparse.Namespace, issuer: str, upstream: str) -> list[dict]:
    """tools/call rows (one per variant, concurrency and round): auth off; auth on with an API key and a JWT.

    Both gateway processes run throughout (the one not being loaded is idle) and the variants
    take turns in each round, so that changing load on the machine spreads over all of them.
    """
    data_dir = tempfile.mkdtemp(prefix="mcp-gateway-auth-bench-")
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": data_dir}
    gateways: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rows: list[dict] = []
    try:
        cli(env, "consumers", "add", "bench", "--team", "bench-team")
        api_key = cli(env, "keys", "create", "bench").strip().splitlines()[-1]
        cli(env, "policies", "add", "--everyone", "--allow")
        for mode in ("off", "on"):
            port = proxy_latency.free_port()
            resource = f"http://127.0.0.1:{port}/mcp"
            config = {
                "log_level": "warning",
                "server": {"port": port},
                "apis": [{"name": "bench", "spec": str(HERE / "bench_api.yaml"), "base_url": upstream}],
                "auth": auth_config(issuer, resource, enabled=mode == "on").model_dump(exclude_defaults=True),
            }
            gateways[mode] = (start_gateway(data_dir, env, mode, config), resource)
        targets = []
        for label, mode, credential in (
            ("auth off", "off", None),
            ("API key", "on", api_key),
            ("JWT RS256", "on", token(issuer, gateways["on"][1], RSA_KEY, "RS256")),
        ):
            process, resource = gateways[mode]
            proxy_latency.wait_ready(resource.replace("/mcp", "/readyz"), process)
            _, target = proxy_latency.targets(upstream, resource, ERA)
            target.name = label
            if credential is not None:
                target.headers = {**target.headers, "Authorization": f"Bearer {credential}"}
            target.check()
            targets.append((target, process))
        for _ in range(args.served_rounds):
            for concurrency in args.concurrency:
                for target, process in targets:
                    rows.append(proxy_latency.measure(args.load, target, concurrency, args.seconds, process.pid))
    finally:
        for process, _ in gateways.values():
            process.terminate()
            process.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20000, help="authenticate() calls per credential")
    parser.add_argument("--rounds", type=int, default=15, help="in-process rounds (each variant once per round)")
    parser.add_argument("--calls", type=int, default=200, help="in-process tools/calls per variant per round")
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--seconds", type=float, default=5.0, help="per served measurement")
    parser.add_argument("--served-rounds", type=int, default=3, help="rounds of part 3")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--no-served", action="store_true", help="skip part 3 (the running gateway process)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure: shown with them

    with jwks_server() as issuer, bench_upstream() as upstream:
        auth_rows = asyncio.run(authenticate_alone(issuer, args.iterations))
        in_process = asyncio.run(whole_call_in_process(issuer, upstream, args.rounds, args.calls))
        served = [] if args.no_served else through_served_gateway(args, issuer, upstream)

    print(f"command: python {' '.join(sys.argv)}")
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"machine: {os.cpu_count()} cpus, {load}; python {sys.version.split()[0]}; era {ERA}")
    print(f"1. AccessControl.authenticate, {args.iterations} calls each (µs):")
    print(f"  {'credential':<26} {'p50':>8} {'p99':>8} {'mean':>8}")
    for label, r in auth_rows:
        print(f"  {label:<26} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['mean']:>8.1f}")

    print(f"2. tools/call through the ASGI app in process, µs per call ({args.rounds} rounds x {args.calls} calls):")
    best_off = min(in_process["auth off"])
    print(f"  {'credential':<10} {'best':>8} {'median':>8} {'added (best)':>13}")
    for name, samples in in_process.items():
        added = "" if name == "auth off" else f"{min(samples) - best_off:+13.0f}"
        print(f"  {name:<10} {min(samples):>8.0f} {statistics.median(samples):>8.0f} {added:>13}")

    if not served:
        return
    print(
        f"3. tools/call through a running gateway (load: {args.load}; stateless, one POST per call; "
        f"{args.served_rounds} rounds of {args.seconds:g} s; best and median of the rounds):"
    )
    print(
        f"  {'credential':<10} {'conc':>4} {'p50 ms best/med':>16} {'calls/s best/med':>17} {'gw cpu ms/call med':>19}"
    )
    summary: dict[tuple[str, int], dict[str, float]] = {}
    for c in args.concurrency:
        for name in dict.fromkeys(r["path"] for r in served):
            runs = [r for r in served if r["path"] == name and r["concurrency"] == c]
            p50s, rps, cpu = [r["p50_ms"] for r in runs], [r["rps"] for r in runs], [r["gateway_cpu_ms"] for r in runs]
            summary[(name, c)] = {"p50": min(p50s), "rps": max(rps), "cpu": statistics.median(cpu)}
            print(
                f"  {name:<10} {c:>4} {min(p50s):>7.3f}/{statistics.median(p50s):<8.3f} "
                f"{max(rps):>8.0f}/{statistics.median(rps):<8.0f} {statistics.median(cpu):>19.3f}"
            )
    for (name, c), row in summary.items():
        if name != "auth off":
            off = summary[("auth off", c)]
            print(
                f"  concurrency {c}, {name}: added p50 {row['p50'] - off['p50']:+.3f} ms (best), "
                f"gateway CPU {row['cpu'] - off['cpu']:+.3f} ms/call (median), {row['rps'] / off['rps']:.2f}x calls/s"
            )


if __name__ == "__main__":
    main()
