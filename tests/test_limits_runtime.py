"""Rate-limit rules added at run time with the CLI and the admin API: a running gateway applies
them at its next store poll, and lets go of them when they are removed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from mcp import Client

from mcp_gateway.config import ApiConfig, GatewayConfig, load_config
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway
from tests.test_access import cli

pytestmark = pytest.mark.anyio


async def _refused(url: str, calls: int) -> list[bool]:
    async with Client(url, mode="2026-07-28") as client:
        return [(await client.call_tool("getItem", {"id": str(n)})).is_error for n in range(calls)]


async def _until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 15  # a few store polls
    while not await predicate():
        assert time.monotonic() < deadline, what
        await anyio.sleep(0.1)


async def test_a_rule_added_with_the_cli_applies_and_goes_away(tmp_path: Path, upstream: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path),
                "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
                "limits": {"rules": [{"name": "from-config", "scope": "global", "requests_per_day": 10_000}]},
            }
        )
    )
    c = ("-c", str(path))
    with running_gateway(load_config(path)) as (url, gateway):
        assert await _refused(url, 3) == [False, False, False]
        added = cli(tmp_path, "limits", "add", "two-per-hour", "--scope", "tool", "--tool", "getItem",
                    "--requests-per-hour", "2", *c)  # fmt: skip
        assert "added limit two-per-hour: 2 requests per hour for tool=getItem, per tool" in added

        async def applied() -> bool:
            return any(rule.name == "two-per-hour" for rule in gateway.limiter.rules)

        await _until(applied, "the running gateway did not pick the rule up")
        assert await _refused(url, 3) == [False, False, True]
        listed = json.loads(cli(tmp_path, "limits", "list", "--json", *c))
        assert [(r["name"], r["source"]) for r in listed] == [("from-config", "config"), ("two-per-hour", "store")]
        refused = cli_error(tmp_path, "limits", "add", "from-config", "--scope", "global", "--concurrent", "1", *c)
        assert "is in the config file" in refused
        assert "exactly one of" in cli_error(tmp_path, "limits", "add", "bad", "--scope", "global", *c)
        assert "removed limit two-per-hour" in cli(tmp_path, "limits", "remove", "two-per-hour", *c)

        async def gone() -> bool:
            return all(rule.name != "two-per-hour" for rule in gateway.limiter.rules)

        await _until(gone, "the removed rule still applies")
        assert await _refused(url, 2) == [False, False]
        assert "edit it there" in cli_error(tmp_path, "limits", "remove", "from-config", *c)


async def test_the_admin_api_adds_lists_and_removes_rules(tmp_path: Path, upstream: str) -> None:
    config = GatewayConfig(
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
    )
    with running_gateway(config) as (url, gateway):
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            rule = {"name": "one-a-minute", "scope": "global", "match": {"tool": ["getItem"]}, "requests_per_minute": 1}
            made = await admin.post("/admin/limits", json=rule)
            assert made.status_code == 201 and made.json()["source"] == "store"
            assert (await admin.post("/admin/limits", json=rule)).status_code == 409
            bad = await admin.post("/admin/limits", json={"name": "x", "scope": "global"})
            assert bad.status_code == 400 and "exactly one of" in bad.json()["error"]
            assert [r["name"] for r in (await admin.get("/admin/limits")).json()["limits"]] == ["one-a-minute"]

            async def applied() -> bool:
                return bool(gateway.limiter.rules)

            await _until(applied, "the running gateway did not pick the rule up")
            assert await _refused(url, 2) == [False, True]
            (used,) = (await admin.get("/admin/limits/usage")).json()["limits"]
            assert (used["limit"], used["subject"], used["used"], used["of"], used["remaining"]) == (
                "one-a-minute", "*", 1, 1, 0
            )  # fmt: skip
            assert (await httpx2.AsyncClient(base_url=base).get("/admin/limits/usage")).status_code == 401
            assert (await admin.delete("/admin/limits/one-a-minute")).json() == {"removed": "one-a-minute"}
            assert (await admin.delete("/admin/limits/one-a-minute")).status_code == 404


def cli_error(data_dir: Path, *args: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-m", "mcp_gateway.cli", *args], capture_output=True, text=True, env=env)
    assert out.returncode != 0, out.stdout
    return out.stderr
