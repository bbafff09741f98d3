"""The model front door with the official `openai` and `anthropic` SDKs, against fake providers on loopback."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.config.models import ModelConfig, models_from_environment
from mcp_gateway.gateway import Gateway
from mcp_gateway.store.identities import Selector
from tests.fake_llm import FakeProvider, Misbehave
from tests.servers import serve_in_thread

OPENAI_KEY = "sk-openai-upstream-secret-5f1e2d3c4b"
ANTHROPIC_KEY = "sk-ant-upstream-secret-9a8b7c6d5e"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider(OPENAI_KEY)
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider(ANTHROPIC_KEY)
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


@dataclass
class Running:
    url: str  # the gateway's base URL
    gateway: Gateway
    key: str  # alice's gateway key

    @property
    def v1(self) -> str:
        return self.url + "/v1"


def _models(openai_url: str, anthropic_url: str, **extra: object) -> list[dict[str, object]]:
    return [
        {
            "name": "gpt-test",
            "deployments": [
                {
                    "provider": "openai",
                    "model": "gpt-4o",
                    "base_url": openai_url + "/v1",
                    "api_key": "secret:openai-key",
                }
            ],
        },
        {
            "name": "claude-test",
            "deployments": [
                {
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "base_url": anthropic_url,
                    "api_key": "secret:anthropic-key",
                }
            ],
        },
        {
            "name": "secret-model",
            "deployments": [{"provider": "openai", "base_url": openai_url + "/v1", "api_key": "secret:openai-key"}],
        },
        *extra.get("more", []),  # type: ignore[misc]
    ]


@pytest.fixture
def running(tmp_path: Path, openai_fake: FakeProvider, anthropic_fake: FakeProvider) -> Iterator[Running]:
    yield from _start(tmp_path, _models(openai_fake.url, anthropic_fake.url))


def _start(tmp_path: Path, models: list[dict[str, object]], auth: bool = True, **more: object) -> Iterator[Running]:
    """A gateway serving `models` (and `more` config) with alice's key; `more` e.g. `limits=...`."""
    config = GatewayConfig.model_validate(
        {"data_dir": str(tmp_path / "data"), "auth": {"enabled": auth}, "models": models, "models_from_env": False}
        | more
    )
    gateway = Gateway(config)
    gateway.vault.put("openai-key", OPENAI_KEY)
    gateway.vault.put("anthropic-key", ANTHROPIC_KEY)
    store = gateway.identities
    store.add_consumer("alice", "payments", "acme")
    _, key = keys.issue(store, "alice")
    # alice may use every model but `secret-model`.
    store.add_policy("consumer", "alice", "allow", Selector(models=("*",)), None)
    store.add_policy("consumer", "alice", "deny", Selector(models=("secret-*",)), None)
    with serve_in_thread(gateway.http_app(), lifespan="on") as url:
        yield Running(url, gateway, key)


def usage_lines(caplog: pytest.LogCaptureFixture, at_least: int = 1) -> list[str]:
    """The model calls' log lines, once there are `at_least`: a stream's line is written when the
    provider's stream has ended, which may be just after the client read its last event."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            m for r in caplog.records if r.name == "mcp_gateway.models" and (m := r.getMessage()).startswith("model=")
        ]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


# -- OpenAI front door --------------------------------------------------------------------------------------


def test_openai_sdk_chat_with_the_gateway_key_only(running: Running, openai_fake: FakeProvider, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = openai.OpenAI(base_url=running.v1, api_key=running.key)
    reply = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.usage is not None and reply.usage.prompt_tokens == 11
    seen = openai_fake.seen[-1]
    # The provider got its own key and the model id of the deployment; never the caller's key.
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}" and seen.body["model"] == "gpt-4o"
    assert running.key not in json.dumps(seen.headers) + json.dumps(seen.body)
    line = usage_lines(caplog)[0]
    assert "model=gpt-test" in line and "consumer=alice" in line and "in=11 out=7 cache_read=3" in line
    assert "reasoning=2" in line and "cost=" in line and "cost=-" not in line  # gpt-4o is priced


def test_the_provider_request_carries_no_client_defaults_and_nothing_is_kept_or_followed(
    running: Running, openai_fake: FakeProvider
) -> None:
    """The HTTP client adds no Accept/Accept-Encoding (a compressed answer would dodge the size
    cap), keeps no cookie a provider sets (it would ride along on every consumer's calls), and
    follows no redirect (credentials must not travel)."""
    headers = {"Authorization": f"Bearer {running.key}"}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o", "choices": []}
    openai_fake.script.append(Misbehave(status=200, headers={"Set-Cookie": "session=s3cr3t; Path=/"}, body=answer))
    assert httpx2.post(running.v1 + "/chat/completions", json=body, headers=headers).status_code == 200
    assert httpx2.post(running.v1 + "/chat/completions", json=body, headers=headers).status_code == 200
    sent = openai_fake.seen[-1].headers
    assert "cookie" not in sent and "accept-encoding" not in sent and "accept" not in sent
    assert sent["user-agent"].startswith("mcp-gateway")
    before = len(openai_fake.seen)
    moved = openai_fake.url + "/v1/chat/completions"  # the same endpoint: a follower would call it again
    openai_fake.script.append(Misbehave(status=307, headers={"Location": moved}, body={"error": {"message": "moved"}}))
    httpx2.post(running.v1 + "/chat/completions", json=body, headers=headers)
    assert len(openai_fake.seen) == before + 1  # answered as it came, not followed


def test_streams_ask_for_usage_and_drop_the_extra_chunk(running: Running, openai_fake: FakeProvider, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = openai.OpenAI(base_url=running.v1, api_key=running.key)
    messages = [{"role": "user", "content": "one two three"}]
    chunks = list(client.chat.completions.create(model="gpt-test", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three "
    assert all(c.choices for c in chunks), "the usage chunk the client did not ask for was passed on"
    assert openai_fake.seen[-1].body["stream_options"] == {"include_usage": True}
    line = usage_lines(caplog)[-1]
    assert "in=11 out=7" in line and "stream=True" in line and "estimated" not in line
    # Asked for, it is delivered.
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_embeddings_and_responses(running: Running) -> None:
    client = openai.OpenAI(base_url=running.v1, api_key=running.key)
    vectors = client.embeddings.create(model="gpt-test", input=["a", "b"])  # the SDK asks for base64
    assert [d.embedding for d in vectors.data] == [[0.25, -0.5, 1.0]] * 2
    answer = client.responses.create(model="gpt-test", input="say hi")
    assert answer.output_text == "echo: say hi"
    with client.responses.stream(model="gpt-test", input="stream me") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "echo: stream me " and final.usage is not None and final.usage.output_tokens == 4


def test_models_lists_what_the_caller_may_use(running: Running, openai_fake: FakeProvider) -> None:
    client = openai.OpenAI(base_url=running.v1, api_key=running.key)
    assert sorted(m.id for m in client.models.list()) == ["claude-test", "gpt-test"]
    assert client.models.retrieve("gpt-test").id == "gpt-test"
    before = len(openai_fake.seen)
    for name in ("secret-model", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}])
        assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
        assert f"`{name}` does not exist or you do not have access to it" in caught.value.body["message"]  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(name)
    assert len(openai_fake.seen) == before  # no provider call for either


def test_the_doors_answer_their_paths_only_and_only_their_methods(running: Running) -> None:
    auth = {"Authorization": f"Bearer {running.key}"}
    wrong = httpx2.get(running.v1 + "/chat/completions", headers=auth)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert httpx2.post(running.v1 + "/models", headers=auth).status_code == 405
    assert httpx2.post(running.v1 + "/models/gpt-test", headers=auth).status_code == 405
    assert httpx2.head(running.v1 + "/models", headers=auth).status_code == 200
    assert httpx2.post(running.v1 + "/nothing-here", headers=auth).status_code == 404
    assert httpx2.get(running.v1 + "/models/secret-model", headers=auth).status_code == 404
    # The Host guard stands in front of the doors as of every other route.
    foreign = httpx2.post(running.v1 + "/chat/completions", headers={**auth, "Origin": "https://evil.example"})
    assert foreign.status_code == 403


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "api-key"])
def test_every_usual_credential_header_is_accepted(running: Running, header: str) -> None:
    value = f"Bearer {running.key}" if header == "authorization" else running.key
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx2.post(running.v1 + "/chat/completions", json=body, headers={header: value})
    assert answer.status_code == 200, answer.text


def test_errors_come_in_the_doors_own_shape(running: Running, openai_fake: FakeProvider) -> None:
    url = running.v1
    auth = {"Authorization": f"Bearer {running.key}"}
    none = httpx2.post(url + "/chat/completions", json={"model": "gpt-test", "messages": []})
    assert none.status_code == 401 and none.json()["error"]["type"] == "authentication_error"
    wrong = httpx2.post(url + "/messages", json={}, headers={"x-api-key": "mgw_nope_nope"})
    assert wrong.status_code == 401 and wrong.json()["type"] == "error"
    assert wrong.json()["error"]["type"] == "authentication_error"
    bad = httpx2.post(url + "/chat/completions", content=b"{nope", headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "the request body is not valid JSON"
    missing = httpx2.post(url + "/chat/completions", json={"model": "gpt-test"}, headers=auth)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    no_max = httpx2.post(url + "/messages", json={"model": "claude-test", "messages": []}, headers=auth)
    assert no_max.status_code == 400 and no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]
    # A provider's 4xx is passed on with its message and status.
    openai_fake.script.append(
        Misbehave(
            status=400,
            body={
                "error": {
                    "message": "temperature must be <= 2",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": None,
                }
            },
        )
    )
    refused = httpx2.post(
        url + "/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
        headers=auth,
    )
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "temperature must be <= 2"


def test_a_provider_echoing_its_key_has_it_scrubbed(
    tmp_path: Path, openai_fake: FakeProvider, anthropic_fake: FakeProvider, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    models = _models(openai_fake.url, anthropic_fake.url)
    for running in _start(tmp_path, models):
        running.gateway.vault.put("openai-key", "sk-wrong-key-that-gets-echoed-77")
        running.gateway.vault.put("anthropic-key", "sk-ant-wrong-key-echoed-88")
        import anyio

        anyio.run(running.gateway.refresh_credentials)
        for path, body, headers in (
            ("/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}, {}),
            (
                "/messages",
                {"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                {"anthropic-version": "2023-06-01"},
            ),
        ):
            answer = httpx2.post(
                running.v1 + path, json=body, headers={"Authorization": f"Bearer {running.key}", **headers}
            )
            assert answer.status_code == 401
            assert "wrong-key" not in answer.text and "Incorrect API key provided" in answer.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-key" not in logged and OPENAI_KEY not in logged and ANTHROPIC_KEY not in logged


# -- Anthropic front door ----------------------------------------------------------------------------------


def test_anthropic_sdk_messages_streams_and_count_tokens(
    running: Running, anthropic_fake: FakeProvider, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = anthropic.Anthropic(base_url=running.url, api_key=running.key)
    message = client.messages.create(
        model="claude-test",
        max_tokens=50,
        messages=[{"role": "user", "content": "bonjour"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert message.content[0].text == "echo: bonjour"  # type: ignore[union-attr]
    seen = anthropic_fake.seen[-1]
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY and seen.body["model"] == "claude-sonnet-4-5"
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31" and seen.headers["anthropic-version"]
    assert running.key not in json.dumps(seen.headers)
    with client.messages.stream(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "un deux"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: un deux " and final.usage.output_tokens == 6
    lines = usage_lines(caplog, 2)
    # Anthropic's input_tokens leave out cache reads and writes; the record counts every prompt token.
    assert "in=18 out=6 cache_read=4 cache_write=2" in lines[-1] and "stream=True" in lines[-1]
    counted = client.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "count me"}])
    assert counted.input_tokens > 0
    listed = client.models.list()
    assert sorted(m.id for m in listed) == ["claude-test", "gpt-test"]


def test_a_door_that_cannot_reach_a_model_says_so(running: Running) -> None:
    client = openai.OpenAI(base_url=running.v1, api_key=running.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:  # Anthropic has no embeddings
        client.embeddings.create(model="claude-test", input="x")
    assert "cannot be translated" in str(caught.value)


# -- configuration --------------------------------------------------------------------------------------------


def test_provider_keys_in_the_environment_serve_models() -> None:
    env = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-y", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    models = models_from_environment(env)
    assert [(m.name, m.deployments[0].provider, m.deployments[0].api_key) for m in models] == [
        ("claude-*", "anthropic", "env:ANTHROPIC_API_KEY"),
        ("*", "openai", "env:OPENAI_API_KEY"),
    ]
    assert models[1].deployments[0].base_url == "http://127.0.0.1:1/v1"
    assert models_from_environment({}) == []


def test_model_names_may_be_globs() -> None:
    glob = ModelConfig.model_validate({"name": "claude-*", "deployments": [{"provider": "anthropic"}]})
    assert glob.matches("claude-opus-4") and not glob.matches("gpt-4o")
    assert glob.deployments[0].model_for("claude-opus-4") == "claude-opus-4"


def test_an_error_event_in_a_stream_is_scrubbed_of_the_provider_key(
    running: Running, openai_fake: FakeProvider, anthropic_fake: FakeProvider
) -> None:
    """A provider that reports a failure mid-stream may quote its request: the key goes."""
    openai_fake.script.append(
        Misbehave(error_event=b'data: {"error": {"message": "trouble with key {key}", "type": "server_error"}}\n\n')
    )
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "a b c"}], "stream": True}
    headers = {"Authorization": f"Bearer {running.key}"}
    answer = httpx2.post(running.v1 + "/chat/completions", json=body, headers=headers)
    assert "trouble with key [REDACTED]" in answer.text and OPENAI_KEY not in answer.text
    anthropic_fake.script.append(
        Misbehave(
            error_event=b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
            b'"message": "key {key} overloaded"}}\n\n'
        )
    )
    body = {"model": "claude-test", "max_tokens": 9, "messages": [{"role": "user", "content": "a"}], "stream": True}
    answer = httpx2.post(running.v1 + "/messages", json=body, headers={**headers, "anthropic-version": "2023-06-01"})
    assert "key [REDACTED] overloaded" in answer.text and ANTHROPIC_KEY not in answer.text
    assert "event: error" in answer.text


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_reflecting_its_key_in_an_answer_has_it_scrubbed(
    running: Running, openai_fake: FakeProvider, stream: bool
) -> None:
    openai_fake.script.append(Misbehave(reflect_key=True))
    client = openai.OpenAI(base_url=running.v1, api_key=running.key)
    reply = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=stream)
    text = (
        "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
        if stream
        else (
            reply.choices[0].message.content  # type: ignore[union-attr]
        )
    )
    assert OPENAI_KEY not in text and "[REDACTED]" in text
