"""Who may call what: API keys, consumers and policies over the real gateway (HTTP and stdio)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_gateway.auth.principal import Principal
from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig, ServerConfig
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.policy.access import AccessPolicy
from mcp_gateway.store.identities import Policy, Selector
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]


def cli(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def new_key(data_dir: Path, consumer: str, *extra: str) -> str:
    return cli(data_dir, "keys", "create", consumer, *extra).strip().splitlines()[-1]


def key_client(url: str, key: str, mode: str = "legacy") -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode=mode)


def auth_config(data_dir: Path, upstream: str, **server: object) -> GatewayConfig:
    return GatewayConfig(
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        auth=AuthConfig(enabled=True, key_rotation_grace_seconds=1),
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
        server=ServerConfig(**server),  # type: ignore[arg-type]
    )


@pytest.fixture
def alice(tmp_path: Path) -> str:
    """A consumer allowed exactly two tools of the echo API, set up with the CLI; returns her key."""
    cli(tmp_path, "consumers", "add", "alice", "--team", "payments", "--org", "acme")
    cli(tmp_path, "policies", "add", "--consumer", "alice", "--allow", "--api", "echo", "--tool", "getItem")
    cli(tmp_path, "policies", "add", "--consumer", "alice", "--allow", "--tool", "plain")
    return new_key(tmp_path, "alice")


@pytest.mark.parametrize("mode", ERAS)
async def test_a_key_sees_exactly_its_two_tools(tmp_path: Path, upstream: str, alice: str, mode: str) -> None:
    with running_gateway(auth_config(tmp_path, upstream)) as (url, _):
        async with key_client(url, alice, mode) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"getItem", "plain"}
            result = await client.call_tool("getItem", {"id": "3"})
            assert not result.is_error and result.structured_content["path"] == "/api/items/3"  # type: ignore[index]
            # A tool outside the policy is answered exactly like a tool that does not exist.
            with pytest.raises(MCPError) as hidden:
                await client.session.call_tool("deleteItem", {"id": 1})
            with pytest.raises(MCPError) as missing:
                await client.session.call_tool("noSuchTool", {})
            assert hidden.value.code == missing.value.code
            assert str(hidden.value).replace("deleteItem", "X") == str(missing.value).replace("noSuchTool", "X")
            # The credential never reaches the upstream.
            echo = (await client.call_tool("getItem", {"id": "4"})).structured_content
            assert alice not in str(echo) and "authorization" not in echo["headers"]  # type: ignore[index]


async def test_refusals(tmp_path: Path, upstream: str, alice: str) -> None:
    with running_gateway(auth_config(tmp_path, upstream)) as (url, _):
        admin = url.replace("/mcp", "/admin")
        async with httpx2.AsyncClient(timeout=10) as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            headers = {"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-11-25"}

            async def status(key: str | None) -> httpx2.Response:
                extra = {"Authorization": f"Bearer {key}"} if key is not None else {}
                return await http.post(url, json=body, headers={**headers, **extra})

            missing = await status(None)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"].startswith('Bearer realm="mcp-gateway"')
            for bad in ("nonsense", "mgw_aaaaaaaaaaaa_wrongsecret", alice[:-3] + "xyz"):
                refused = await status(bad)
                assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
            assert (await status(alice)).status_code == 200
            # The scheme in any case, the token between any spaces (a known key, answered from its check).
            for value in (f"bearer {alice}", f"BEARER   {alice}"):
                assert (await http.post(url, json=body, headers={**headers, "Authorization": value})).status_code == 200
            # Anything else is no bearer credential: a bare challenge, without an error code.
            for value in (f"Basic {alice}", "Bearer", alice, f"Bearer\t{alice}", f"Bearer{alice}"):
                refused = await http.post(url, json=body, headers={**headers, "Authorization": value})
                assert refused.status_code == 401 and "error=" not in refused.headers["www-authenticate"], value

            # A consumer key is no admin credential: 403, not 401.
            assert (await http.get(f"{admin}/apis", headers={"Authorization": f"Bearer {alice}"})).status_code == 403

            # Revocation through the admin API takes effect at once.
            key_id = alice[4:16]
            admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert (await http.delete(f"{admin}/keys/{key_id}", headers=admin_headers)).status_code == 204
            assert (await status(alice)).status_code == 401

            # Expiry.
            created = await http.post(
                f"{admin}/keys", json={"consumer": "alice", "expires_in": 1}, headers=admin_headers
            )
            short = created.json()["key"]
            assert (await status(short)).status_code == 200
            await anyio.sleep(1.2)
            assert (await status(short)).status_code == 401

            # Rotation: the old key works during the grace period (1 s here), then stops.
            fresh = (await http.post(f"{admin}/keys", json={"consumer": "alice"}, headers=admin_headers)).json()
            rotated = await http.post(f"{admin}/keys/{fresh['key_id']}/rotate", json={}, headers=admin_headers)
            assert rotated.status_code == 201
            assert (await status(fresh["key"])).status_code == 200
            assert (await status(rotated.json()["key"])).status_code == 200
            await anyio.sleep(1.2)
            assert (await status(fresh["key"])).status_code == 401
            assert (await status(rotated.json()["key"])).status_code == 200
            # Keys are listed without secrets.
            listed = (await http.get(f"{admin}/keys", headers=admin_headers)).text
            assert fresh["key"] not in listed and rotated.json()["key"] not in listed and "secret" not in listed

            # Durations as the CLI takes them; nonsense is a 400 naming the field.
            for written, seconds in (("90d", 90 * 86400), ("12h", 43200), (600, 600)):
                made = await http.post(
                    f"{admin}/keys", json={"consumer": "alice", "expires_in": written}, headers=admin_headers
                )
                assert made.status_code == 201, made.text
                assert abs(made.json()["expires_at"] - made.json()["created_at"] - seconds) < 1
            for bad in ("soon", "-1d", 0, True, [1]):
                refused = await http.post(
                    f"{admin}/keys", json={"consumer": "alice", "expires_in": bad}, headers=admin_headers
                )
                assert refused.status_code == 400 and "expires_in" in refused.text, (bad, refused.text)
            # A policy for a consumer that does not exist is stored, with a warning.
            policy = await http.post(
                f"{admin}/policies",
                json={"subject_kind": "consumer", "subject": "nobody", "effect": "allow", "tools": ["x"]},
                headers=admin_headers,
            )
            assert policy.status_code == 201 and "no consumer named 'nobody'" in policy.json()["warnings"][0]


async def test_cli_revocation_reaches_a_running_gateway(tmp_path: Path, upstream: str, alice: str) -> None:
    with running_gateway(auth_config(tmp_path, upstream)) as (url, _):
        async with key_client(url, alice) as client:
            await client.list_tools()
        cli(tmp_path, "keys", "revoke", alice[4:16])
        deadline = time.monotonic() + 10
        while True:
            response = httpx2.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {alice}", "Accept": "application/json, text/event-stream"},
            )
            if response.status_code == 401:
                break
            assert time.monotonic() < deadline, "revocation by the CLI was not seen"
            await anyio.sleep(0.2)


async def test_discovery_search_respects_policy(tmp_path: Path, upstream: str, alice: str) -> None:
    with running_gateway(auth_config(tmp_path, upstream, discovery="on")) as (url, _):
        async with key_client(url, alice) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"search_tools", "describe_tool", "call_tool"}
            found = await client.call_tool("search_tools", {"query": "delete an item", "limit": 20})
            assert {h["name"] for h in found.structured_content["tools"]} <= {"getItem", "plain"}  # type: ignore[index]
            refused = await client.call_tool("call_tool", {"name": "deleteItem", "arguments": {"id": 1}})
            missing = await client.call_tool("call_tool", {"name": "nope", "arguments": {}})
            assert refused.is_error and missing.is_error
            assert refused.content[0].text.replace("deleteItem", "X") == missing.content[0].text.replace("nope", "X")  # type: ignore[union-attr]


async def test_stdio_runs_as_the_configured_consumer(tmp_path: Path, upstream: str, alice: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nauth: {{enabled: true, stdio_consumer: alice}}\n"
        f"apis: [{{name: echo, spec: {ECHO_SPEC}, base_url: '{upstream}'}}]\n"
    )
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_gateway.cli", "stdio", "-c", str(config)])
    with anyio.fail_after(60):
        async with Client(params) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"getItem", "plain"}


def test_policy_levels() -> None:
    tools = {t.name: t for t in ingest_api(ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url="http://x/")).tools}

    def policy(i: int, kind: str, subject: str, effect: str, **selector: object) -> Policy:
        return Policy(i, kind, subject, effect, Selector(**selector))  # type: ignore[arg-type]

    bob = Principal("bob", team="payments", org="acme")
    carol = Principal("carol", team="other", org="acme")
    rules = AccessPolicy(
        [
            policy(1, "org", "acme", "allow", read_only=True),
            policy(2, "team", "payments", "deny", tools=("drift",)),
            policy(3, "team", "payments", "allow", tools=("d*",)),
            policy(4, "consumer", "bob", "allow", tools=("createItem",)),
            policy(5, "everyone", "*", "allow", tools=("plain",)),
        ]
    )
    allowed = {name for name, tool in tools.items() if rules.allows(bob, tool)}
    # Consumer level speaks for createItem; team level for d*, where deny beats allow for drift.
    assert "createItem" in allowed and "deleteItem" in allowed and "drift" not in allowed
    # The team says nothing about getItem, so the org (read-only tools) decides.
    assert "getItem" in allowed and "putRaw" not in allowed
    carol_allowed = {name for name, tool in tools.items() if rules.allows(carol, tool)}
    assert "getItem" in carol_allowed and "createItem" not in carol_allowed and "deleteItem" not in carol_allowed
    # Nobody's policies: only what everyone may use. No policy at all: nothing (default deny).
    assert {n for n, t in tools.items() if rules.allows(Principal("eve"), t)} == {"plain"}
    assert not any(AccessPolicy([]).allows(bob, t) for t in tools.values())


async def test_a_stateful_session_answers_only_its_owner(tmp_path: Path, upstream: str, alice: str) -> None:
    cli(tmp_path, "consumers", "add", "bob")
    cli(tmp_path, "policies", "add", "--consumer", "bob", "--allow", "--tool", "*")
    bob = new_key(tmp_path, "bob")
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    with running_gateway(auth_config(tmp_path, upstream, stateless=False)) as (url, _):
        async with httpx2.AsyncClient(timeout=10) as http:
            opened = await http.post(url, json=init, headers={**headers, "Authorization": f"Bearer {alice}"})
            session = opened.headers["mcp-session-id"]
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            session_headers = {**headers, "Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}
            own = await http.post(url, json=listing, headers={**session_headers, "Authorization": f"Bearer {alice}"})
            stolen = await http.post(url, json=listing, headers={**session_headers, "Authorization": f"Bearer {bob}"})
    assert own.status_code == 200
    assert stolen.status_code in (403, 404) and "getItem" not in stolen.text


async def test_disabling_a_consumer_refuses_its_keys_until_enabled(tmp_path: Path, upstream: str, alice: str) -> None:
    def status(url: str) -> int:
        return httpx2.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": f"Bearer {alice}", "Accept": "application/json, text/event-stream"},
        ).status_code

    async def until(url: str, expected: int) -> None:
        with anyio.fail_after(10):  # the CLI's change reaches the gateway within one store poll
            while await anyio.to_thread.run_sync(status, url) != expected:
                await anyio.sleep(0.2)

    with running_gateway(auth_config(tmp_path, upstream)) as (url, _):
        assert status(url) == 200
        assert "disabled consumer alice" in cli(tmp_path, "consumers", "disable", "alice")
        assert "disabled" in cli(tmp_path, "consumers", "list").splitlines()[1].split()
        await until(url, 401)
        cli(tmp_path, "consumers", "enable", "alice")
        await until(url, 200)
        # The admin API does the same, at once.
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        base = url.removesuffix("/mcp")
        answer = httpx2.patch(f"{base}/admin/consumers/alice", json={"disabled": True}, headers=admin)
        assert answer.status_code == 200 and answer.json()["disabled"] is True
        assert status(url) == 401
        assert httpx2.patch(f"{base}/admin/consumers/nobody", json={"disabled": True}, headers=admin).status_code == 404
        assert httpx2.patch(f"{base}/admin/consumers/alice", json={"disabled": False}, headers=admin).status_code == 200
        assert status(url) == 200
