"""Routing model calls: retries, another deployment, cool-down, fallbacks, streams that break."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.fake_llm import FakeProvider, Misbehave
from tests.servers import serve_in_thread
from tests.test_llm import OPENAI_KEY, Running, _start, usage_lines

MESSAGES = [{"role": "user", "content": "ping"}]


@pytest.fixture
def two() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    first, second = FakeProvider(OPENAI_KEY), FakeProvider(OPENAI_KEY)
    with serve_in_thread(first.app()) as one, serve_in_thread(second.app()) as other:
        first.url, second.url = one, other
        yield first, second


def _deployment(url: str, **extra: object) -> dict[str, object]:
    return {"provider": "openai", "model": "gpt-4o", "base_url": url + "/v1", "api_key": "secret:openai-key", **extra}


def _gateway(tmp_path: Path, models: list[dict[str, object]]) -> Iterator[Running]:
    return _start(tmp_path, models)


def _client(running: Running) -> openai.OpenAI:
    # The SDK's own retries off: what is retried here is the gateway's doing.
    return openai.OpenAI(base_url=running.v1, api_key=running.key, max_retries=0)


def test_a_429_is_retried_after_its_retry_after(tmp_path: Path, two: tuple[FakeProvider, FakeProvider], caplog) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    first, _ = two
    for running in _gateway(tmp_path, [{"name": "m", "deployments": [_deployment(first.url)]}]):
        first.script.append(Misbehave(status=429, headers={"retry-after": "0.3"}))
        started = time.monotonic()
        reply = _client(running).chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].message.content == "echo: ping"
        assert time.monotonic() - started >= 0.3  # it waited as asked
        lines = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.models"]
        assert "status=429" in lines[0] and "status=200" in lines[-1] and "retries=1" in lines[-1]


def test_a_failing_deployment_hands_over_to_the_next_and_cools_down(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider]
) -> None:
    first, second = two
    model = {"name": "m", "deployments": [_deployment(first.url), _deployment(second.url)], "cooldown_seconds": 60}
    for running in _gateway(tmp_path, [model]):
        client = _client(running)
        for _ in range(3):
            first.script.append(Misbehave(status=503))
            assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        # Three failures in a row: the first deployment rests; calls go straight to the second.
        served_by_first = len(first.seen)
        for _ in range(3):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert len(first.seen) == served_by_first and len(second.seen) == 6
        health = running.gateway.models.targets["m"][0].health.public()
        assert health["errors"] == 3 and health["cooling_for_seconds"] > 50 and "503" in str(health["last_error"])


def test_when_every_attempt_fails_the_fallback_model_serves(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider], caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    first, second = two
    models = [
        {"name": "main", "deployments": [_deployment(first.url)], "retries": 1, "fallbacks": ["backup"]},
        {"name": "backup", "deployments": [_deployment(second.url, model="gpt-4o-mini")]},
    ]
    for running in _gateway(tmp_path, models):
        first.script.extend([Misbehave(status=500), Misbehave(status=502)])
        reply = _client(running).chat.completions.create(model="main", messages=MESSAGES)
        assert reply.choices[0].message.content == "echo: ping" and second.seen[-1].body["model"] == "gpt-4o-mini"
        assert "fallbacks=1" in [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.models"][-1]
        # Without a fallback, exhausted retries are a 502 naming the last failure.
        second.script.extend([Misbehave(status=500)] * 3)  # its first try and two retries
        with pytest.raises(openai.APIStatusError) as caught:
            _client(running).chat.completions.create(model="backup", messages=MESSAGES)
        assert caught.value.status_code in (500, 502) and "scripted 500" in str(caught.value)


def test_a_prompt_too_long_goes_to_the_context_window_fallback(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider]
) -> None:
    first, second = two
    too_long = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    models = [
        {"name": "small", "deployments": [_deployment(first.url)], "context_window_fallbacks": ["large"]},
        {"name": "large", "deployments": [_deployment(second.url, model="gpt-4.1")]},
    ]
    for running in _gateway(tmp_path, models):
        first.script.append(Misbehave(status=400, body=too_long))
        reply = _client(running).chat.completions.create(model="small", messages=MESSAGES)
        assert reply.choices[0].message.content == "echo: ping" and second.seen[-1].body["model"] == "gpt-4.1"
        assert len(first.seen) == 1  # a 400 is not retried on the same model


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_a_static_key_refused_with_401_is_not_retried(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider], provider: str
) -> None:
    first, second = two
    wrong = _deployment(first.url, api_key="secret:wrong-key")
    if provider == "azure":
        wrong = {**wrong, "provider": "azure", "base_url": first.url}
    model = {"name": "m", "deployments": [wrong, _deployment(second.url)], "retries": 2}
    for running in _gateway(tmp_path, [model]):
        running.gateway.vault.put("wrong-key", "sk-a-wrong-key-stays-wrong-42")
        with pytest.raises(openai.AuthenticationError) as caught:
            _client(running).chat.completions.create(model="m", messages=MESSAGES)
        # One request: a wrong key stays wrong, whatever the retries and the other deployment.
        assert len(first.seen) == 1 and len(second.seen) == 0
        assert "Incorrect API key provided" in caught.value.message and "stays-wrong" not in caught.value.message


def test_a_slow_first_byte_moves_on_to_the_next_deployment(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider]
) -> None:
    first, second = two
    model = {"name": "m", "deployments": [_deployment(first.url, first_byte_timeout=0.3), _deployment(second.url)]}
    for running in _gateway(tmp_path, [model]):
        first.script.append(Misbehave(delay=2.0))
        started = time.monotonic()
        reply = _client(running).chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].message.content == "echo: ping" and time.monotonic() - started < 1.8
        assert len(second.seen) == 1


def test_a_refused_connection_is_retried_elsewhere(tmp_path: Path, two: tuple[FakeProvider, FakeProvider]) -> None:
    _, second = two
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    model = {"name": "m", "deployments": [_deployment(dead), _deployment(second.url)]}
    for running in _gateway(tmp_path, [model]):
        assert _client(running).chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        assert "connection refused" in str(running.gateway.models.targets["m"][0].health.last_error)


def test_a_stream_that_breaks_off_ends_with_an_error_event(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider], caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    first, _ = two
    for running in _gateway(tmp_path, [{"name": "m", "deployments": [_deployment(first.url)]}]):
        first.script.append(Misbehave(break_after=2))
        stream = _client(running).chat.completions.create(model="m", messages=MESSAGES, stream=True)
        got = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                got.append(chunk)
        assert len(got) == 2 and "broke off" in str(caught.value)
        line = usage_lines(caplog)[-1]
        assert "status=502" in line and "estimated" in line  # no usage came: estimated, not zero
        assert " out=0 " not in line


def test_a_stream_that_goes_quiet_past_the_call_timeout_ends_with_an_error_event(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider], caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    first, _ = two
    cancelled = first.cancelled
    for running in _gateway(tmp_path, [{"name": "m", "deployments": [_deployment(first.url, timeout=1)]}]):
        first.script.append(Misbehave(hang=True))  # one event, then silence
        stream = _client(running).chat.completions.create(model="m", messages=MESSAGES, stream=True)
        got = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                got.append(chunk)
        assert len(got) == 1 and "did not finish within 1s" in str(caught.value)
        assert "status=502" in usage_lines(caplog)[-1]
        deadline = time.monotonic() + 10
        while first.cancelled == cancelled:  # the provider's request was given up, not left hanging
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_client_that_goes_away_cancels_the_provider_stream(
    tmp_path: Path, two: tuple[FakeProvider, FakeProvider]
) -> None:
    first, _ = two
    for running in _gateway(tmp_path, [{"name": "m", "deployments": [_deployment(first.url)]}]):
        first.script.append(Misbehave(hang=True))
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        headers = {"Authorization": f"Bearer {running.key}"}
        with httpx2.stream("POST", running.v1 + "/chat/completions", json=body, headers=headers) as answer:
            first_chunk = next(answer.iter_raw())
            assert b"chat.completion.chunk" in first_chunk
        deadline = time.monotonic() + 10
        while first.cancelled == 0:
            assert time.monotonic() < deadline, "the provider's stream was not cancelled"
            time.sleep(0.05)
        health = running.gateway.models.targets["m"][0].health
        while health.in_flight:
            assert time.monotonic() < deadline
            time.sleep(0.05)
