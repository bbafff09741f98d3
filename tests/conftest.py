"""Shared fixtures: real upstream and gateway servers on loopback; async tests run on asyncio."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, GatewayConfig, ServerConfig
from mcp_gateway.gateway import Gateway
from tests.db_servers import PostgresServer
from tests.jwt_issuer import Issuer
from tests.servers import serve_in_thread
from tests.upstream import create_app as create_upstream

# The redis-server fixtures (redis_url, redis_server), for the rate-limit tests.
pytest_plugins = ["tests.redis_server"]

DATA = Path(__file__).parent / "data"
ECHO_SPEC = DATA / "echo.yaml"
ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (started on first use, stopped at the end)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database: a SQLite file, then a PostgreSQL database (the store's
    tests run on both backends)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'gateway.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.database()


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    """An upstream that records the Authorization header of every request (the echo API's paths):
    its base URL and the headers seen (what the gateway sent, before any response scrubbing)."""
    seen: list[str] = []

    async def record(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization", ""))
        return JSONResponse({"ok": True})

    with serve_in_thread(Starlette(routes=[Route("/{path:path}", record)])) as url:
        yield url + "/api", seen


@pytest.fixture(scope="session")
def upstream() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/api`) of a real echo API."""
    with serve_in_thread(create_upstream()) as url:
        yield url + "/api"


@contextmanager
def running_gateway(config: GatewayConfig, **uvicorn: Any) -> Iterator[tuple[str, Gateway]]:
    """A gateway serving HTTP on a free port; yields its `/mcp` URL and the Gateway.
    `uvicorn` goes to uvicorn.Config (e.g. `http="httptools"`, the parser `mcp-gateway serve` uses)."""
    gateway = Gateway(config)
    with serve_in_thread(gateway.http_app(), lifespan="on", **uvicorn) as url:
        yield url + "/mcp", gateway


GatewayFactory = Callable[..., AbstractContextManager[tuple[str, Gateway]]]


@pytest.fixture
def gateway_factory(tmp_path: Path, upstream: str) -> GatewayFactory:
    """Start gateways over the echo API with per-test overrides."""

    def factory(
        *, api: dict | None = None, server: dict | None = None, uvicorn: dict | None = None, **overrides: object
    ):
        api_cfg = ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream, **(api or {}))
        config = GatewayConfig(
            data_dir=tmp_path / "data",
            apis=[api_cfg],
            admin_token=ADMIN_TOKEN,
            server=ServerConfig(**(server or {})),
            **overrides,
        )
        return running_gateway(config, **(uvicorn or {}))

    return factory


@pytest.fixture
def gateway_url(gateway_factory: GatewayFactory) -> Iterator[str]:
    """The `/mcp` URL of a default (stateless) gateway over the echo API."""
    with gateway_factory() as (url, _):
        yield url


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    """A JWT issuer (tests/jwt_issuer.py) serving its JWKS and metadata on loopback."""
    found = Issuer()
    with serve_in_thread(found.app()) as url:
        found.url = url
        yield found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "replica_config(config): more config for tests/test_replicas.py's replicas")
    config.addinivalue_line("markers", "own_redis: tests/test_replicas.py's replicas use the test's own redis_server")
