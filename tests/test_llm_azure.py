"""Azure OpenAI with a Microsoft Entra ID token instead of an api-key.

The token comes from the repo's real OAuth 2.0 server (tests/oauth_server.py, authlib's server
core) mounted where Entra ID serves a tenant's token endpoint, by client credentials with the
client secret in the POST body; the fake Azure OpenAI resource takes only bearer tokens that
server issued, for the Cognitive Services scope.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_gateway.config.models import COGNITIVE_SERVICES_SCOPE, DeploymentConfig
from tests.fake_llm import FakeProvider, Misbehave
from tests.oauth_server import OAuthServer
from tests.servers import serve_in_thread
from tests.test_llm import Running, usage_lines
from tests.test_llm import _start as start_gateway
from tests.test_llm_translate import _anthropic, _openai

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "gateway-app"
CLIENT_SECRET = "entra-client-secret-Qx9~8Zz.secret"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def entra() -> Iterator[OAuthServer]:
    server = OAuthServer(access_token_lifetime=3600)
    server.add_client(
        CLIENT_ID,
        CLIENT_SECRET,
        grant_types=("client_credentials",),
        scope=COGNITIVE_SERVICES_SCOPE,
        token_endpoint_auth_method="client_secret_post",
    )
    # Entra ID's token endpoint for a tenant: <authority>/<tenant>/oauth2/v2.0/token.
    app = Starlette(routes=[Mount(f"/{TENANT}/oauth2/v2.0", app=server.app)])
    with serve_in_thread(app) as url:
        server.issuer = url
        yield server


@pytest.fixture(scope="module")
def azure(entra: OAuthServer) -> Iterator[FakeProvider]:
    fake = FakeProvider("unused-api-key-never-sent-1234")

    def issued_for_cognitive_services(token: str) -> bool:
        claims = entra.check(token)
        return claims is not None and claims["client_id"] == CLIENT_ID and claims["scope"] == COGNITIVE_SERVICES_SCOPE

    fake.token_check = issued_for_cognitive_services
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
def running(tmp_path: Path, entra: OAuthServer, azure: FakeProvider) -> Iterator[Running]:
    deployment = {
        "provider": "azure",
        "model": "gpt-4o-prod",
        "base_url": azure.url,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": "secret:entra-secret",
        "authority_url": entra.issuer,
    }
    models = [{"name": "gpt-azure", "retries": 0, "deployments": [deployment]}]
    for running in start_gateway(tmp_path, models):
        running.gateway.vault.put("entra-secret", CLIENT_SECRET)
        yield running


def _grants(entra: OAuthServer) -> list[dict[str, str]]:
    return [r for r in entra.token_requests if r.get("grant_type") == "client_credentials"]


def test_an_entra_token_replaces_the_api_key(running: Running, entra: OAuthServer, azure: FakeProvider) -> None:
    before = len(_grants(entra))
    reply = _openai(running).chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "echo: hi"
    seen = azure.seen[-1]
    assert seen.path == "/openai/deployments/gpt-4o-prod/chat/completions" and "api-key" not in seen.headers
    token = seen.headers["authorization"].removeprefix("Bearer ")
    assert entra.check(token) is not None
    (grant,) = _grants(entra)[before:]
    # Client credentials, the secret in the body (shown masked in the server's log), for Cognitive Services.
    assert grant == {
        "grant_type": "client_credentials",
        "scope": COGNITIVE_SERVICES_SCOPE,
        "client_id": CLIENT_ID,
        "client_secret": "***",
    }
    # Translated calls use it too (an Anthropic client served by the Azure deployment).
    message = _anthropic(running).messages.create(model="gpt-azure", max_tokens=20, messages=HI)  # type: ignore[arg-type]
    assert message.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert azure.seen[-1].headers["authorization"] == f"Bearer {token}"


def test_one_token_for_many_calls(running: Running, entra: OAuthServer, azure: FakeProvider) -> None:
    before = len(_grants(entra))

    def ask(number: int) -> str | None:
        reply = _openai(running).chat.completions.create(
            model="gpt-azure", messages=[{"role": "user", "content": f"call {number}"}]
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(10) as pool:
        assert list(pool.map(ask, range(10))) == [f"echo: call {n}" for n in range(10)]
    assert len(_grants(entra)) - before == 1  # single flight: one token request for ten calls


@pytest.mark.parametrize("stream", [False, True])
def test_a_revoked_token_is_replaced_and_the_call_retried_once(
    running: Running, entra: OAuthServer, azure: FakeProvider, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _openai(running)
    client.chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
    first = azure.seen[-1].headers["authorization"]
    grants, seen = len(_grants(entra)), len(azure.seen)
    entra.expire_access_tokens()  # revoked early, say: still fresh by the gateway's clock
    if stream:
        chunks = list(client.chat.completions.create(model="gpt-azure", messages=HI, stream=True))  # type: ignore[arg-type]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="gpt-azure", messages=HI).choices[0].message.content or ""  # type: ignore[arg-type]
    assert text.strip() == "echo: hi"
    # The refused token was dropped: one new token, and the same deployment asked again with it.
    assert len(_grants(entra)) - grants == 1
    tried = [s.headers["authorization"] for s in azure.seen[seen:]]
    assert len(tried) == 2 and tried[0] == first and tried[1] != first
    refused, served = usage_lines(caplog, 3)[-2:]
    assert "status=401" in refused and "retries=0" in refused
    assert "status=200" in served and "retries=1" in served


def test_a_late_401_for_an_old_token_keeps_the_new_one(
    running: Running, entra: OAuthServer, azure: FakeProvider
) -> None:
    client = _openai(running)
    client.chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
    entra.expire_access_tokens()
    grants, seen = len(_grants(entra)), len(azure.seen)
    azure.script.append(Misbehave(delay=1.0))  # the slow call's 401 comes after the other's retry
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.chat.completions.create, model="gpt-azure", messages=HI)
        deadline = time.monotonic() + 5
        while len(azure.seen) == seen and time.monotonic() < deadline:
            time.sleep(0.01)  # its request, with the old token, is in
        client.chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
        slow.result()
    # The late 401 named the old token: the new one stays, and serves the slow call's retry.
    assert len(_grants(entra)) - grants == 1
    assert len({s.headers["authorization"] for s in azure.seen[seen:]}) == 2 and len(azure.seen) - seen == 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_resource_refusing_every_token_gives_the_client_one_401(
    running: Running, entra: OAuthServer, azure: FakeProvider, stream: bool
) -> None:
    _openai(running).chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
    grants, seen = len(_grants(entra)), len(azure.seen)
    check, azure.token_check = azure.token_check, lambda token: False  # no role on the resource, say
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            _openai(running).chat.completions.create(model="gpt-azure", messages=HI, stream=stream)  # type: ignore[call-overload]
    finally:
        azure.token_check = check
    # Once more with a new token, then the 401 is the client's: no loop.
    assert len(azure.seen) - seen == 2 and len(_grants(entra)) - grants == 1
    second = azure.seen[-1].headers["authorization"].removeprefix("Bearer ")
    # The resource quotes the token it refused: scrubbed before the client sees it.
    assert "Incorrect API key provided: Bearer [REDACTED]" in caught.value.message
    assert second not in caught.value.message


def test_a_refused_token_request_is_a_clear_error_without_the_secret(
    running: Running, entra: OAuthServer, azure: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    running.gateway.vault.put("entra-secret", "the-wrong-client-secret-42")
    anyio.run(running.gateway.refresh_credentials)
    before = len(azure.seen)
    with pytest.raises(openai.APIStatusError) as caught:
        _openai(running).chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 502 and "invalid_client" in caught.value.message
    assert len(azure.seen) == before  # no call without a token
    # A token endpoint that quotes the request (the secret in it) in its error: scrubbed.
    entra.echo_errors = True
    try:
        with pytest.raises(openai.APIStatusError) as echoed:
            _openai(running).chat.completions.create(model="gpt-azure", messages=HI)  # type: ignore[arg-type]
    finally:
        entra.echo_errors = False
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (json.dumps(caught.value.body), json.dumps(echoed.value.body), logged):
        assert "the-wrong-client-secret-42" not in text and CLIENT_SECRET not in text


def test_models_test_probes_an_entra_deployment(running: Running, azure: FakeProvider) -> None:
    from mcp_gateway.llm.probe import probe_deployment

    model = running.gateway.models.find("gpt-azure")
    assert model is not None
    result = anyio.run(probe_deployment, model, model.deployments[0], running.gateway.vault.resolve, "test")
    assert result.ok and result.status == 200, result
    assert azure.seen[-1].headers["authorization"].startswith("Bearer ")


def test_entra_settings_are_checked() -> None:
    base: dict[str, Any] = {"provider": "azure", "model": "d", "base_url": "https://r.openai.azure.com"}
    DeploymentConfig(**base, tenant_id=TENANT, client_id=CLIENT_ID, client_secret="secret:s")
    for bad in (
        {"tenant_id": TENANT, "client_id": CLIENT_ID},  # no secret
        {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": "secret:s", "api_key": "secret:k"},
        {"tenant_id": "../evil", "client_id": CLIENT_ID, "client_secret": "secret:s"},
        {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": "secret:s", "authority_url": "http://evil.com"},
    ):
        with pytest.raises(ValueError):
            DeploymentConfig(**base, **bad)
    with pytest.raises(ValueError):
        DeploymentConfig(provider="openai", tenant_id=TENANT, client_id=CLIENT_ID, client_secret="secret:s")
    assert "client_secret" in DeploymentConfig.SECRET_FIELDS
