"""Upstream credentials end to end: vault secrets bound to security schemes, OAuth client
credentials and per-user OAuth against a real authlib authorization server, and the leak
matrix: no secret, in any form, in anything the gateway emits.

Everything runs over loopback: the authorization server (tests/oauth_server.py), an upstream
that checks each credential, the echo upstream (which reflects every header it receives),
and the gateway, called with the official MCP client.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import URL_ELICITATION_REQUIRED
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.auth import keys
from mcp_gateway.config import (
    ApiConfig,
    AuthConfig,
    GatewayConfig,
    ServerConfig,
    public_api_config,
    registration_secret_problems,
)
from mcp_gateway.gateway import Gateway
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import IdentityStore, Selector
from mcp_gateway.vault import Vault, VaultError
from tests.conftest import ADMIN_TOKEN, DATA, ECHO_SPEC, running_gateway
from tests.leaks import LogCapture, assert_not_leaked, leaked
from tests.oauth_server import OAuthServer
from tests.results import text_of
from tests.servers import serve_in_thread

SECURE_SPEC = DATA / "secure.yaml"
SECRETS = {
    "header-key": "hk-5f1c9e2a7b3d4e6f",
    "query-key": "qk/9a8b+7c6d=5e4f&x",  # needs URL-encoding in a query string
    "basic-pass": 'pa:ss w0rd-\u00e9"quoted"',
    "github-token": "ghp_R3alLyS3cretT0kenValue0123456789",
    "machine-secret": "cc-client-secret-0a1b2c3d4e",
    "user-client-secret": "uc-client-secret-9z8y7x6w",
}
COOKIE_KEY = "ck-cookie-value-77aa88bb"
COOKIE_ENV = "MGW_TEST_COOKIE_KEY"


@dataclass
class Upstream:
    """The credential-checking upstream, and what it received."""

    oauth: OAuthServer
    seen: list[dict[str, Any]] = field(default_factory=list)
    elsewhere_hits: list[str] = field(default_factory=list)  # Authorization headers another origin got


def secure_app(state: Upstream, elsewhere: list[str]) -> Starlette:
    def basic_ok(header: str) -> bool:
        expected = base64.b64encode(f"svc:{SECRETS['basic-pass']}".encode()).decode()
        return header == f"Basic {expected}"

    async def handle(request: Request) -> Response:
        path = request.url.path
        headers = request.headers
        state.seen.append({"path": path, "headers": dict(headers), "query": str(request.query_params)})
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        checks = {
            "/header": lambda: headers.get("x-api-key") == SECRETS["header-key"],
            "/query": lambda: request.query_params.get("api_key") == SECRETS["query-key"],
            "/cookie": lambda: request.cookies.get("session") == COOKIE_KEY,
            "/basic": lambda: basic_ok(headers.get("authorization", "")),
            "/bearer": lambda: bearer == SECRETS["github-token"],
            "/either": lambda: (
                headers.get("x-api-key") == SECRETS["header-key"] and basic_ok(headers.get("authorization", ""))
            ),
            "/public": lambda: "authorization" not in headers and "x-api-key" not in headers,
            "/echo": lambda: headers.get("x-api-key") == SECRETS["header-key"],
            "/fail": lambda: True,
            "/away": lambda: True,
        }
        if path in ("/machine", "/user"):
            info = state.oauth.check(bearer)
            if info is None:
                return JSONResponse({"error": "invalid_token"}, 401)
            return JSONResponse({"ok": True, "sub": info["sub"], "client_id": info["client_id"]})
        if not checks.get(path, lambda: False)():
            return JSONResponse({"error": "unauthorized", "path": path}, 401)
        if path == "/echo":
            return JSONResponse({"headers": dict(headers), "query": str(request.url.query)})
        if path == "/fail":
            # A broken upstream that dumps the request into its error page.
            return Response(f"internal error; request headers were: {dict(headers)}", 500)
        if path == "/away":
            return Response(status_code=302, headers={"location": elsewhere[0] + "/collect"})
        return JSONResponse({"ok": True, "path": path})

    return Starlette(routes=[Route("/{path:path}", handle)])


@dataclass
class Env:
    url: str  # the gateway's /mcp
    base: str  # the gateway's root URL
    gateway: Gateway
    oauth: OAuthServer
    upstream: Upstream
    alice: str
    bob: str
    data_dir: Path
    urls: dict[str, str] = field(default_factory=dict)  # "secure" upstream, "as" (authorization server)
    emitted: list[str] = field(default_factory=list)  # everything the gateway said, for the leak scan

    def client(self, key: str) -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        return Client(streamable_http_client(self.url, http_client=http), mode="legacy")

    async def call(self, key: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        async with self.client(key) as client:
            result = await client.call_tool(tool, arguments or {})
        self.emitted.append(result.model_dump_json())
        return result

    def all_secrets(self) -> list[str]:
        """Configured secrets plus every token the authorization server issued."""
        issued = [*self.oauth._by_access, *self.oauth._by_refresh]
        assert issued, "the scan must include the tokens the authorization server issued"
        # The consumers' own gateway keys too: inbound credentials never go upstream or out again.
        return [*SECRETS.values(), COOKIE_KEY, f"svc:{SECRETS['basic-pass']}", *issued, self.alice, self.bob]


def set_up_identities(data_dir: Path) -> tuple[str, str]:
    db = Database(data_dir / "gateway.db")
    try:
        vault = Vault.open(db, data_dir)
        for name, value in SECRETS.items():
            vault.set(name, value)
        store = IdentityStore(db)
        for consumer in ("alice", "bob"):
            store.add_consumer(consumer, None, None)
        store.add_policy("everyone", "*", "allow", Selector(), None)
        return keys.issue(store, "alice")[1], keys.issue(store, "bob")[1]
    finally:
        db.close()


@pytest.fixture
def env(
    tmp_path: Path, upstream: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Env]:
    monkeypatch.setenv(COOKIE_ENV, COOKIE_KEY)
    oauth = OAuthServer(access_token_lifetime=3600)
    state = Upstream(oauth)

    async def collect(request: Request) -> Response:
        state.elsewhere_hits.append(request.headers.get("authorization", ""))
        return JSONResponse({"got": "it"})

    elsewhere_app = Starlette(routes=[Route("/collect", collect)])
    elsewhere: list[str] = []
    with (
        serve_in_thread(oauth.app) as as_url,
        serve_in_thread(elsewhere_app) as elsewhere_url,
        serve_in_thread(secure_app(state, elsewhere)) as secure_url,
    ):
        elsewhere.append(elsewhere_url)
        oauth.issuer = as_url
        oauth.add_client("gw-machine", SECRETS["machine-secret"], grant_types=("client_credentials",), scope="read")
        data_dir = tmp_path / "data"
        alice, bob = set_up_identities(data_dir)
        credentials = {
            "headerKey": {"type": "api_key", "value": "secret:header-key"},
            "queryKey": {"type": "api_key", "value": "secret:query-key"},
            "cookieKey": {"type": "api_key", "value": f"env:{COOKIE_ENV}"},
            "basicAuth": {"type": "basic", "username": "svc", "password": "secret:basic-pass"},
            "bearerAuth": {"type": "bearer", "token": "secret:github-token"},
            "machine": {
                "type": "oauth2_client_credentials",
                "client_id": "gw-machine",
                "client_secret": "secret:machine-secret",
                "token_url": f"{as_url}/token",
            },
            "user": {
                "type": "oauth2_user",
                "client_id": "gw-user",
                "client_secret": "secret:user-client-secret",
                "authorization_url": f"{as_url}/authorize",
                "token_url": f"{as_url}/token",
                "revocation_url": f"{as_url}/revoke",
                "scopes": ["repo"],
            },
        }
        config = GatewayConfig(
            data_dir=data_dir,
            admin_token=ADMIN_TOKEN,
            log_level="debug",
            auth=AuthConfig(enabled=True),
            server=ServerConfig(**getattr(request, "param", {})),
            apis=[
                # A GitHub-style API: no securitySchemes in its spec, one token for every operation.
                ApiConfig(
                    name="github",
                    spec=str(ECHO_SPEC),
                    base_url=upstream,
                    credentials={"*": {"type": "bearer", "token": "secret:github-token"}},
                ),
                ApiConfig(name="secure", spec=str(SECURE_SPEC), base_url=secure_url, credentials=credentials),
            ],
        )
        with running_gateway(config) as (url, gateway):
            base = url.removesuffix("/mcp")
            gateway.connections.public_url = base
            oauth.add_client(
                "gw-user",
                SECRETS["user-client-secret"],
                grant_types=("authorization_code",),
                redirect_uris=(f"{base}/oauth/callback",),
                scope="repo",
            )
            yield Env(url, base, gateway, oauth, state, alice, bob, data_dir, {"secure": secure_url, "as": as_url})


def connect(env: Env, link: str, provider_user: str) -> str:
    """Follow a connect link as a browser whose user is signed in at the provider; returns the final page."""
    with httpx2.Client(cookies={"as_user": provider_user}, timeout=30) as browser:
        page = browser.get(link)
        assert page.status_code == 200, page.text
        ticket = html.unescape(re.search(r"name='ticket' value='([^']+)'", page.text).group(1))  # type: ignore[union-attr]
        api = link.split("/oauth/connect/")[1].split("?")[0]
        step = browser.post(f"{env.base}/oauth/connect/{api}", data={"ticket": ticket})
        for _ in range(5):  # gateway -> provider -> gateway callback
            if step.status_code not in (302, 303):
                break
            step = browser.get(step.headers["location"])
        assert step.status_code == 200, step.text
        assert "Connected" in step.text
        # The ticket is single-use.
        again = browser.post(f"{env.base}/oauth/connect/{api}", data={"ticket": ticket})
        assert again.status_code == 400
        return step.text


def connect_link(result: Any) -> str:
    assert result.is_error
    match = re.search(r"(http://\S+/oauth/connect/\S+)", text_of(result))
    assert match, text_of(result)
    return match.group(1)


# -- the "done when" scenario -------------------------------------------------------------


@pytest.mark.anyio
async def test_vault_credentials_reach_the_right_upstreams_and_users_connect_their_own(env: Env) -> None:
    # The GitHub-style API: the token from the vault, and the echo of it scrubbed from the result.
    async with env.client(env.alice) as client:
        listed = (await client.list_tools()).tools
        env.emitted.append(json.dumps([t.model_dump(mode="json") for t in listed]))
        result = await client.call_tool("getItem", {"id": "42"})
    env.emitted.append(result.model_dump_json())
    assert not result.is_error, text_of(result)
    echoed = result.structured_content["headers"]
    assert echoed["authorization"] == "Bearer [REDACTED]"  # it arrived, and was scrubbed on the way back

    # The client-credentials API: a token from the authorization server, fetched once.
    for _ in range(3):
        result = await env.call(env.alice, "viaMachine")
        assert not result.is_error, text_of(result)
        assert result.structured_content["client_id"] == "gw-machine"
    grants = [r["grant_type"] for r in env.oauth.token_requests]
    assert grants.count("client_credentials") == 1

    # Per-user: alice is not connected, gets a link, connects as alice-gh; bob as bob-gh.
    before = len(env.upstream.seen)
    result = await env.call(env.alice, "viaUser")
    assert len(env.upstream.seen) == before, "no upstream call without the user's token"
    connect(env, connect_link(result), "alice-gh")
    result = await env.call(env.alice, "viaUser")
    assert not result.is_error, text_of(result)
    assert result.structured_content["sub"] == "alice-gh"

    result = await env.call(env.bob, "viaUser")
    connect(env, connect_link(result), "bob-gh")
    for key, who in ((env.bob, "bob-gh"), (env.alice, "alice-gh"), (env.bob, "bob-gh")):
        result = await env.call(key, "viaUser")
        assert result.structured_content["sub"] == who

    # Operators see who connected what (never the tokens), from the admin API and the CLI.
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        listed = (await http.get(f"{env.base}/admin/connections")).json()["connections"]
        env.emitted.append(json.dumps(listed))
    assert sorted((c["consumer"], c["api"]) for c in listed) == [("alice", "secure"), ("bob", "secure")]
    printed = await anyio.to_thread.run_sync(lambda: mgw(env.data_dir, "connections", "list", "--json"))
    env.emitted.append(printed)
    assert [c["consumer"] for c in json.loads(printed)] == ["alice", "bob"]
    # An operator disconnects bob: revoked at the provider, and bob is asked to connect again.
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        assert (await http.delete(f"{env.base}/admin/connections/bob/secure")).status_code == 204
    assert connect_link(await env.call(env.bob, "viaUser"))
    assert (await env.call(env.alice, "viaUser")).structured_content["sub"] == "alice-gh"

    await leak_scan(env)


# -- each credential kind ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["viaHeader", "viaQuery", "viaCookie", "viaBasic", "viaBearer", "viaEither", "public"])
async def test_each_static_credential_kind(env: Env, tool: str) -> None:
    result = await env.call(env.alice, tool)
    assert not result.is_error, text_of(result)
    assert result.structured_content["ok"] is True


@pytest.mark.anyio
async def test_api_key_parameters_are_not_tool_arguments(env: Env) -> None:
    tool = env.gateway.catalog.snapshot.tools["viaHeader"]
    assert set(tool.input_schema["properties"]) == {"q"}
    # An agent trying to supply its own key is refused by validation (no upstream call).
    before = len(env.upstream.seen)
    result = await env.call(env.alice, "viaHeader", {"X-API-Key": "agent-chosen"})
    assert result.is_error and len(env.upstream.seen) == before


@pytest.mark.anyio
async def test_unmet_security_fails_clearly_without_calling(env: Env) -> None:
    before = len(env.upstream.seen)
    result = await env.call(env.alice, "unmet")
    assert result.is_error
    assert "unbound" in text_of(result) and "credentials" in text_of(result)
    assert len(env.upstream.seen) == before
    failures = [str(i) for i in env.gateway.catalog.snapshot.apis["secure"].ingest.issues]
    assert any("unbound" in f and "need credentials" in f for f in failures)


@pytest.mark.anyio
async def test_client_credentials_single_flight_expiry_and_401_retry(env: Env) -> None:
    async def one() -> None:
        result = await env.call(env.alice, "viaMachine")
        assert not result.is_error, text_of(result)

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
    count = lambda: [r["grant_type"] for r in env.oauth.token_requests].count("client_credentials")  # noqa: E731
    assert count() == 1, "concurrent calls share one token request"
    # Revoked/expired early at the server: the upstream says 401, the gateway fetches a new token once.
    env.oauth.expire_access_tokens()
    await one()
    assert count() == 2
    # A token near its expiry is refreshed before use.
    env.oauth.access_token_lifetime = 1
    env.oauth.expire_access_tokens()
    await one()
    await anyio.sleep(1.1)
    await one()
    assert count() == 4
    # The token endpoint down: a clear tool error, then recovery.
    env.oauth.expire_access_tokens()
    env.oauth.fail_token_requests = 2
    result = await env.call(env.alice, "viaMachine")
    assert result.is_error and "token" in text_of(result)
    env.oauth.fail_token_requests = 0
    await one()


@pytest.mark.anyio
async def test_per_user_refresh_revocation_and_disconnect(env: Env) -> None:
    connect(env, connect_link(await env.call(env.alice, "viaUser")), "alice-gh")
    # The access token dies at the provider: one refresh with alice's refresh token, then success.
    env.oauth.expire_access_tokens()
    result = await env.call(env.alice, "viaUser")
    assert not result.is_error, text_of(result)
    assert [r["grant_type"] for r in env.oauth.token_requests].count("refresh_token") == 1
    # The refresh token is revoked too: alice is asked to connect again.
    env.oauth.expire_access_tokens()
    env.oauth.revoke_refresh_tokens("alice-gh")
    result = await env.call(env.alice, "viaUser")
    assert "/oauth/connect/secure" in connect_link(result)
    connect(env, connect_link(result), "alice-gh")
    assert not (await env.call(env.alice, "viaUser")).is_error
    # Disconnect with her own key: tokens gone (and revoked at the provider).
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {env.alice}"}) as http:
        listed = (await http.get(f"{env.base}/oauth/connections")).json()
        assert [c["api"] for c in listed] == ["secure"]
        assert (await http.delete(f"{env.base}/oauth/connections/secure")).status_code == 204
        assert (await http.get(f"{env.base}/oauth/connections")).json() == []
    assert (await env.call(env.alice, "viaUser")).is_error
    await leak_scan(env)


@pytest.mark.anyio
async def test_connect_links_are_checked(env: Env) -> None:
    async with httpx2.AsyncClient() as http:
        bad = await http.get(f"{env.base}/oauth/connect/secure?ticket=forged")
        assert bad.status_code == 400 and "invalid or has expired" in bad.text
        assert bad.headers["referrer-policy"] == "no-referrer"
        forged = await http.get(f"{env.base}/oauth/callback?state=forged&code=x")
        assert forged.status_code == 400
        # A link for one API cannot start another API's flow.
        link = connect_link(await env.call(env.alice, "viaUser"))
        ticket = link.split("ticket=")[1]
        other = await http.get(f"{env.base}/oauth/connect/github?ticket={ticket}")
        assert other.status_code == 400


@pytest.mark.anyio
async def test_a_token_endpoint_quoting_the_request_leaks_nothing(env: Env) -> None:
    """The authorization server refuses every token request, quoting it (headers, body, form) in
    error_description: the tool errors and the connect page carry its words, never a secret."""
    connect(env, connect_link(await env.call(env.alice, "viaUser")), "alice-gh")
    (refresh_token,) = env.oauth._by_refresh
    env.oauth.echo_errors = True
    env.oauth.expire_access_tokens()
    shown = []
    for tool in ("viaMachine", "viaUser"):  # client credentials; alice's refresh
        result = await env.call(env.alice, tool)
        assert result.is_error and "invalid_request" in text_of(result) and "headers=" in text_of(result)
        shown.append(text_of(result))
    # Bob connects: the code is exchanged at the callback, and the page says why it failed.
    link = connect_link(await env.call(env.bob, "viaUser"))
    with httpx2.Client(cookies={"as_user": "bob-gh"}, timeout=30) as browser:
        page = browser.get(link)
        ticket = html.unescape(re.search(r"name='ticket' value='([^']+)'", page.text).group(1))  # type: ignore[union-attr]
        step = browser.post(f"{env.base}/oauth/connect/secure", data={"ticket": ticket})
        while step.status_code in (302, 303):
            step = browser.get(step.headers["location"])
    assert step.status_code == 400 and "did not issue a token" in step.text
    shown.append(html.unescape(step.text))
    assert [r["grant_type"] for r in env.oauth.echoed] == ["client_credentials", "refresh_token", "authorization_code"]
    per_call = ("refresh_token", "code", "code_verifier")
    quoted = [v for form in env.oauth.echoed for k, v in form.items() if k in per_call]
    assert len(quoted) == 3
    for secret in (SECRETS["machine-secret"], SECRETS["user-client-secret"], refresh_token, *quoted):
        for text in shown:
            assert not leaked(secret, text), text
    await leak_scan(env)


@pytest.mark.anyio
async def test_redirect_to_another_origin_never_carries_credentials(env: Env) -> None:
    result = await env.call(env.alice, "away")
    assert result.is_error and "not followed" in text_of(result)
    assert env.upstream.seen[-1]["headers"]["authorization"].startswith("Bearer ")  # it was sent here...
    assert env.upstream.elsewhere_hits == []  # ...and nothing, with or without it, went on to the other origin


@pytest.mark.anyio
async def test_a_corrupt_secret_breaks_only_its_credential(env: Env) -> None:
    db = sqlite3.connect(env.data_dir / "gateway.db")
    blob = db.execute("SELECT value FROM secrets WHERE name = 'header-key'").fetchone()[0]
    db.execute("UPDATE secrets SET value = ? WHERE name = 'header-key'", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    db.commit()
    db.close()
    await env.gateway.refresh_credentials()  # what the store poll does within two seconds
    await env.gateway.pool.credentials_changed()
    result = await env.call(env.alice, "viaHeader")
    assert result.is_error and "header-key" in text_of(result)
    assert not (await env.call(env.alice, "viaBasic")).is_error
    assert not (await env.call(env.alice, "viaMachine")).is_error


# -- the leak matrix --------------------------------------------------------------------------


async def leak_scan(env: Env) -> None:
    """Everything the gateway emits: tool lists, results and errors (collected), HTTP error bodies,
    admin API answers, logs at debug level with their tracebacks."""
    emitted = list(env.emitted)
    async with httpx2.AsyncClient(timeout=30) as http:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        paths = ("/admin/apis", "/admin/apis/secure", "/admin/apis/github", "/admin/secrets", "/admin/connections")
        for path in (*paths, "/readyz"):
            emitted.append((await http.get(env.base + path, headers=admin)).text)
        emitted.append((await http.post(env.url, headers={"Authorization": "Bearer nope"}, json={})).text)
        emitted.append((await http.get(env.base + "/oauth/connections")).text)
    # The upstream error page and the echo: both reflect the credentials they were sent.
    for tool in ("fail", "echoAll"):
        emitted.append((await env.call(env.alice, tool)).model_dump_json())
    assert "[REDACTED]" in emitted[-1] and "[REDACTED]" in emitted[-2]
    emitted.append(LOGS.text())
    haystack = "\n".join(emitted)
    assert_not_leaked(haystack, env.all_secrets())


LOGS = LogCapture()


@pytest.fixture(autouse=True)
def debug_logs() -> Iterator[None]:
    """Every logger at DEBUG (httpx2, httpcore2, authlib, uvicorn, ours) into LOGS."""
    root = logging.getLogger()
    old = root.level
    LOGS.lines.clear()
    root.addHandler(LOGS)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(LOGS)
        root.setLevel(old)


# -- configuration rules ------------------------------------------------------------------------


def test_registrations_take_vault_references_only(tmp_path: Path) -> None:
    def api(**credential: str) -> ApiConfig:
        return ApiConfig.model_validate(
            {"name": "x", "spec": str(SECURE_SPEC), "credentials": {"bearerAuth": {"type": "bearer", **credential}}}
        )

    assert registration_secret_problems(api(token="secret:github-token")) == []
    assert "vault reference" in registration_secret_problems(api(token="env:HOME"))[0]
    assert "vault reference" in registration_secret_problems(api(token="ghp_plain"))[0]
    # Shown for admins and the CLI: references as they are, plain text masked.
    assert public_api_config(api(token="ghp_plain"))["credentials"]["bearerAuth"]["token"] != "ghp_plain"
    assert public_api_config(api(token="secret:gh"))["credentials"]["bearerAuth"]["token"] == "secret:gh"


@pytest.mark.anyio
async def test_admin_registration_with_plain_secret_is_refused(tmp_path: Path, upstream: str) -> None:
    config = GatewayConfig(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN)
    with running_gateway(config) as (url, _gateway):
        base = url.removesuffix("/mcp")
        body = {
            "spec": str(ECHO_SPEC),
            "base_url": upstream,
            "credentials": {"*": {"type": "bearer", "token": "ghp_Plain0123456789"}},
        }
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            refused = await http.put(f"{base}/admin/apis/gh", json=body)
            assert refused.status_code == 422 and "vault reference" in refused.text
            assert "ghp_Plain0123456789" not in refused.text
            body["credentials"]["*"]["token"] = "secret:github-token"
            assert (await http.put(f"{base}/admin/apis/gh", json=body)).status_code in (200, 201)


def test_plain_secret_in_config_file_is_warned_without_its_value(
    tmp_path: Path, upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    plain = "ghp_PlainInConfig0123456789"
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        apis=[
            ApiConfig(
                name="github",
                spec=str(ECHO_SPEC),
                base_url=upstream,
                credentials={"*": {"type": "bearer", "token": plain}},
            )
        ],
    )
    Gateway(config).db.close()
    assert "apis[github].credentials[*].token is a plain-text secret" in caplog.text
    assert plain not in caplog.text


def test_env_references_cannot_read_the_master_key(tmp_path: Path) -> None:
    db = Database(tmp_path / "gateway.db")
    vault = Vault.open(db, tmp_path, {"MCP_GATEWAY_MASTER_KEY": "x", "OTHER": "fine"})
    assert vault.resolve("env:OTHER") == "fine"
    with pytest.raises(VaultError, match="master key"):
        vault.resolve("env:MCP_GATEWAY_MASTER_KEY")
    db.close()


def mgw(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args, "--data-dir", str(data_dir)],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.anyio
async def test_secret_changes_and_key_rotation_reach_a_running_gateway(env: Env) -> None:
    assert not (await env.call(env.alice, "viaBearer")).is_error
    before = sqlite3.connect(env.data_dir / "gateway.db").execute("SELECT value FROM secrets").fetchall()
    # Another process rotates the master key: every entry re-sealed; the gateway reads the new key file.
    await anyio.to_thread.run_sync(lambda: mgw(env.data_dir, "secrets", "rotate-master"))
    after = sqlite3.connect(env.data_dir / "gateway.db").execute("SELECT value FROM secrets").fetchall()
    assert set(before).isdisjoint(after)
    await anyio.sleep(2.5)  # one store poll
    for tool in ("viaBearer", "viaHeader", "viaMachine"):
        result = await env.call(env.alice, tool)
        assert not result.is_error, text_of(result)
    # Another process replaces the token: the gateway's next calls use the new one (the upstream
    # knows only the old one, so it now refuses).
    await anyio.to_thread.run_sync(lambda: mgw(env.data_dir, "secrets", "set", "github-token", stdin="ghp_new\n"))
    with anyio.fail_after(10):
        while not (await env.call(env.alice, "viaBearer")).is_error:
            await anyio.sleep(0.3)
    assert env.upstream.seen[-1]["headers"]["authorization"] == "Bearer ghp_new"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("env", "mode"), [({}, "2026-07-28"), ({"stateless": False}, "legacy")], indirect=["env"], ids=["2026", "stateful"]
)
async def test_clients_taking_url_elicitation_are_asked_to_open_the_link(env: Env, mode: str) -> None:
    # 2026-07-28 requests carry the client's capabilities, and a 2025-11-25 session declared them
    # at initialize; a stateless 2025-11-25 request has none, so such clients get the tool error.
    async def never_called(context: Any, params: Any) -> Any:
        raise AssertionError("the gateway asks through the error, not a request")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {env.alice}"}, timeout=30)
    client = Client(streamable_http_client(env.url, http_client=http), mode=mode, elicitation_callback=never_called)
    async with client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("viaUser", {})
    assert raised.value.error.code == URL_ELICITATION_REQUIRED
    (elicitation,) = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
    assert "/oauth/connect/secure?ticket=" in elicitation.url
    assert elicitation.elicitation_id == "connect-secure"
    connect(env, elicitation.url, "alice-gh")
    assert not (await env.call(env.alice, "viaUser")).is_error


@pytest.mark.anyio
async def test_stdio_uses_the_local_consumers_own_connection(env: Env) -> None:
    """stdio runs as auth.stdio_consumer; the connect flow is served by the HTTP gateway that
    shares its database, and the stdio gateway then uses that consumer's token."""
    user = {
        "type": "oauth2_user",
        "client_id": "gw-user",
        "client_secret": "secret:user-client-secret",
        "authorization_url": f"{env.urls['as']}/authorize",
        "token_url": f"{env.urls['as']}/token",
    }
    config = env.data_dir.parent / "stdio.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(env.data_dir),
                "base_url": env.base,
                "auth": {"enabled": True, "stdio_consumer": "alice"},
                "apis": [
                    {
                        "name": "secure",
                        "spec": str(SECURE_SPEC),
                        "base_url": env.urls["secure"],
                        "credentials": {"user": user},
                    }
                ],
            }
        )
    )
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_gateway.cli", "stdio", "-c", str(config)])
    with anyio.fail_after(60):
        async with Client(params) as client:
            first = await client.call_tool("viaUser", {})
            link = connect_link(first)
            assert link.startswith(env.base + "/oauth/connect/secure?ticket=")
            await anyio.to_thread.run_sync(connect, env, link, "alice-gh")
            second = await client.call_tool("viaUser", {})
            assert not second.is_error, text_of(second)
            assert second.structured_content["sub"] == "alice-gh"
