"""The leak scan on the LLM path: provider keys (vault secrets, the wrong ones that providers echo
back included) and callers' gateway keys, in every spelling the scanner knows, in no response,
stream event, error, log line (every logger, at DEBUG, tracebacks too), admin answer or CLI output.

The fake providers (tests/fake_llm.py) echo a wrong key in their 401s, and are scripted here to
quote the right one, percent-encoded, base64-encoded and JSON-escaped, in their 4xx and 5xx answers.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import anthropic
import httpx2
import openai

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.store.identities import Selector
from tests.conftest import ADMIN_TOKEN
from tests.fake_llm import FakeProvider, Misbehave
from tests.leaks import LogCapture, assert_not_leaked
from tests.servers import serve_in_thread
from tests.test_llm_registrations import eventually

OPENAI_KEY = "sk-proj-leakscan-openai-8f7e6d5c4b3a"
ANTHROPIC_KEY = "sk-ant-api03-leakscan-1a2b3c4d5e"
WRONG_OPENAI = "sk-wrong-openai-echoed-5a5a5a5a"
WRONG_ANTHROPIC = "sk-ant-wrong-echoed-6b6b6b6b"
BOGUS_CALLER = "mgw_abcdefabcdef_NotTheRightSecretAtAll0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Env:
    base: str
    gateway: Gateway
    data_dir: Path
    alice: str
    bob: str
    openai_fake: FakeProvider
    anthropic_fake: FakeProvider
    emitted: list[str] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)  # answers to requests whose provider quoted a key

    def keep(self, *texts: object) -> None:
        self.emitted += [t if isinstance(t, str) else repr(t) for t in texts]

    def openai(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base, api_key=key, max_retries=0)

    def cli(self, *args: str) -> None:
        environ = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(self.data_dir), "MCP_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
        out = subprocess.run(
            [sys.executable, "-m", "mcp_gateway.cli", *args], capture_output=True, text=True, env=environ, timeout=60
        )
        assert out.returncode in (0, 1), out.stderr  # `models test` fails on the wrong keys, by design
        self.keep(out.stdout, out.stderr)


@contextmanager
def running(tmp_path: Path, logs: list[str]) -> Iterator[Env]:
    """A gateway with two models whose keys are vault secrets, two consumers, and two fake providers;
    every log record of the run (until the servers stopped) goes to `logs`."""
    capture = LogCapture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    openai_fake, anthropic_fake = FakeProvider(OPENAI_KEY), FakeProvider(ANTHROPIC_KEY)
    try:
        with serve_in_thread(openai_fake.app()) as openai_url, serve_in_thread(anthropic_fake.app()) as anthropic_url:
            openai_fake.url, anthropic_fake.url = openai_url, anthropic_url
            gpt = {"provider": "openai", "model": "gpt-4o", "base_url": openai_url + "/v1", "api_key": "secret:oa"}
            claude = {"provider": "anthropic", "base_url": anthropic_url, "api_key": "secret:an"}
            config = GatewayConfig.model_validate(
                {
                    "data_dir": str(tmp_path),
                    "admin_token": ADMIN_TOKEN,
                    "log_level": "debug",
                    "auth": {"enabled": True},
                    "models_from_env": False,
                    "models": [
                        {"name": "gpt", "deployments": [gpt], "retries": 1},
                        {"name": "claude-test", "deployments": [claude]},
                    ],
                }
            )
            gateway = Gateway(config)
            for name, value in (("oa", OPENAI_KEY), ("an", ANTHROPIC_KEY), ("oa-wrong", WRONG_OPENAI),
                                ("an-wrong", WRONG_ANTHROPIC)):  # fmt: skip
                gateway.vault.put(name, value)
            store = gateway.identities
            for consumer in ("alice", "bob"):
                store.add_consumer(consumer)
                store.add_policy("consumer", consumer, "allow", Selector(models=("*",)), None)
            alice, bob = keys.issue(store, "alice")[1], keys.issue(store, "bob")[1]
            with serve_in_thread(gateway.http_app(), lifespan="on") as url:
                yield Env(url, gateway, tmp_path, alice, bob, openai_fake, anthropic_fake)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        logs += capture.lines


def _quoting(key: str) -> str:
    """A provider message quoting `key` in several spellings."""
    return (
        f"request had Authorization: Bearer {key}; url-encoded {quote(key, safe='')}; "
        f"base64 {base64.b64encode(key.encode()).decode()}; escaped {json.dumps(key, ensure_ascii=True)[1:-1]}"
    )


def _exercise(env: Env) -> None:
    """Successes, streams, every kind of failure, the admin API and the CLI; everything they said is kept."""
    gpt = env.openai(env.alice)
    env.keep(gpt.chat.completions.create(model="gpt", messages=HI).model_dump_json())
    chunks = gpt.chat.completions.create(model="gpt", messages=HI, stream=True, stream_options={"include_usage": True})
    env.keep(*(c.model_dump_json() for c in chunks))
    env.keep(gpt.responses.create(model="gpt", input="hi").model_dump_json())
    env.keep(gpt.embeddings.create(model="gpt", input="hi").model_dump_json())
    env.keep(*(m.model_dump_json() for m in gpt.models.list()))
    claude = env.anthropic(env.bob)
    env.keep(claude.messages.create(model="claude-test", max_tokens=5, messages=HI).model_dump_json())
    with claude.messages.stream(model="claude-test", max_tokens=5, messages=HI) as stream:
        env.keep(*(e.model_dump_json() for e in stream))
    env.keep(claude.messages.count_tokens(model="claude-test", messages=HI).model_dump_json())

    # Providers that quote their key: a 400 passed on, 500s until the retries run out, a stream breaking off.
    env.openai_fake.script.append(Misbehave(status=400, body={"error": {"message": _quoting(OPENAI_KEY)}}))
    env.openai_fake.script.extend([Misbehave(status=500, body={"error": {"message": _quoting(OPENAI_KEY)}})] * 2)
    overloaded_body = {"type": "error", "error": {"type": "overloaded_error", "message": _quoting(ANTHROPIC_KEY)}}
    env.anthropic_fake.script.extend([Misbehave(status=529, body=overloaded_body)] * 3)  # a try and 2 retries
    raw = httpx2.Client(base_url=env.base + "/v1", timeout=30)
    for _ in range(2):
        answer = raw.post("/chat/completions", json={"model": "gpt", "messages": HI}, headers={"api-key": env.alice})
        assert answer.status_code in (400, 502), answer.text
        env.keep(answer.text, answer.headers)
        env.quoted.append(answer.text)
    overloaded = raw.post("/messages", json={"model": "claude-test", "max_tokens": 5, "messages": HI},
                          headers={"x-api-key": env.bob, "anthropic-version": "2023-06-01"})  # fmt: skip
    assert overloaded.status_code == 529
    env.keep(overloaded.text)
    env.quoted.append(overloaded.text)
    env.openai_fake.script.append(Misbehave(break_after=2))
    with raw.stream("POST", "/chat/completions", json={"model": "gpt", "messages": HI, "stream": True},
                    headers={"Authorization": f"Bearer {env.alice}"}) as broken:  # fmt: skip
        env.keep(broken.read().decode())

    # Wrong provider keys, echoed by the providers' 401s: registered with the admin API and the CLI.
    wrong_gpt = {"provider": "openai", "base_url": env.openai_fake.url + "/v1", "api_key": "secret:oa-wrong"}
    made = httpx2.put(env.base + "/admin/models/wrong-gpt", json={"deployments": [wrong_gpt]}, headers=ADMIN)
    assert made.status_code == 201
    env.keep(made.text)
    env.cli("models", "add", "wrong-claude", "--provider", "anthropic", "--base-url", env.anthropic_fake.url,
            "--api-key-secret", "an-wrong")  # fmt: skip
    eventually(lambda: "wrong-claude" in httpx2.get(env.base + "/admin/models", headers=ADMIN).text)
    for path, body, headers in (
        ("/chat/completions", {"model": "wrong-gpt", "messages": HI}, {"Authorization": f"Bearer {env.alice}"}),
        ("/chat/completions", {"model": "wrong-gpt", "messages": HI, "stream": True}, {"api-key": env.alice}),
        ("/messages", {"model": "wrong-claude", "max_tokens": 5, "messages": HI}, {"x-api-key": env.bob}),
        (
            "/messages",
            {"model": "wrong-claude", "max_tokens": 5, "messages": HI, "stream": True},
            {"x-api-key": env.bob},
        ),
        ("/chat/completions", {"model": "gpt", "messages": HI}, {"Authorization": f"Bearer {BOGUS_CALLER}"}),
        ("/messages", {"model": "claude-test", "max_tokens": 5, "messages": HI}, {"x-api-key": BOGUS_CALLER}),
    ):
        answer = raw.post(path, json=body, headers=headers)
        assert answer.status_code == 401, answer.text
        if body["model"].startswith("wrong-"):  # the provider's own 401, which echoes the key
            env.quoted.append(answer.text)
        env.keep(answer.text, answer.headers)
    env.keep(raw.get("/models", headers={"Authorization": f"Bearer {BOGUS_CALLER}"}).text)

    # What operators see: the admin API (health with last errors, probes) and the CLI.
    admin = httpx2.Client(base_url=env.base + "/admin", headers=ADMIN, timeout=60)
    for path in ("/models", "/models/gpt", "/models/wrong-gpt", "/models/wrong-claude", "/secrets", "/keys"):
        env.keep(admin.get(path).text)
    for name in ("gpt", "wrong-gpt", "wrong-claude", "claude-test"):
        env.keep(admin.post(f"/models/{name}/test").text)
    env.keep(httpx2.get(env.base + "/admin/models", headers={"Authorization": f"Bearer {env.alice}"}).text)
    env.cli("models", "list")
    env.cli("models", "list", "--json")
    env.cli("models", "show", "wrong-gpt", "--json", "--url", env.base)
    env.cli("models", "list", "--url", env.base)
    env.cli("models", "test")
    env.cli("models", "test", "wrong-claude", "--json")
    env.cli("models", "remove", "wrong-claude")


def test_no_provider_or_caller_key_leaks_from_the_llm_path(tmp_path: Path) -> None:
    logs: list[str] = []
    with running(tmp_path, logs) as env:
        _exercise(env)
    # The providers' keys did reach the providers, and the scripted answers did quote them.
    assert any(s.headers.get("authorization") == f"Bearer {OPENAI_KEY}" for s in env.openai_fake.seen)
    assert any(s.headers.get("x-api-key") == WRONG_ANTHROPIC for s in env.anthropic_fake.seen)
    # Every logger was heard, at debug level: the usage lines and the HTTP clients' own.
    assert any(line.startswith("mcp_gateway.models INFO") for line in logs)
    assert any(line.startswith(("httpcore2", "httpx2")) and "DEBUG" in line for line in logs)
    callers = [env.alice, env.bob, BOGUS_CALLER, ADMIN_TOKEN]
    # Inbound credentials are never forwarded to a provider.
    sent = [json.dumps([s.headers, s.body]) for s in [*env.openai_fake.seen, *env.anthropic_fake.seen]]
    assert_not_leaked("\n".join(sent), callers)
    assert_not_leaked(
        "\n".join([*env.emitted, *logs]), [OPENAI_KEY, ANTHROPIC_KEY, WRONG_OPENAI, WRONG_ANTHROPIC, *callers]
    )
    # The scan had something to find: each provider's quote came back, scrubbed.
    assert len(env.quoted) == 7 and all("[REDACTED]" in text for text in env.quoted), env.quoted
