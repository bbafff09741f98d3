"""Budget alerts through a serving gateway: a log line and a webhook POST per threshold reached,
once each, signed with the vault's secret (HMAC-SHA256 of the exact body), retried with backoff
when the receiver fails, and never carrying the secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.metering.alerts import signature
from tests import test_budgets_tools
from tests.servers import serve_in_thread
from tests.test_access import key_client
from tests.test_budgets_tools import _config, gateway

pytestmark = pytest.mark.anyio

priced = test_budgets_tools.priced  # the priced upstream (a fixture)
SECRET = "whsec-7d1f0c2b9e4a4f6b8a3c"


class Receiver:
    """A webhook receiver: records each POST; answers an alert of a percentage in `fail` with the
    statuses queued there, then (and every other alert) with 204."""

    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str], float]] = []
        self.fail: dict[int, list[int]] = {}

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.posts.append((body, dict(request.headers), time.monotonic()))
            statuses = self.fail.get(json.loads(body)["threshold_percent"])
            if statuses:
                return JSONResponse({"error": "try later"}, status_code=statuses.pop(0))
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    found = Receiver()
    with serve_in_thread(found.app()) as url:
        yield found, url + "/hook"


async def test_each_threshold_alerts_once_signed_and_retried(
    tmp_path: Path, priced: tuple[object, str], receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, base = priced
    hook, url = receiver
    hook.fail = {50: [500, 503]}  # the first alert is taken on its third try
    budgets = {
        "rules": [{"name": "alice-day", "scope": "consumer", "usd": "0.02", "period": "day"}],
        "alerts": {"webhook_url": url, "webhook_secret": "secret:alert-key", "backoff_seconds": 0.2},
    }
    caplog.set_level(logging.INFO)
    key: list[str] = []
    config = _config(tmp_path, base, budgets)
    with gateway(config, key) as (gateway_url, running):
        running.vault.put("alert-key", SECRET)
        async with key_client(gateway_url + "/mcp", key[0]) as client:
            assert not (await client.call_tool("flat", {})).is_error  # 0.01: 50%
            assert not (await client.call_tool("flat", {})).is_error  # 0.02: 80% and 100%
            assert (await client.call_tool("flat", {})).is_error  # nothing left: refused, no alert
        deadline = time.monotonic() + 10
        while len({json.loads(body)["id"] for body, _, _ in hook.posts}) < 3 or running.alerts.pending:
            assert time.monotonic() < deadline, hook.posts
            await anyio.sleep(0.05)
        await anyio.sleep(0.5)  # nothing more comes
    bodies = [json.loads(body) for body, _, _ in hook.posts]
    assert len(hook.posts) == 5  # three alerts, the first one tried three times
    for body, headers, _ in hook.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-signature"] == expected == signature(SECRET, body)
        assert headers["content-type"] == "application/json" and SECRET.encode() not in body
    first = [at for body, _, at in hook.posts if json.loads(body)["threshold_percent"] == 50]
    assert len(first) == 3 and first[1] - first[0] >= 0.2 and first[2] - first[1] >= 0.4  # backoff, doubling
    unique = {b["id"]: b for b in bodies}
    assert sorted((b["threshold_percent"], b["spent_usd"]) for b in unique.values()) == [
        (50, "0.01"),
        (80, "0.02"),
        (100, "0.02"),
    ]
    fifty = next(b for b in unique.values() if b["threshold_percent"] == 50)
    assert {k: fifty[k] for k in ("type", "budget", "scope", "subject", "period", "cap_usd")} == {
        "type": "budget.threshold", "budget": "alice-day", "scope": "consumer", "subject": "alice", "period": "day",
        "cap_usd": "0.02",
    }  # fmt: skip
    assert fifty["period_end"].endswith("T00:00:00Z")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("budget alert:")]
    assert len(lines) == 3 and lines[0].startswith(
        "budget alert: budget 'alice-day' (USD 0.02 per day for consumer alice) reached 50%: USD 0.01 spent"
    )
    assert SECRET not in caplog.text


async def test_a_receiver_that_refuses_is_given_up_on_without_hurting_calls(
    tmp_path: Path, priced: tuple[object, str], receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, base = priced
    hook, url = receiver
    hook.fail = {100: [400]}
    budgets = {
        "rules": [{"name": "b", "scope": "consumer", "usd": "0.01", "alert_at": [100]}],
        "alerts": {"webhook_url": url, "backoff_seconds": 0.1},
    }
    key: list[str] = []
    with gateway(_config(tmp_path, base, budgets), key) as (gateway_url, running):
        async with key_client(gateway_url + "/mcp", key[0]) as client:
            assert not (await client.call_tool("flat", {})).is_error
        deadline = time.monotonic() + 10
        while running.alerts.given_up < 1:
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
    assert len(hook.posts) == 1 and "x-signature" not in hook.posts[0][1]  # no secret set: unsigned
    assert "budget alert: the webhook did not take an alert (HTTP 400); given up" in caplog.text
