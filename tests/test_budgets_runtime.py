"""Budgets added at run time with the CLI and the admin API: a running gateway applies them at its
next store poll, counting the period's spend the ledger already holds, and lets go of them when
they are removed; `budgets status` reads each subject's spend from the ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest
import yaml

from mcp_gateway.config import ApiConfig, GatewayConfig, load_config
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, running_gateway
from tests.test_access import cli
from tests.test_limits_runtime import _refused, _until, cli_error

pytestmark = pytest.mark.anyio


async def test_a_budget_added_with_the_cli_counts_earlier_spend_and_goes_away(tmp_path: Path, upstream: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path),
                "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream, "cost": "0.1"}],
                "metering": {"flush_seconds": 0.05},
                "budgets": {"rules": [{"name": "from-config", "scope": "global", "usd": 1000}]},
            }
        )
    )
    c = ("-c", str(path))
    with running_gateway(load_config(path)) as (url, gateway):
        assert await _refused(url, 3) == [False, False, False]

        async def written() -> bool:
            rows = json.loads(cli(tmp_path, "usage", "--by", "api", "--json", *c))["rows"]
            return bool(rows) and rows[0]["calls"] == 3

        await _until(written, "the ledger did not get the three calls")
        added = cli(tmp_path, "budgets", "add", "half-a-dollar", "--scope", "api", "--api", "echo",
                    "--usd", "0.5", "--period", "day", "--alert-at", "80", *c)  # fmt: skip
        assert "added budget half-a-dollar: USD 0.5 per day for api=echo, per api" in added

        async def applied() -> bool:
            return any(b.name == "half-a-dollar" for b in gateway.budgets.budgets)

        await _until(applied, "the running gateway did not pick the budget up")
        # 0.3 spent before the budget existed counts: two more calls fit, the third does not.
        assert await _refused(url, 3) == [False, False, True]
        listed = json.loads(cli(tmp_path, "budgets", "list", "--json", *c))
        assert [(r["name"], r["source"]) for r in listed] == [("from-config", "config"), ("half-a-dollar", "store")]
        assert listed[1]["usd"] == "0.5" and listed[1]["alert_at"] == [80]

        async def settled() -> bool:
            status = json.loads(cli(tmp_path, "budgets", "status", "--json", *c))
            mine = [b for b in status if b["budget"] == "half-a-dollar"]
            return bool(mine) and Decimal(mine[0]["spent_usd"]) == Decimal("0.5")

        await _until(settled, "budgets status does not show the ledger's 0.5 spent")
        status = {b["budget"]: b for b in json.loads(cli(tmp_path, "budgets", "status", "--json", *c))}
        assert status["half-a-dollar"]["subject"] == "echo" and status["half-a-dollar"]["remaining_usd"] == "0"
        assert Decimal(status["from-config"]["spent_usd"]) == Decimal("0.5")
        assert "half-a-dollar" in cli(tmp_path, "budgets", "status", *c)

        assert "is in the config file" in cli_error(tmp_path, "budgets", "add", "from-config", "--scope", "global",
                                                    "--usd", "1", *c)  # fmt: skip
        assert "usd must be more than 0" in cli_error(tmp_path, "budgets", "add", "free", "--scope", "global",
                                                      "--usd", "0", *c)  # fmt: skip
        assert "exists: remove it first" in cli_error(tmp_path, "budgets", "add", "half-a-dollar", "--scope",
                                                      "global", "--usd", "1", *c)  # fmt: skip
        assert "removed budget half-a-dollar" in cli(tmp_path, "budgets", "remove", "half-a-dollar", *c)

        async def gone() -> bool:
            return all(b.name != "half-a-dollar" for b in gateway.budgets.budgets)

        await _until(gone, "the removed budget still applies")
        assert await _refused(url, 2) == [False, False]
        assert "edit it there" in cli_error(tmp_path, "budgets", "remove", "from-config", *c)


async def test_the_admin_api_adds_lists_and_removes_budgets(tmp_path: Path, upstream: str) -> None:
    config = GatewayConfig(
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        apis=[ApiConfig.model_validate({"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream, "cost": 1})],
    )
    with running_gateway(config) as (url, gateway):
        assert not gateway.budgets.active
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            rule = {"name": "two-dollars", "scope": "tool", "match": {"tool": ["getItem"]}, "usd": "2"}
            made = await admin.post("/admin/budgets/rules", json=rule)
            assert made.status_code == 201 and made.json()["source"] == "store"
            assert (await admin.post("/admin/budgets/rules", json=rule)).status_code == 409
            bad = await admin.post("/admin/budgets/rules", json={"name": "x", "scope": "nobody", "usd": 1})
            assert bad.status_code == 400 and "scope" in bad.json()["error"]
            listed = (await admin.get("/admin/budgets/rules")).json()["budgets"]
            assert [r["name"] for r in listed] == ["two-dollars"]
            assert (await httpx2.AsyncClient(base_url=base).get("/admin/budgets/rules")).status_code == 401

            async def applied() -> bool:
                return gateway.budgets.active

            await _until(applied, "the running gateway did not pick the budget up")
            assert await _refused(url, 3) == [False, False, True]
            balances = (await admin.get("/admin/budgets")).json()["budgets"]
            assert [(b["budget"], b["subject"], b["spent_usd"]) for b in balances] == [("two-dollars", "getItem", "2")]
            assert (await admin.delete("/admin/budgets/rules/two-dollars")).json() == {"removed": "two-dollars"}
            assert (await admin.delete("/admin/budgets/rules/two-dollars")).status_code == 404

            async def gone() -> bool:
                return not gateway.budgets.active

            await _until(gone, "the removed budget still applies")
            assert await _refused(url, 1) == [False]
