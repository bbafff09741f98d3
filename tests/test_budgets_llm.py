"""Budgets on the /v1 doors, with the official SDKs against fake providers: a call whose most
possible cost does not fit is refused before any provider request, in each door's shape (OpenAI
429 insufficient_quota; Anthropic 402 billing_error), and not retried by the SDKs; the
reservation is settled to the exact cost of the provider's reported usage (a stream's at its
end, or when its client leaves); 32 callers at once never pass the cap. In-process and on Redis."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest

from tests import test_limits_llm
from tests.fake_llm import FakeProvider, Misbehave
from tests.limits_helpers import limits_config
from tests.test_limits_llm import CHAT, MESSAGES, Door
from tests.test_llm import _start

# The rate limits' fixtures: the fake providers, and each backend (this process, a redis-server).
fakes, backend = test_limits_llm.fakes, test_limits_llm.backend

# What the fakes report, priced: OpenAI 11 prompt tokens (3 cached) and 7 completion tokens at
# 2.5 / 1.25 (cached) / 10 USD per million; Anthropic 12 input, 4 cache read, 2 cache write, 6
# output at 3 / 0.3 / 3.75 / 15.
OPENAI_COST = (8 * Decimal("2.5") + 3 * Decimal("1.25") + 7 * 10) / 1_000_000
ANTHROPIC_COST = (12 * 3 + 4 * Decimal("0.3") + 2 * Decimal("3.75") + 6 * 15) / 1_000_000
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def _models(openai_url: str, anthropic_url: str) -> list[dict[str, Any]]:
    return [
        {"name": "gpt-test", "deployments": [
            {"provider": "openai", "model": "gpt-4o", "base_url": openai_url + "/v1", "api_key": "secret:openai-key",
             "price": {"input": 2.5, "output": 10, "cache_read": 1.25}}]},
        {"name": "claude-test", "deployments": [
            {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": anthropic_url,
             "api_key": "secret:anthropic-key", "price": {"input": 3, "output": 15, "cache_read": 0.3,
                                                          "cache_write": 3.75}}]},
    ]  # fmt: skip


def serve(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None], budgets: list[dict]
) -> Iterator[Door]:
    """A gateway (alice's key) with `budgets`, their accounts per `backend`."""
    openai_fake, anthropic_fake = fakes
    limits = limits_config(*backend, []).model_dump()
    for running in _start(tmp_path, _models(openai_fake.url, anthropic_fake.url), budgets=budgets, limits=limits):
        yield Door(running.url, running.key, running.gateway, openai_fake, anthropic_fake)


def budgets_seen(door: Door) -> list[dict[str, Any]]:
    response = httpx2.get(door.url + "/v1/usage", headers={"Authorization": f"Bearer {door.key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["budgets"]


def reservation(body: dict[str, Any], prompt_price: Decimal, output_price: Decimal) -> Decimal:
    """The most a call of `body` may cost: its prompt (bytes / 4) at the dearer of input and cache
    write, and max_tokens at the output price (USD per million)."""
    prompt = math.ceil(len(httpx2.Request("POST", "http://x", json=body).content) / 4)
    return (prompt * prompt_price + body["max_tokens"] * output_price) / 1_000_000


def test_a_call_that_does_not_fit_is_refused_in_each_doors_shape_before_any_provider_request(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None]
) -> None:
    budgets = [{"name": "alice-day", "scope": "consumer", "usd": "0.001", "period": "day"}]
    for door in serve(tmp_path, fakes, backend, budgets):
        sent: list[httpx2.Request] = []
        counting = httpx2.Client(event_hooks={"request": [sent.append]}, timeout=30)
        seen = len(door.openai_fake.seen), len(door.anthropic_fake.seen)
        big_chat = {**CHAT, "max_tokens": 200}  # 200 x 10 USD / million alone is 0.002
        refused = door.post("/v1/chat/completions", big_chat)
        assert refused.status_code == 429 and refused.headers["x-should-retry"] == "false"
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        most = reservation(big_chat, Decimal("2.5"), Decimal(10))
        assert error["message"].startswith(
            "Budget exceeded: budget 'alice-day' (USD 0.001 per day for consumer alice) has USD 0.001 left; "
            "it resets at "
        )
        assert error["message"].endswith(f"; this call reserves up to USD {most.normalize():f}")
        # The SDK raises at once: the gateway said not to retry (it would, for a 429, by default).
        client = openai.OpenAI(base_url=door.url + "/v1", api_key=door.key, http_client=counting)
        with pytest.raises(openai.RateLimitError) as sdk:
            client.chat.completions.create(**big_chat)
        assert sdk.value.code == "insufficient_quota" and len(sent) == 1
        big_message = {**MESSAGES, "max_tokens": 100}  # 100 x 15 USD / million alone is 0.0015
        refused = door.post("/v1/messages", big_message, **ANTHROPIC)
        assert refused.status_code == 402 and refused.json()["type"] == "error"
        assert refused.json()["error"]["type"] == "billing_error"
        claude = anthropic.Anthropic(base_url=door.url, api_key=door.key, http_client=counting)
        with pytest.raises(anthropic.PaymentRequiredError) as denied:
            claude.messages.create(**big_message)
        assert denied.value.status_code == 402 and len(sent) == 2
        assert (len(door.openai_fake.seen), len(door.anthropic_fake.seen)) == seen  # no provider was asked
        # Calls whose most possible cost fits are served.
        assert door.post("/v1/chat/completions", {**CHAT, "max_tokens": 20}).status_code == 200
        assert door.post("/v1/messages", {**MESSAGES, "max_tokens": 20}, **ANTHROPIC).status_code == 200
        [balance] = budgets_seen(door)
        assert Decimal(balance["spent_usd"]) == OPENAI_COST + ANTHROPIC_COST and balance["reserved_usd"] == "0"


def test_reservations_settle_to_the_exact_cost_streams_at_their_end(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None]
) -> None:
    budgets = [{"name": "team-month", "scope": "team", "usd": "1"}]
    for door in serve(tmp_path, fakes, backend, budgets):
        client = door.openai()
        client.chat.completions.create(**{**CHAT, "max_tokens": 500})
        chunks = list(client.chat.completions.create(**{**CHAT, "max_tokens": 500, "stream": True}))
        assert chunks
        door.anthropic().messages.create(**MESSAGES)
        expected = 2 * OPENAI_COST + ANTHROPIC_COST
        [balance] = budgets_seen(door)
        assert (Decimal(balance["spent_usd"]), balance["reserved_usd"]) == (expected, "0")
        assert Decimal(balance["remaining_usd"]) == 1 - expected
        # The ledger says the same, to the picodollar.
        deadline = time.monotonic() + 10
        while door.gateway.ledger_store.count() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        [row] = door.gateway.ledger_store.usage("team")
        assert row.cost == expected

        # A stream holds its reservation while it runs; its client leaving settles it to what was used.
        body = {**MESSAGES, "max_tokens": 1000, "stream": True}
        headers = {"Authorization": f"Bearer {door.key}", **ANTHROPIC}
        door.anthropic_fake.script.append(Misbehave(hang=True))  # quiet after its first event
        with httpx2.Client(timeout=30) as http:
            with http.stream("POST", door.url + "/v1/messages", json=body, headers=headers) as streaming:
                assert streaming.status_code == 200
                events = streaming.iter_raw()
                next(events)
                [held] = budgets_seen(door)
                assert Decimal(held["reserved_usd"]) == reservation(body, Decimal("3.75"), Decimal(15))
            deadline = time.monotonic() + 5
            while (after := budgets_seen(door)[0])["reserved_usd"] != "0":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # What the provider reported before the client left (message_start: the prompt, 1 output token).
        started = (12 * 3 + 4 * Decimal("0.3") + 2 * Decimal("3.75") + 1 * 15) / 1_000_000
        assert Decimal(after["spent_usd"]) == expected + started


@pytest.mark.anyio
async def test_32_callers_at_once_never_pass_the_cap(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None]
) -> None:
    """A reservation is the most a call may cost (prompt and max_tokens at the priciest
    deployment), so spend never passes the cap however many calls are in flight: each of these
    reserves about USD 0.00026 of a 0.0005 cap, one fits at a time, and calls that end give
    back what they did not spend (each costs 0.00009375)."""
    budgets = [{"name": "alice-day", "scope": "consumer", "usd": "0.0005", "period": "day"}]
    for door in serve(tmp_path, fakes, backend, budgets):
        fake = door.openai_fake
        seen = len(fake.seen)
        fake.script.extend(Misbehave(delay=0.3) for _ in range(32))
        statuses: list[int] = []

        async def call(http: httpx2.AsyncClient, url: str = door.url, statuses: list[int] = statuses) -> None:
            response = await http.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 20})
            statuses.append(response.status_code)

        headers = {"Authorization": f"Bearer {door.key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http, anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(call, http)
        fake.script.clear()
        served = statuses.count(200)
        assert served + statuses.count(429) == 32 and len(fake.seen) - seen == served
        [balance] = await anyio.to_thread.run_sync(budgets_seen, door)
        spent = Decimal(balance["spent_usd"])
        assert spent == served * OPENAI_COST and balance["reserved_usd"] == "0"
        assert spent <= Decimal("0.0005")  # never past the cap: the reservations were true maxima
        assert served >= 1 and statuses.count(429) >= 1


@pytest.mark.parametrize("mode", ["refuse", "allow"])
def test_a_model_without_a_price_under_a_budget_is_refused_unless_allowed(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], mode: str
) -> None:
    """A model no price is known for cannot have its cost reserved: under a budget its calls are
    refused (403, before any provider request, saying what to set), or with `unpriced_models:
    allow` served as costing nothing. A priced model is served either way."""
    openai_fake, anthropic_fake = fakes
    house = {"name": "house", "deployments": [{"provider": "openai", "model": "house-model-7b",
             "base_url": openai_fake.url + "/v1", "api_key": "secret:openai-key"}]}  # fmt: skip
    models = [*_models(openai_fake.url, anthropic_fake.url), house]
    budgets = {
        "rules": [{"name": "alice-day", "scope": "consumer", "usd": "1", "period": "day"}],
        "unpriced_models": mode,
    }
    for running in _start(tmp_path, models, budgets=budgets):
        door = Door(running.url, running.key, running.gateway, openai_fake, anthropic_fake)
        seen = len(openai_fake.seen)
        answer = door.post("/v1/chat/completions", {**CHAT, "model": "house"})
        if mode == "refuse":
            assert answer.status_code == 403 and answer.headers["x-should-retry"] == "false"
            assert "The model `house` has no price" in answer.json()["error"]["message"]
            assert "budgets.unpriced_models: allow" in answer.json()["error"]["message"]
            assert len(openai_fake.seen) == seen
        else:
            assert answer.status_code == 200
            [balance] = budgets_seen(door)
            assert balance["spent_usd"] == "0"
        assert door.post("/v1/chat/completions", CHAT).status_code == 200  # a priced model: served
