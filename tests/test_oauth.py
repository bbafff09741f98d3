"""OAuth 2.1 resource server: real JWTs from a real issuer (JWKS and metadata on loopback), real HTTP.

The issuer's RSA and EC keys are made here; every token is signed for its case. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from pydantic import ValidationError

from mcp_gateway.auth.apikeys import AuthFailure
from mcp_gateway.auth.jwt import JwtVerifier
from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, IssuerConfig
from mcp_gateway.gateway import Gateway
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway
from tests.jwt_issuer import RESOURCE, SCOPE, Issuer, b64, rsa_key, token_client

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]
METADATA_URL = "https://gateway.test/.well-known/oauth-protected-resource/mcp"
MIN_REFETCH = 2.0  # long enough for the repeated requests below to land inside it


def oauth_config(data_dir: Path, upstream: str, issuer: Issuer) -> GatewayConfig:
    return GatewayConfig(
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
        auth=AuthConfig(
            enabled=True,
            resource=RESOURCE,
            required_scopes=[SCOPE],
            issuers=[
                IssuerConfig(
                    issuer=issuer.url,
                    jwks_uri=issuer.url + "/jwks",
                    team_claim="team",
                    org_claim="org",
                    jwks_min_refetch_seconds=MIN_REFETCH,
                ),
                IssuerConfig(issuer=issuer.tenant, algorithms=["ES256"], team_claim="team"),
            ],
        ),
    )


@contextmanager
def oauth_gateway(data_dir: Path, upstream: str, issuer: Issuer) -> Iterator[tuple[str, Gateway]]:
    """A gateway trusting `issuer`, with policies: consumer robot-1 may use getItem; team payments, plain."""
    with running_gateway(oauth_config(data_dir, upstream, issuer)) as (url, gateway):
        admin = url.replace("/mcp", "/admin")
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for policy in (
            {"subject_kind": "consumer", "subject": "robot-1", "effect": "allow", "tools": ["getItem"]},
            {"subject_kind": "team", "subject": "payments", "effect": "allow", "tools": ["plain"]},
        ):
            assert httpx2.post(f"{admin}/policies", json=policy, headers=headers).status_code == 201
        yield url, gateway


async def post_mcp(url: str, token: str | None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-11-25"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)


def assert_refused(response: httpx2.Response, token: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="mcp-gateway"')
    assert 'error="invalid_token"' in challenge and f'resource_metadata="{METADATA_URL}"' in challenge
    assert token not in challenge and token not in response.text  # the token is never echoed


@pytest.mark.parametrize("mode", ERAS)
async def test_good_tokens_see_exactly_their_tools(tmp_path: Path, upstream: str, issuer: Issuer, mode: str) -> None:
    with oauth_gateway(tmp_path, upstream, issuer) as (url, _):
        # robot-1: getItem by its consumer policy, plain by its team's.
        async with token_client(url, issuer.token(), mode) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"getItem", "plain"}
            result = await client.call_tool("getItem", {"id": "7"})
            assert not result.is_error and result.structured_content["path"] == "/api/items/7"  # type: ignore[index]
            assert "authorization" not in result.structured_content["headers"]  # type: ignore[index]
        # Another member of the team, signed with the EC key: only the team's tool. No consumer row needed.
        async with token_client(url, issuer.token(issuer.ec, sub="bot-2"), mode) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"plain"}
        # The second issuer, whose JWKS the gateway found through its RFC 8414 metadata.
        tenant_token = issuer.token(issuer.tenant_ec, iss=issuer.tenant, sub="robot-1", team=None)
        async with token_client(url, tenant_token, mode) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"getItem"}


async def test_refusals(tmp_path: Path, upstream: str, issuer: Issuer) -> None:
    now = int(time.time())
    other = rsa_key("rsa-1")  # same kid as the issuer's key, different key

    def unsigned_input(alg: str) -> str:
        header = json.dumps({"alg": alg, "kid": "rsa-1", "typ": "JWT"}).encode()
        return f"{b64(header)}.{b64(json.dumps(issuer.claims()).encode())}"

    # HS/RS confusion: HMAC keyed with the issuer's public key, which anyone can fetch from the JWKS.
    confused = unsigned_input("HS256")
    confused += "." + b64(hmac.new(issuer.rsa.as_pem(private=False), confused.encode(), hashlib.sha256).digest())
    # case: (token, the reason the gateway must give)
    cases = {
        "alg none": (unsigned_input("none") + ".", "algorithm is not accepted"),
        "HS256 keyed with the RSA public key": (confused, "algorithm is not accepted"),
        "wrong signature": (issuer.token(other), "signature is invalid"),
        "EC key named by an RS256 token": (issuer.token(other, kid="ec-1"), "signing key is not known"),
        "untrusted issuer": (issuer.token(iss="https://evil.example"), "issuer is not trusted"),
        "no issuer": (issuer.token(iss=None), "issuer is not trusted"),
        "wrong audience": (issuer.token(aud="https://other.example/mcp"), "audience"),
        "audience list without this resource": (issuer.token(aud=["https://other.example/mcp", "x"]), "audience"),
        "no audience": (issuer.token(aud=None), "audience"),
        "expired": (issuer.token(exp=now - 3600, iat=now - 7200, nbf=now - 7200), "expired"),
        "not yet valid": (issuer.token(nbf=now + 3600), "not yet valid"),
        "issued in the future": (issuer.token(iat=now + 3600), "issued in the future"),
        "no expiry": (issuer.token(exp=None), "missing or malformed"),
        "no subject": (issuer.token(sub=None), "no 'sub' claim"),
        "team claim not a name": (issuer.token(team=["payments"]), "claim 'team'"),
        "garbage": ("abc.def.ghi", "malformed"),
    }
    with oauth_gateway(tmp_path, upstream, issuer) as (url, _):
        assert (await post_mcp(url, issuer.token())).status_code == 200
        for case, (token, reason) in cases.items():
            response = await post_mcp(url, token)
            try:
                assert_refused(response, token)
                assert reason in response.json()["error_description"]
            except AssertionError as exc:
                raise AssertionError(f"{case}: {response.text}") from exc

        # Without a credential: a bare challenge pointing to the metadata and naming the scope needed.
        missing = await post_mcp(url, None)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == (
            f'Bearer realm="mcp-gateway", resource_metadata="{METADATA_URL}", scope="{SCOPE}"'
        )

        # A valid token without the required scope: 403 insufficient_scope (RFC 6750 §3.1).
        narrow = await post_mcp(url, issuer.token(scope="openid profile"))
        assert narrow.status_code == 403
        challenge = narrow.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and f'scope="{SCOPE}"' in challenge
        assert f'resource_metadata="{METADATA_URL}"' in challenge
        # Scopes as a list are read too.
        assert (await post_mcp(url, issuer.token(scope=["openid", SCOPE]))).status_code == 200


async def test_unknown_kid_refetches_once_then_rotation_is_accepted(
    tmp_path: Path, upstream: str, issuer: Issuer
) -> None:
    with oauth_gateway(tmp_path, upstream, issuer) as (url, _):
        assert (await post_mcp(url, issuer.token())).status_code == 200
        assert issuer.jwks_requests == 1
        assert (await post_mcp(url, issuer.token(issuer.ec))).status_code == 200
        assert issuer.jwks_requests == 1  # cached

        # A kid the JWKS does not have: fetched again once; at once again: not fetched (rate limit).
        await anyio.sleep(MIN_REFETCH + 0.1)
        ghost = issuer.token(rsa_key("ghost"))
        assert_refused(await post_mcp(url, ghost), ghost)
        assert issuer.jwks_requests == 2
        for _ in range(5):
            assert_refused(await post_mcp(url, ghost), ghost)
        assert issuer.jwks_requests == 2

        # Rotation: the issuer publishes a new key and retires the old one.
        rotated = rsa_key("rsa-2")
        issuer.published = [rotated, issuer.ec]
        await anyio.sleep(MIN_REFETCH + 0.1)
        async with token_client(url, issuer.token(rotated), "2026-07-28") as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"getItem", "plain"}
        assert issuer.jwks_requests == 3
        # Many concurrent tokens with a new kid share one fetch.
        await anyio.sleep(MIN_REFETCH + 0.1)
        newest = rsa_key("rsa-3")
        issuer.published = [newest, rotated]
        results: list[int] = []

        async def call() -> None:
            results.append((await post_mcp(url, issuer.token(newest))).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
        assert results == [200] * 10 and issuer.jwks_requests == 4
        # The retired key is no longer trusted once the JWKS has been fetched without it.
        old = issuer.token()
        assert_refused(await post_mcp(url, old), old)

        # An issuer outage: the keys already held stay in use.
        issuer.jwks_down = True
        await anyio.sleep(MIN_REFETCH + 0.1)
        unknown = issuer.token(rsa_key("rsa-4"))
        assert_refused(await post_mcp(url, unknown), unknown)
        assert issuer.jwks_requests == 5
        assert (await post_mcp(url, issuer.token(newest))).status_code == 200


async def test_protected_resource_metadata(tmp_path: Path, upstream: str, issuer: Issuer) -> None:
    with oauth_gateway(tmp_path, upstream, issuer) as (url, _):
        base = url.removesuffix("/mcp")
        expected = {
            "resource": RESOURCE,
            "authorization_servers": [issuer.url, issuer.tenant],
            "scopes_supported": [SCOPE],
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-gateway",
        }
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            response = httpx2.get(base + path)
            assert response.status_code == 200 and response.json() == expected


async def test_api_keys_still_work_next_to_jwts(tmp_path: Path, upstream: str, issuer: Issuer) -> None:
    with oauth_gateway(tmp_path, upstream, issuer) as (url, _):
        admin, headers = url.replace("/mcp", "/admin"), {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        httpx2.post(f"{admin}/consumers", json={"name": "robot-1", "team": "payments"}, headers=headers)
        key = httpx2.post(f"{admin}/keys", json={"consumer": "robot-1"}, headers=headers).json()["key"]
        async with token_client(url, key, "2026-07-28") as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"getItem", "plain"}


async def test_no_metadata_without_issuers(tmp_path: Path, upstream: str) -> None:
    config = GatewayConfig(
        data_dir=tmp_path,
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
        auth=AuthConfig(enabled=True),
    )
    with running_gateway(config) as (url, _):
        assert httpx2.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).status_code == 404
        missing = await post_mcp(url, None)
        assert missing.status_code == 401 and "resource_metadata" not in missing.headers["www-authenticate"]


def test_config_refuses_unsafe_settings() -> None:
    for alg in ("none", "HS256"):
        with pytest.raises(ValidationError, match="not supported"):
            IssuerConfig(issuer="https://idp.example", algorithms=[alg])
    with pytest.raises(ValidationError, match="https"):
        IssuerConfig(issuer="http://idp.example")
    with pytest.raises(ValidationError, match=r"auth\.resource"):
        AuthConfig(enabled=True, issuers=[IssuerConfig(issuer="https://idp.example")])


async def test_verified_tokens_are_remembered_only_until_they_expire(issuer: Issuer) -> None:
    """A token's signature is checked once; the remembered principal lapses with the token."""
    auth = AuthConfig(
        enabled=True,
        resource=RESOURCE,
        issuers=[IssuerConfig(issuer=issuer.url, jwks_uri=issuer.url + "/jwks", leeway_seconds=0)],
    )
    verifier = JwtVerifier(auth)
    try:
        token = issuer.token(exp=int(time.time()) + 2)
        first = await verifier.authenticate(token)
        assert await verifier.authenticate(token) is first  # the same object: from memory
        other = issuer.token(sub="robot-2")
        assert (await verifier.authenticate(other)).consumer == "robot-2"
        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(AuthFailure, match="signature"):
            await verifier.authenticate(tampered)
        await anyio.sleep(2.2)
        with pytest.raises(AuthFailure, match="expired"):
            await verifier.authenticate(token)
    finally:
        await verifier.aclose()


async def test_a_disabled_consumer_is_refused_with_a_valid_token(tmp_path: Path, upstream: str, issuer: Issuer) -> None:
    with oauth_gateway(tmp_path, upstream, issuer) as (url, gateway):
        token = issuer.token(sub="robot-9")
        assert (await post_mcp(url, token)).status_code == 200
        gateway.identities.add_consumer("robot-9", None, None)
        gateway.identities.set_disabled("robot-9", True)
        await gateway.access.reload()
        refused = await post_mcp(url, token)
        assert refused.status_code == 401 and "disabled" in refused.text
