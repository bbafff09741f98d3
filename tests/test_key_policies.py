"""Policies that name one API key: a consumer's CI key confined to read-only tools and one cheap
model, while the same consumer's other key keeps everything. Through the real MCP client and
the real openai SDK, set up with the CLI and the admin API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import openai
import pytest
from mcp.shared.exceptions import MCPError

from mcp_gateway.auth.principal import Principal
from mcp_gateway.config import ApiConfig, AuthConfig, GatewayConfig
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.policy.access import AccessPolicy
from mcp_gateway.store.identities import Policy, Selector
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway
from tests.fake_llm import FakeProvider
from tests.servers import serve_in_thread
from tests.test_access import cli, key_client, new_key

PROVIDER_KEY = "sk-key-policies-provider-5e6f7a"
READ_ONLY_TOOLS = {"getItem", "labelColor", "plain"}  # a sample of the echo API's GET tools
WRITING_TOOLS = {"createItem", "deleteItem", "putRaw"}


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider(PROVIDER_KEY)
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


def _config(data_dir: Path, upstream: str, provider_url: str) -> GatewayConfig:
    deployment = {"provider": "openai", "base_url": provider_url + "/v1", "api_key": "secret:provider-key"}
    return GatewayConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "admin_token": ADMIN_TOKEN,
            "auth": AuthConfig(enabled=True),
            "apis": [ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
            "models": [{"name": name, "deployments": [deployment]} for name in ("gpt-cheap", "gpt-big", "gpt-huge")],
            "models_from_env": False,
        }
    )


def _policy(i: int, kind: str, subject: str, effect: str, **selector: object) -> Policy:
    return Policy(i, kind, subject, effect, Selector(**selector))  # type: ignore[arg-type]


def test_a_key_is_confined_by_its_policies_and_never_widened() -> None:
    ci = Principal("dev", "team", "org", "api_key", "cikey0000001")
    other = Principal("dev", "team", "org", "api_key", "otherkey0001")
    jwt = Principal("dev", "team", "org", "jwt", "cikey0000001")  # a JWT whose subject happens to equal the id
    rules = AccessPolicy(
        [
            _policy(1, "consumer", "dev", "allow"),  # every tool and every model
            _policy(2, "consumer", "dev", "deny", models=("gpt-huge",)),
            _policy(3, "key", "cikey0000001", "allow", models=("gpt-cheap", "gpt-huge")),
            _policy(4, "key", "cikey0000001", "deny", models=("gpt-huge",)),
            _policy(5, "key", "otherkey0001", "deny", models=("gpt-cheap",)),  # a deny alone takes only that
        ]
    )
    assert [rules.allows_model(ci, m) for m in ("gpt-cheap", "gpt-big", "gpt-huge")] == [True, False, False]
    assert [rules.allows_model(other, m) for m in ("gpt-cheap", "gpt-big", "gpt-huge")] == [False, True, False]
    assert rules.allows_model(jwt, "gpt-big")  # no key level for a JWT
    # The key's policies speak of models only: its tools are its consumer's.
    tools = ingest_api(ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url="http://x/")).tools
    assert all(rules.allows(ci, t) for t in tools)
    # A key allowed something its consumer is not allowed does not get it.
    widened = AccessPolicy(
        [_policy(1, "consumer", "dev", "allow", read_only=True), _policy(2, "key", "cikey0000001", "allow")]
    )
    assert {t.name for t in tools if widened.allows(ci, t)} == {t.name for t in tools if t.annotations["readOnlyHint"]}


async def _tools(url: str, key: str) -> set[str]:
    async with key_client(url, key) as client:
        return {t.name for t in (await client.list_tools()).tools}


async def _call(url: str, key: str, tool: str, arguments: dict[str, object]) -> bool:
    """True when the call went through; False when it was refused as an unknown tool."""
    async with key_client(url, key) as client:
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as exc:
            assert "Unknown tool" in str(exc) or "not found" in str(exc).lower(), exc
            return False
    assert not result.is_error, result
    return True


def _models(base: str, key: str) -> set[str]:
    return {m.id for m in openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0).models.list()}


def _chat(base: str, key: str, model: str) -> bool:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    try:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as exc:
        assert exc.body["code"] == "model_not_found"  # type: ignore[index]
        return False
    assert reply.choices[0].message.content == "echo: hi"
    return True


@pytest.mark.anyio
async def test_a_ci_key_limited_to_read_only_tools_and_one_cheap_model(
    tmp_path: Path, upstream: str, provider: FakeProvider
) -> None:
    cli(tmp_path, "consumers", "add", "dev", "--team", "platform")
    cli(tmp_path, "policies", "add", "--consumer", "dev", "--allow")  # everything
    laptop = new_key(tmp_path, "dev")
    ci = new_key(tmp_path, "dev", "--description", "CI")
    ci_id = ci[4:16]
    added = cli(tmp_path, "policies", "add", "--key", ci_id, "--allow", "--read-only")
    assert f"allow key {ci_id}: read-only tools" in added
    cli(tmp_path, "policies", "add", "--key", ci_id, "--allow", "--model", "gpt-cheap")
    shown = cli(tmp_path, "consumers", "show", "dev")
    assert f"allow key {ci_id}: read-only tools" in shown and f"allow key {ci_id}: models gpt-cheap" in shown

    with running_gateway(_config(tmp_path, upstream, provider.url)) as (url, gateway):
        gateway.vault.put("provider-key", PROVIDER_KEY)
        base = url.removesuffix("/mcp")
        everything = await _tools(url, laptop)
        limited = await _tools(url, ci)
        assert everything >= READ_ONLY_TOOLS | WRITING_TOOLS
        assert limited >= READ_ONLY_TOOLS and not limited & WRITING_TOOLS
        assert await _call(url, ci, "getItem", {"id": "7"})
        assert not await _call(url, ci, "createItem", {"body": {"name": "x"}})
        assert await _call(url, laptop, "deleteItem", {"id": 7})

        assert await anyio.to_thread.run_sync(_models, base, laptop) == {"gpt-cheap", "gpt-big", "gpt-huge"}
        assert await anyio.to_thread.run_sync(_models, base, ci) == {"gpt-cheap"}
        before = len(provider.seen)
        assert await anyio.to_thread.run_sync(_chat, base, ci, "gpt-cheap")
        assert not await anyio.to_thread.run_sync(_chat, base, ci, "gpt-big")  # like an unknown model
        assert await anyio.to_thread.run_sync(_chat, base, laptop, "gpt-big")
        assert len(provider.seen) == before + 2  # no provider call for the refused one

        # A rotated CI key stays confined; the admin API takes key policies too.
        async with httpx2.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            rotated = (await admin.post(f"/admin/keys/{ci_id}/rotate", json={})).json()["key"]
            assert await anyio.to_thread.run_sync(_models, base, rotated) == {"gpt-cheap"}
            assert not (await _tools(url, rotated)) & WRITING_TOOLS
            made = await admin.post(
                "/admin/policies",
                json={"subject_kind": "key", "subject": laptop[4:16], "effect": "deny", "models": ["gpt-huge"]},
            )
            assert made.status_code == 201 and made.json()["subject_kind"] == "key"
            assert await anyio.to_thread.run_sync(_models, base, laptop) == {"gpt-cheap", "gpt-big"}
            assert "createItem" in await _tools(url, laptop)  # a models-only key policy leaves its tools alone
            unknown = await admin.post(
                "/admin/policies", json={"subject_kind": "key", "subject": "nosuchkey000", "effect": "allow"}
            )
            assert unknown.status_code == 400 and "no API key with id 'nosuchkey000'" in unknown.json()["error"]


def test_cli_refuses_a_policy_for_an_unknown_key_and_removing_a_consumer_takes_its_key_policies(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(tmp_path)}
    run = [sys.executable, "-m", "mcp_gateway.cli", "policies", "add", "--key", "nosuchkey000", "--allow"]
    refused = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1 and "no API key with id 'nosuchkey000'" in refused.stderr
    cli(tmp_path, "consumers", "add", "dev")
    key_id = new_key(tmp_path, "dev")[4:16]
    cli(tmp_path, "policies", "add", "--key", key_id, "--deny", "--writes")
    assert "removed consumer dev, its 1 key and 1 policy" in cli(tmp_path, "consumers", "remove", "dev")
    assert "no policies" in cli(tmp_path, "policies", "list")
