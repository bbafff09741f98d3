"""FastMCP's OpenAPI server over the bench upstream, for bench/peers.py.

Runs in FastMCP's own venv (bench/peer_venv.py), never the project's: FastMCP is a peer
measured against, not a dependency. Stateless Streamable HTTP at /mcp, as FastMCP's own
`run_http_async` configures uvicorn (its log level, lifespan, graceful shutdown), with
`--workers` uvicorn worker processes.

    FASTMCP_VENV/bin/python bench/fastmcp_server.py SPEC_JSON UPSTREAM_URL PORT [--workers N] [--sse]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import fastmcp
import httpx2
import uvicorn
from fastmcp import FastMCP
from starlette.applications import Starlette


def app_from_env() -> Starlette:
    """The ASGI app, configured from the environment (each uvicorn worker imports this module anew)."""
    spec = json.loads(Path(os.environ["PEER_SPEC"]).read_text())
    client = httpx2.AsyncClient(base_url=os.environ["PEER_UPSTREAM"], timeout=30)
    server = FastMCP.from_openapi(openapi_spec=spec, client=client, name="bench")
    json_response = os.environ.get("PEER_JSON_RESPONSE") == "1"
    return server.http_app(path="/mcp", stateless_http=True, json_response=json_response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", help="the OpenAPI document, as JSON")
    parser.add_argument("upstream")
    parser.add_argument("port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sse", action="store_true", help="SSE responses (default: JSON)")
    args = parser.parse_args()
    os.environ.update(PEER_SPEC=args.spec, PEER_UPSTREAM=args.upstream, PEER_JSON_RESPONSE="0" if args.sse else "1")
    uvicorn.run(
        "fastmcp_server:app_from_env",
        factory=True,
        app_dir=str(Path(__file__).resolve().parent),
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        # What FastMCP.run_http_async passes uvicorn.
        log_level=fastmcp.settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
