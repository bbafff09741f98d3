"""Opaque access tokens checked by RFC 7662 introspection, against the authlib test server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import pytest

from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, IssuerConfig
from mcp_gateway.gateway import STORE_POLL_SECONDS, Gateway
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import IdentityStore, Selector
from mcp_gateway.vault import Vault
from tests.conftest import ECHO_SPEC, running_gateway
from tests.jwt_issuer import RESOURCE, SCOPE, token_client
from tests.oauth_server import OAuthServer
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio
RS_SECRET = "rs-introspection-secret-0123"


@dataclass
class Setup:
    url: str
    gateway: Gateway
    oauth: OAuthServer
    as_url: str

    def token(self, client: str = "agent", **form: str) -> str:
        response = httpx2.post(
            f"{self.as_url}/token",
            data={"grant_type": "client_credentials", "scope": SCOPE, **form},
            auth=(client, f"{client}-secret"),
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def introspections(self) -> int:
        return self.oauth.introspections


@contextmanager
def introspecting_gateway(tmp_path: Path, upstream: str, cache_seconds: float) -> Iterator[Setup]:
    oauth = OAuthServer()
    oauth.add_client("gateway-rs", RS_SECRET, grant_types=())
    for agent in ("agent", "other"):
        oauth.add_client(agent, f"{agent}-secret", grant_types=("client_credentials",), scope=f"{SCOPE} other")
    data_dir = tmp_path / "data"
    db = Database(data_dir / "gateway.db")
    Vault.open(db, data_dir).set("rs-secret", RS_SECRET)
    IdentityStore(db).add_policy("everyone", "*", "allow", Selector(), None)
    db.close()
    with serve_in_thread(oauth.app) as as_url:
        oauth.issuer = as_url
        issuer = IssuerConfig(
            issuer=as_url,
            jwks_uri=as_url + "/jwks-unused",
            introspection_endpoint=as_url + "/introspect",
            introspection_client_id="gateway-rs",
            introspection_client_secret="secret:rs-secret",
            introspection_cache_seconds=cache_seconds,
        )
        config = GatewayConfig(
            data_dir=data_dir,
            apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
            auth=AuthConfig(enabled=True, resource=RESOURCE, required_scopes=[SCOPE], issuers=[issuer]),
        )
        with running_gateway(config) as (url, gateway):
            yield Setup(url, gateway, oauth, as_url)


async def status(url: str, token: str) -> int:
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
    return response.status_code


async def test_an_active_opaque_token_is_accepted_and_its_client_is_the_consumer(tmp_path: Path, upstream: str) -> None:
    with introspecting_gateway(tmp_path, upstream, cache_seconds=60) as setup:
        token = setup.token()
        async with token_client(setup.url, token, "2026-07-28") as client:
            assert "getItem" in {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("getItem", {"id": "1"})
            assert not result.is_error
        # Remembered: the second request did not ask again.
        asked = setup.oauth.introspections
        assert await status(setup.url, token) == 200
        assert setup.oauth.introspections == asked
        # Unknown, and for another audience: refused.
        assert await status(setup.url, "not-a-token-at-all") == 401
        wrong_audience = setup.token(resource="https://elsewhere.example/mcp")
        assert await status(setup.url, wrong_audience) == 401
        right_audience = setup.token(resource=RESOURCE)
        assert await status(setup.url, right_audience) == 200
        # Without the required scope: 403.
        narrow = setup.token(scope="other")
        assert await status(setup.url, narrow) == 403


async def test_revocation_applies_once_the_cache_lapses(tmp_path: Path, upstream: str) -> None:
    with introspecting_gateway(tmp_path, upstream, cache_seconds=0) as setup:
        token = setup.token()
        assert await status(setup.url, token) == 200
        revoked = httpx2.post(f"{setup.as_url}/revoke", data={"token": token}, auth=("agent", "agent-secret"))
        assert revoked.status_code == 200
        assert await status(setup.url, token) == 401


async def test_an_unreachable_issuer_refuses_without_crashing(tmp_path: Path, upstream: str) -> None:
    with introspecting_gateway(tmp_path, upstream, cache_seconds=0) as setup:
        token = setup.token()
        setup.gateway.access.introspector.issuers[0] = setup.gateway.access.introspector.issuers[0].model_copy(  # type: ignore[union-attr]
            update={"introspection_endpoint": "http://127.0.0.1:9/introspect"}
        )
        assert await status(setup.url, token) == 401


async def test_a_rotated_introspection_secret_is_read_again_after_the_next_poll(tmp_path: Path, upstream: str) -> None:
    with introspecting_gateway(tmp_path, upstream, cache_seconds=0) as setup:
        assert await status(setup.url, setup.token()) == 200  # the client secret is read, and kept
        rotated = "rs-introspection-secret-rotated-4567"
        setup.oauth.add_client("gateway-rs", rotated, grant_types=())  # the issuer rotates it...
        await anyio.to_thread.run_sync(setup.gateway.vault.set, "rs-secret", rotated)  # ...and so does the operator
        await anyio.sleep(STORE_POLL_SECONDS + 0.5)
        assert await status(setup.url, setup.token()) == 200  # a new token, checked with the new secret
