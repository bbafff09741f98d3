"""RFC 8693 token exchange to an upstream: the caller's JWT is traded at a real authorization server.

A loopback JWKS issuer mints the callers' RS256 JWTs; a real (authlib) authorization server verifies them as
subject tokens and issues upstream tokens; the upstream accepts only tokens that server issued. Nothing is mocked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, IssuerConfig
from mcp_gateway.gateway import Gateway
from tests.conftest import ADMIN_TOKEN, running_gateway
from tests.jwt_issuer import RESOURCE, SCOPE, Issuer, token_client
from tests.leaks import TEST_SERVER_LOGGERS, forms, leaked
from tests.oauth_server import TOKEN_EXCHANGE, OAuthServer
from tests.results import body_of, text_of
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]
CLIENT_ID = "gateway-xchg"
CLIENT_SECRET = "xchg-client-secret-0123456789"
AUDIENCE = "upstream-api"
TOOL = "getProfile"

SPEC = """\
openapi: 3.1.0
info: {title: Profile API, version: "1.0"}
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: https://idp.invalid/token
          scopes: {}
security:
  - oauth: []
paths:
  /me:
    get:
      operationId: getProfile
      summary: The profile of whoever the upstream token speaks for
      responses:
        "200":
          description: The token's subject and audience
          content:
            application/json:
              schema:
                type: object
                properties:
                  sub: {type: string}
                  audience: {type: array, items: {type: string}}
"""


class SubjectTokens:
    """The authorization server's check of a subject token: a live JWT of the issuer; its `sub`, else None."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.refuse = False  # the AS turns every exchange down
        self.seen: list[str] = []

    def __call__(self, token: str) -> str | None:
        self.seen.append(token)
        if self.refuse:
            return None
        public = RSAKey.import_key(self.issuer.rsa.as_dict(private=False))
        try:
            decoded = jwt.decode(token, public, algorithms=["RS256"])
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer.url}, sub={"essential": True}).validate(
                decoded.claims
            )
        except (JoseError, ValueError):
            return None
        return decoded.claims["sub"]


class ProfileApi:
    """The upstream: accepts only access tokens the authorization server issued; records every Authorization."""

    def __init__(self, oauth: OAuthServer) -> None:
        self.oauth = oauth
        self.authorizations: list[str] = []

    def app(self) -> Starlette:
        async def me(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            self.authorizations.append(header)
            scheme, _, token = header.partition(" ")
            claims = self.oauth.check(token) if scheme.lower() == "bearer" and token else None
            if claims is None:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            return JSONResponse({"sub": claims["sub"], "audience": claims.get("audience")})

        return Starlette(routes=[Route("/me", me)])


@dataclass
class Setup:
    url: str
    gateway: Gateway
    issuer: Issuer
    oauth: OAuthServer
    subjects: SubjectTokens
    upstream: ProfileApi

    def exchanges(self) -> list[dict[str, str]]:
        return [r for r in self.oauth.token_requests if r.get("grant_type") == TOKEN_EXCHANGE]


@contextmanager
def exchange_gateway(tmp_path: Path, issuer: Issuer) -> Iterator[Setup]:
    subjects = SubjectTokens(issuer)
    oauth = OAuthServer(subject_token_validator=subjects)
    oauth.add_client(CLIENT_ID, CLIENT_SECRET, grant_types=[TOKEN_EXCHANGE])
    profile = ProfileApi(oauth)
    spec = tmp_path / "profile.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    with serve_in_thread(oauth.app) as as_url, serve_in_thread(profile.app()) as api_url:
        oauth.issuer = as_url
        credential = {
            "type": "oauth2_token_exchange", "token_url": as_url + "/token", "client_id": CLIENT_ID,
            "client_secret": "secret:xchg", "audience": AUDIENCE,
        }  # fmt: skip
        config = GatewayConfig(
            data_dir=tmp_path / "data",
            admin_token=ADMIN_TOKEN,
            apis=[ApiConfig(name="profile", spec=str(spec), base_url=api_url, credentials={"oauth": credential})],
            auth=AuthConfig(
                enabled=True,
                resource=RESOURCE,
                required_scopes=[SCOPE],
                issuers=[IssuerConfig(issuer=issuer.url, jwks_uri=issuer.url + "/jwks")],
            ),
        )
        with running_gateway(config) as (url, gateway):
            gateway.vault.set("xchg", CLIENT_SECRET)
            admin = url.replace("/mcp", "/admin")
            policy = {"subject_kind": "everyone", "effect": "allow", "apis": ["profile"]}
            response = httpx2.post(f"{admin}/policies", json=policy, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert response.status_code == 201, response.text
            yield Setup(url, gateway, issuer, oauth, subjects, profile)


@pytest.fixture
def setup(tmp_path: Path, issuer: Issuer) -> Iterator[Setup]:
    with exchange_gateway(tmp_path, issuer) as found:
        yield found


async def call(setup: Setup, token: str, mode: str = "2026-07-28") -> Any:
    async with token_client(setup.url, token, mode) as client:
        return await client.call_tool(TOOL, {})


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_each_caller_gets_an_upstream_token_for_their_own_subject(setup: Setup, mode: str) -> None:
    alice, bob = setup.issuer.token(sub="alice"), setup.issuer.token(sub="bob")
    async with token_client(setup.url, alice, mode) as client:
        assert TOOL in {t.name for t in (await client.list_tools()).tools}
        as_alice = await client.call_tool(TOOL, {})
    as_bob = await call(setup, bob, mode)
    assert not as_alice.is_error and not as_bob.is_error, (text_of(as_alice), text_of(as_bob))
    assert body_of(as_alice) == {"sub": "alice", "audience": [AUDIENCE]}
    assert body_of(as_bob) == {"sub": "bob", "audience": [AUDIENCE]}

    # Two exchanges, one per caller, each with that caller's JWT as the subject token (never the other's).
    exchanges = setup.exchanges()
    assert len(exchanges) == 2
    for request in exchanges:
        assert request["audience"] == AUDIENCE
        assert request["subject_token"] == "***"  # present (the AS masks it in its log)
        assert request["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert setup.subjects.seen == [alice, bob]
    # The upstream saw two different tokens, one per subject.
    assert len(setup.upstream.authorizations) == 2
    assert len(set(setup.upstream.authorizations)) == 2
    subs = [setup.oauth.check(h.removeprefix("Bearer "))["sub"] for h in setup.upstream.authorizations]  # type: ignore[index]
    assert subs == ["alice", "bob"]


async def test_exchanged_token_is_cached_per_inbound_token(setup: Setup) -> None:
    alice = setup.issuer.token(sub="alice")
    async with token_client(setup.url, alice, "2026-07-28") as client:
        first = await client.call_tool(TOOL, {})
        second = await client.call_tool(TOOL, {})
    third = await call(setup, alice, "legacy")  # a new connection with the same JWT
    for result in (first, second, third):
        assert not result.is_error and body_of(result)["sub"] == "alice", text_of(result)
    assert len(setup.exchanges()) == 1
    assert len(setup.upstream.authorizations) == 3 and len(set(setup.upstream.authorizations)) == 1

    # Another JWT of the same subject is another inbound token: exchanged on its own.
    fresh = setup.issuer.token(sub="alice", jti="second-token")
    assert fresh != alice
    assert not (await call(setup, fresh)).is_error
    assert len(setup.exchanges()) == 2


async def test_a_gateway_api_key_cannot_be_exchanged(setup: Setup) -> None:
    admin, headers = setup.url.replace("/mcp", "/admin"), {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx2.post(f"{admin}/consumers", json={"name": "robot"}, headers=headers).status_code == 201
    created = httpx2.post(f"{admin}/keys", json={"consumer": "robot"}, headers=headers)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    async with token_client(setup.url, key, "2026-07-28") as client:
        assert TOOL in {t.name for t in (await client.list_tools()).tools}  # the key is a valid credential
        result = await client.call_tool(TOOL, {})
    assert result.is_error
    message = text_of(result)
    assert "'profile'" in message and "exchanged" in message, message
    assert "OAuth access token" in message, message
    assert key not in message
    assert setup.oauth.token_requests == [] and setup.subjects.seen == []
    assert setup.upstream.authorizations == []


async def test_the_upstream_never_sees_the_inbound_jwt(setup: Setup) -> None:
    tokens = [setup.issuer.token(sub=name) for name in ("alice", "bob", "carol")]
    for token in tokens:
        for mode in ERAS:
            result = await call(setup, token, mode)
            assert not result.is_error, text_of(result)
            assert token not in text_of(result) and token not in json.dumps(result.structured_content)
    seen = setup.upstream.authorizations
    assert len(seen) == 6
    for header in seen:
        assert header.startswith("Bearer ")
        assert setup.oauth.check(header.removeprefix("Bearer ")) is not None  # an AS-issued token
        for token in tokens:
            assert token not in header
    # ...while the AS did get each JWT, as the subject token.
    assert setup.subjects.seen == tokens


async def test_a_refused_exchange_is_a_tool_error(setup: Setup) -> None:
    alice = setup.issuer.token(sub="alice")
    setup.subjects.refuse = True
    async with token_client(setup.url, alice, "2026-07-28") as client:
        result = await client.call_tool(TOOL, {})
        assert result.is_error
        message = text_of(result)
        assert "exchange" in message and "failed" in message, message
        assert "'profile'" in message and "invalid_grant" in message, message
        assert alice not in message and CLIENT_SECRET not in message
        assert setup.upstream.authorizations == []
        # The gateway keeps serving, and a refusal is not cached: once the AS agrees, the call works.
        assert TOOL in {t.name for t in (await client.list_tools()).tools}
        setup.subjects.refuse = False
        ok = await client.call_tool(TOOL, {})
    assert not ok.is_error and body_of(ok)["sub"] == "alice", text_of(ok)
    assert len(setup.exchanges()) == 2


async def test_an_exchange_refused_with_the_request_quoted_leaks_nothing(setup: Setup) -> None:
    """The authorization server quotes the exchange request (the client's Basic credentials, the
    subject token) in error_description: the tool error carries its words, neither secret."""
    alice = setup.issuer.token(sub="alice")
    setup.oauth.echo_errors = True
    result = await call(setup, alice)
    message = text_of(result)
    assert result.is_error and "invalid_request" in message and "headers=" in message, message
    assert [form["grant_type"] for form in setup.oauth.echoed] == [TOKEN_EXCHANGE]
    for secret in (alice, CLIENT_SECRET):
        assert not leaked(secret, message), message


async def test_no_token_or_secret_leaks_from_an_exchange(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """The leak scan of tests/test_upstream_auth.py for this credential kind: the inbound JWTs, the
    exchanged tokens and the exchange client's secret, in every form, nowhere the gateway speaks."""
    caplog.set_level(logging.DEBUG)
    emitted: list[str] = []
    tokens = [setup.issuer.token(sub=name) for name in ("alice", "bob")]
    for token in tokens:
        for mode in ERAS:
            async with token_client(setup.url, token, mode) as client:
                emitted.append(json.dumps([t.model_dump(mode="json") for t in (await client.list_tools()).tools]))
                emitted.append((await client.call_tool(TOOL, {})).model_dump_json())
    setup.subjects.refuse = True
    emitted.append((await call(setup, setup.issuer.token(sub="mallory"))).model_dump_json())
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        for path in ("/apis", "/apis/profile", "/secrets"):
            emitted.append((await http.get(setup.url.replace("/mcp", "/admin") + path)).text)
    emitted += [
        r.getMessage() + (r.exc_text or "") for r in caplog.records if not r.name.startswith(TEST_SERVER_LOGGERS)
    ]
    haystack = "\n".join(emitted)
    issued = list(setup.oauth._by_access)
    assert len(issued) == 2
    for secret in (*tokens, *issued, CLIENT_SECRET):
        for form in forms(secret):
            assert form not in haystack, f"leaked ({form[:6]}…)"
