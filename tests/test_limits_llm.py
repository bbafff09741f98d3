"""Rate limits on the /v1 doors: 429 in each door's own shape with Retry-After and the draft's
RateLimit fields (parsed by an independent Structured Fields parser), nothing sent to the provider
when refused, token reservations settled to the usage records, concurrency slots held until a
stream ends. In-process and on a real redis-server."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import anyio
import http_sf
import httpx2
import openai
import pytest

from mcp_gateway.gateway import Gateway
from tests.fake_llm import FakeProvider, Misbehave
from tests.limits_helpers import BACKENDS, fresh_window, limits_config, retry_bounds, wait_for_window
from tests.redis_server import RedisServer
from tests.servers import serve_in_thread
from tests.test_llm import ANTHROPIC_KEY, OPENAI_KEY, _models, _start

OPENAI_USAGE = 11 + 7  # what the fake OpenAI reports for a chat completion: prompt + completion
ANTHROPIC_USAGE = 12 + 4 + 2 + 6  # the fake Anthropic: input, cache read, cache write, output


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    openai_fake, anthropic_fake = FakeProvider(OPENAI_KEY), FakeProvider(ANTHROPIC_KEY)
    with serve_in_thread(openai_fake.app()) as a, serve_in_thread(anthropic_fake.app()) as b:
        openai_fake.url, anthropic_fake.url = a, b
        yield openai_fake, anthropic_fake


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "local", None


@dataclass
class Door:
    url: str
    key: str
    gateway: Gateway
    openai_fake: FakeProvider
    anthropic_fake: FakeProvider

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=self.key, max_retries=0)

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx2.Response:
        return httpx2.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {self.key}", **headers}, timeout=30
        )


def serve(tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], limits: Any) -> Iterator[Door]:
    """A gateway (alice may use every model but `secret-model`) with `limits`."""
    openai_fake, anthropic_fake = fakes
    models = _models(openai_fake.url, anthropic_fake.url)
    for running in _start(tmp_path, models, limits=limits.model_dump()):
        yield Door(running.url, running.key, running.gateway, openai_fake, anthropic_fake)


CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def parsed(response: httpx2.Response) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(RateLimit-Policy, RateLimit) by policy name, parsed as RFC 9651 Lists by http-sf."""
    policy = http_sf.parse(response.headers["ratelimit-policy"].encode(), tltype="list")
    limit = http_sf.parse(response.headers["ratelimit"].encode(), tltype="list")
    return {str(name): params for name, params in policy}, {str(name): params for name, params in limit}


@pytest.mark.parametrize("door", ["openai", "anthropic"])
def test_a_refused_model_call_is_a_429_in_the_doors_shape_and_reaches_no_provider(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None], door: str
) -> None:
    rules = [
        {"name": "rpm", "scope": "consumer", "requests_per_minute": 2},
        {"name": "inflight", "scope": "consumer", "concurrent": 5},
    ]
    for running in serve(tmp_path, fakes, limits_config(*backend, rules)):
        fake = running.openai_fake if door == "openai" else running.anthropic_fake
        path, body = ("/v1/chat/completions", CHAT) if door == "openai" else ("/v1/messages", MESSAGES)
        extra = {"anthropic-version": "2023-06-01"} if door == "anthropic" else {}
        seen = len(fake.seen)
        wait_for_window(60, need=5)
        first = running.post(path, body, **extra)
        assert first.status_code == 200
        policy, limit = parsed(first)
        assert policy == {"rpm": {"q": 2, "w": 60}, "inflight": {"q": 5, "qu": "concurrent-requests"}}
        assert limit["rpm"]["r"] == 1 and 1 <= limit["rpm"]["t"] <= 60 and limit["inflight"] == {"r": 4}
        assert running.post(path, body, **extra).status_code == 200
        before = time.time()
        refused = running.post(path, body, **extra)
        after = time.time()
        assert refused.status_code == 429
        low, high = retry_bounds(60, before, after)
        assert low <= int(refused.headers["retry-after"]) <= high
        policy, limit = parsed(refused)
        assert policy["rpm"] == {"q": 2, "w": 60}
        assert limit["rpm"]["r"] == 0 and limit["rpm"]["t"] <= int(refused.headers["retry-after"])
        message = "Rate limit: limit 'rpm' reached (2 requests per minute for consumer alice)"
        if door == "openai":
            error = refused.json()["error"]
            assert error["code"] == "rate_limit_exceeded" and error["message"].startswith(message)
            with pytest.raises(openai.RateLimitError) as sdk:
                running.openai().chat.completions.create(**CHAT)
        else:
            assert refused.json()["type"] == "error"
            error = refused.json()["error"]
            assert error["type"] == "rate_limit_error" and error["message"].startswith(message)
            with pytest.raises(anthropic.RateLimitError) as sdk:
                running.anthropic().messages.create(**MESSAGES)
        assert sdk.value.status_code == 429
        assert len(fake.seen) == seen + 2  # the refused calls never reached the provider


@pytest.mark.parametrize("stream", [False, True])
def test_token_limits_reserve_max_tokens_and_settle_to_the_usage(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None], stream: bool
) -> None:
    """300 tokens a minute; each call reserves its prompt and max_tokens (~220). Without settling
    only one call would fit; settled to the 18 tokens the provider reports, three do, and the
    RateLimit field counts down by exactly what each call used."""
    rules = [{"name": "tpm", "scope": "consumer", "tokens_per_minute": 300}]
    for running in serve(tmp_path, fakes, limits_config(*backend, rules)):
        body = {**CHAT, "max_tokens": 200, "stream": stream}
        reserve = math.ceil(len(httpx2.Request("POST", "http://x", json=body).content) / 4) + 200
        wait_for_window(60, need=10)
        remaining = []
        for _ in range(3):
            response = running.post("/v1/chat/completions", body)
            assert response.status_code == 200, response.text
            remaining.append(parsed(response)[1]["tpm"]["r"])
        # Each admission saw the settled usage of the calls before it, plus its own reservation.
        assert remaining == [300 - reserve, 300 - OPENAI_USAGE - reserve, 300 - 2 * OPENAI_USAGE - reserve]
        # A request whose max_tokens alone is over the limit can never fit: 429 without Retry-After.
        never = running.post("/v1/chat/completions", {**CHAT, "max_tokens": 400})
        assert never.status_code == 429 and "retry-after" not in never.headers
        assert "can never admit this request" in never.json()["error"]["message"]


def test_a_concurrency_slot_is_held_until_the_stream_ends_and_freed_when_the_client_leaves(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], backend: tuple[str, str | None]
) -> None:
    rules = [{"name": "one", "scope": "consumer", "concurrent": 1}]
    for running in serve(tmp_path, fakes, limits_config(*backend, rules)):
        anthropic_fake = running.anthropic_fake
        body = {**MESSAGES, "stream": True}
        headers = {"Authorization": f"Bearer {running.key}", "anthropic-version": "2023-06-01"}
        with httpx2.Client(timeout=30) as http:
            anthropic_fake.script.append(Misbehave(hang=True))  # the stream goes quiet after its first event
            with http.stream("POST", running.url + "/v1/messages", json=body, headers=headers) as streaming:
                assert streaming.status_code == 200
                assert parsed(streaming)[1] == {"one": {"r": 0}}
                chunks = streaming.iter_raw()  # kept: a dropped iterator closes the response
                next(chunks)  # the first event arrived: the call is in flight
                refused = running.post("/v1/messages", MESSAGES, **{"anthropic-version": "2023-06-01"})
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
                assert (
                    "limit 'one' reached (1 calls in flight for consumer alice)" in refused.json()["error"]["message"]
                )
            # The client hung up mid-stream: the slot comes back.
            deadline = time.monotonic() + 5
            while (
                again := running.post("/v1/messages", MESSAGES, **{"anthropic-version": "2023-06-01"})
            ).status_code == 429:
                assert time.monotonic() < deadline, again.text
                time.sleep(0.05)
            assert again.status_code == 200
            # A whole stream read to its end frees the slot too, and so does a provider's error.
            with http.stream("POST", running.url + "/v1/messages", json=body, headers=headers) as streaming:
                assert b"message_stop" in streaming.read()
            anthropic_fake.script.append(Misbehave(status=400))
            assert running.post("/v1/messages", MESSAGES, **{"anthropic-version": "2023-06-01"}).status_code == 400
            assert running.post("/v1/messages", MESSAGES, **{"anthropic-version": "2023-06-01"}).status_code == 200


def test_unknown_models_and_bad_requests_cost_no_quota(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    rules = [{"name": "rpm", "scope": "consumer", "requests_per_hour": 1}]
    for running in serve(tmp_path, fakes, limits_config("local", None, rules)):
        wait_for_window(3600, need=5)
        assert running.post("/v1/chat/completions", {**CHAT, "model": "no-such-model"}).status_code == 404
        assert running.post("/v1/chat/completions", {"model": "gpt-test"}).status_code == 400
        assert running.post("/v1/chat/completions", CHAT).status_code == 200
        assert running.post("/v1/chat/completions", CHAT).status_code == 429


# -- two gateways on one Redis --------------------------------------------------------------------


@pytest.fixture
def two_gateways(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], redis_url: str
) -> Iterator[tuple[Door, str]]:
    """Two gateways over one database (alice's key works on both) and one Redis: (the first, the
    second's URL). A per-consumer limit of 60 requests a minute."""
    limits = limits_config("redis", redis_url, [{"name": "rpm", "scope": "consumer", "requests_per_minute": 60}])
    for first in serve(tmp_path, fakes, limits):
        second = Gateway(first.gateway.config)
        with serve_in_thread(second.http_app(), lifespan="on") as url:
            yield first, url


@pytest.mark.anyio
async def test_two_gateways_sharing_redis_admit_exactly_the_limit(two_gateways: tuple[Door, str]) -> None:
    first, second = two_gateways
    provider = first.openai_fake
    seen = len(provider.seen)
    await fresh_window(60, need=15)
    statuses: list[int] = []
    remaining: list[int] = []
    limiter_sem = anyio.Semaphore(32)  # 32 callers at once

    async def call(http: httpx2.AsyncClient, url: str) -> None:
        async with limiter_sem:
            response = await http.post(url + "/v1/chat/completions", json=CHAT)
            statuses.append(response.status_code)
            if response.status_code == 200:
                remaining.append(int(response.headers["ratelimit"].split(";r=")[1].split(";")[0]))

    headers = {"Authorization": f"Bearer {first.key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(call, http, (first.url, second)[n % 2])
    assert statuses.count(200) == 60 and statuses.count(429) == 40
    assert len(provider.seen) == seen + 60
    # Each admission saw every other one, on either gateway: 59 left after the first ... 0 after the last.
    assert sorted(remaining) == list(range(60))


def test_a_gateway_with_redis_down_refuses_model_calls_with_503(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], redis_server: RedisServer
) -> None:
    rules = [{"name": "rpm", "scope": "consumer", "requests_per_minute": 10}]
    for running in serve(tmp_path, fakes, limits_config("redis", redis_server.url, rules)):
        wait_for_window(60, need=3)
        assert running.post("/v1/chat/completions", CHAT).status_code == 200
        redis_server.stop()
        seen = len(running.openai_fake.seen)
        down = running.post("/v1/chat/completions", CHAT)
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        assert "limits.redis_failure: fail_closed" in down.json()["error"]["message"]
        assert len(running.openai_fake.seen) == seen
