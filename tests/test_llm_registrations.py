"""Models registered at run time: the store, the CLI (`models add|list|show|remove|test`), the admin
API (`/admin/models`), running gateways picking changes up, health and in-flight calls surviving
them, and the environment's models stepping aside. Against fake providers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.config.base import PLAIN_HIDDEN
from mcp_gateway.config.models import ModelConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.llm.registrations import public_model, registration_problems
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import Selector
from mcp_gateway.store.models import ModelStore
from tests.conftest import ADMIN_TOKEN
from tests.fake_llm import FakeProvider
from tests.servers import serve_in_thread

PROVIDER_KEY = "sk-registered-provider-key-4c3b2a19"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider(PROVIDER_KEY)
    with serve_in_thread(provider.app()) as url:
        provider.url = url
        yield provider


def run_cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(data_dir), **env}
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args], capture_output=True, text=True, env=environ, timeout=60
    )


def eventually(check: Callable[[], bool], seconds: float = 8.0) -> None:
    """Wait for `check` (a running gateway picks store changes up within one 2 s poll)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the running gateway did not pick the change up"
        time.sleep(0.1)


def deployment(url: str, **extra: object) -> dict[str, object]:
    return {"provider": "openai", "base_url": url + "/v1", "api_key": "secret:provider-key", **extra}


class Gw:
    """A running gateway: its base URL, the Gateway, a consumer key allowed every model."""

    def __init__(self, base: str, gateway: Gateway, key: str) -> None:
        self.base, self.gateway, self.key = base, gateway, key

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=self.key, max_retries=0)

    def listed(self) -> set[str]:
        return {m.id for m in self.client().models.list()}

    def chat(self, model: str) -> str:
        reply = self.client().chat.completions.create(model=model, messages=MESSAGES)
        return reply.choices[0].message.content or ""

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.request(method, self.base + "/admin" + path, headers=ADMIN, timeout=30, **kwargs)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Gw]]:
    """Starts a gateway (auth on, admin token set) with the given config models and settings."""
    with ExitStack() as stack:

        def starting(models: list[dict[str, object]] | None = None, **config: object) -> Gw:
            settings = {"data_dir": str(tmp_path), "admin_token": ADMIN_TOKEN, "auth": {"enabled": True},
                        "models": models or [], "models_from_env": False, **config}  # fmt: skip
            gateway = Gateway(GatewayConfig.model_validate(settings))
            gateway.vault.put("provider-key", PROVIDER_KEY)
            gateway.identities.add_consumer("alice")
            gateway.identities.add_policy("consumer", "alice", "allow", Selector(models=("*",)), None)
            _, key = keys.issue(gateway.identities, "alice")
            url = stack.enter_context(serve_in_thread(gateway.http_app(), lifespan="on"))
            return Gw(url, gateway, key)

        yield starting


# -- rules ---------------------------------------------------------------------------------------------------


def test_registrations_name_vault_secrets_only_and_show_no_plain_key() -> None:
    def model(**fields: object) -> ModelConfig:
        return ModelConfig.model_validate({"name": "m", "deployments": [{"provider": "openai", **fields}]})

    assert registration_problems(model(api_key="secret:k")) == []
    assert registration_problems(model()) == []  # a local server without a key
    for bad in ("env:OPENAI_API_KEY", "sk-plain-text-key"):
        assert "must be a vault reference (secret:NAME)" in registration_problems(model(api_key=bad))[0]
    assert "looks like a credential" in registration_problems(model(headers={"Authorization": "Bearer x"}))[0]
    assert registration_problems(model(headers={"OpenAI-Organization": "org-1"})) == []
    shown = public_model(model(api_key="sk-plain-text-key", headers={"x-goog-api-key": "abc", "X-Team": "blue"}))
    assert shown["deployments"][0]["api_key"] == PLAIN_HIDDEN and "sk-plain" not in json.dumps(shown)
    assert shown["deployments"][0]["headers"] == {"x-goog-api-key": PLAIN_HIDDEN, "X-Team": "blue"}
    assert public_model(model(api_key="env:OPENAI_API_KEY"))["deployments"][0]["api_key"] == "env:OPENAI_API_KEY"


def test_the_store_keeps_registrations_and_bumps_its_revision(tmp_path: Path) -> None:
    store = ModelStore(Database(tmp_path / "gateway.db"))
    first = store.revision()
    model = ModelConfig.model_validate({"name": "m", "deployments": [{"provider": "openai"}], "retries": 4})
    assert store.put(model) is False and store.revision() == first + 1
    created = store.get("m")
    assert created is not None and created.config == model
    assert store.put(model.model_copy(update={"retries": 1})) is True
    replaced = store.get("m")
    assert replaced is not None and replaced.config.retries == 1 and replaced.created_at == created.created_at
    gone = store.delete("m")
    assert gone is not None and gone.config.retries == 1 and store.delete("m") is None and store.list() == []
    assert store.revision() >= first + 3  # (a delete of nothing may bump it too: a harmless reload)


# -- the CLI and a running gateway ----------------------------------------------------------------------------


def test_cli_registrations_reach_a_running_gateway(tmp_path: Path, fake: FakeProvider, start) -> None:
    gw = start([{"name": "from-config", "deployments": [deployment(fake.url)]}])
    added = run_cli(
        tmp_path, "models", "add", "reg", "--provider", "openai", "--model", "gpt-4o-mini",
        "--base-url", fake.url + "/v1", "--api-key-secret", "provider-key", "--retries", "1",
    )  # fmt: skip
    assert added.returncode == 0 and "registered model reg: openai/gpt-4o-mini" in added.stdout, added.stderr
    assert "warning" not in added.stdout  # the secret is in the vault
    eventually(lambda: "reg" in gw.listed())
    assert gw.chat("reg") == "echo: hello" and fake.seen[-1].body["model"] == "gpt-4o-mini"
    assert fake.seen[-1].headers["authorization"] == f"Bearer {PROVIDER_KEY}"

    again = run_cli(tmp_path, "models", "add", "reg", "--provider", "openai")
    assert again.returncode == 2 and "already registered (openai/gpt-4o-mini): add --replace" in again.stderr
    clash = run_cli(
        tmp_path, "models", "add", "from-config", "--provider", "openai", "--config", _config_file(tmp_path)
    )
    assert clash.returncode == 2 and "defined in the config file" in clash.stderr
    replaced = run_cli(
        tmp_path, "models", "add", "reg", "--replace", "--deployment",
        json.dumps(deployment(fake.url, model="gpt-4.1")),
    )  # fmt: skip
    assert replaced.returncode == 0 and "replaced model reg: openai/gpt-4.1" in replaced.stdout

    def serves_new_id() -> bool:
        gw.chat("reg")
        return fake.seen[-1].body["model"] == "gpt-4.1"

    eventually(serves_new_id)
    listed = run_cli(tmp_path, "models", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("reg "))
    assert "registered" in row and "openai/gpt-4.1" in row and row.rstrip().endswith("Z")  # an ISO time
    as_json = json.loads(run_cli(tmp_path, "models", "list", "--json").stdout)
    assert [m["name"] for m in as_json] == ["reg"] and isinstance(as_json[0]["created_at"], float)
    shown = run_cli(tmp_path, "models", "show", "reg")
    assert "origin:       registered" in shown.stdout and "gpt-4.1" in shown.stdout
    removed = run_cli(tmp_path, "models", "remove", "reg")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed model reg (openai/gpt-4.1)"
    eventually(lambda: "reg" not in gw.listed())
    missing = run_cli(tmp_path, "models", "remove", "reg")
    assert missing.returncode == 1 and "no registered model named 'reg'" in missing.stderr
    # Plain keys and env: references are refused, naming the field.
    plain = run_cli(
        tmp_path, "models", "add", "x", "--deployment", json.dumps({"provider": "openai", "api_key": "sk-x"})
    )
    assert plain.returncode == 2 and "deployments[0].api_key must be a vault reference" in plain.stderr
    assert "sk-x" not in plain.stderr


def _config_file(tmp_path: Path) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text("models:\n  - name: from-config\n    deployments: [{provider: openai}]\n")
    return str(path)


def test_a_registered_model_named_like_a_config_one_is_shadowed(tmp_path: Path, fake: FakeProvider, start) -> None:
    gw = start([{"name": "same", "deployments": [deployment(fake.url, model="config-id")]}])
    other = ModelConfig.model_validate({"name": "same", "deployments": [deployment(fake.url, model="stored-id")]})
    db = Database(tmp_path / "gateway.db")
    ModelStore(db).put(other)  # as another process would, past the CLI's check
    db.close()
    eventually(lambda: gw.admin("GET", "/models").json()["shadowed"] == ["same"])
    gw.chat("same")
    assert fake.seen[-1].body["model"] == "config-id"
    listed = gw.admin("GET", "/models").json()["models"]
    assert [(m["name"], m["origin"]) for m in listed] == [("same", "config")]


# -- the admin API ------------------------------------------------------------------------------------------------


def test_admin_models_api(fake: FakeProvider, start) -> None:
    gw = start([{"name": "cfg", "deployments": [deployment(fake.url)]}])
    body = {"name": "meta/llama-3", "deployments": [deployment(fake.url, model="llama")], "strategy": "least-busy"}
    created = gw.admin("POST", "/models", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["origin"] == "registered" and created.json()["config"]["strategy"] == "least-busy"
    assert gw.admin("POST", "/models", json=body).status_code == 409
    assert gw.chat("meta/llama-3") == "echo: hello"  # served at once by this gateway, no poll needed
    shown = gw.admin("GET", "/models/meta/llama-3").json()
    health = shown["deployments"][0]["health"]
    assert health["calls"] == 1 and health["errors"] == 0 and health["in_flight"] == 0
    assert health["latency_ms"] is not None and health["last_error"] is None
    assert shown["deployments"][0]["deployment"] == "openai/llama"
    replaced = gw.admin("PUT", "/models/meta/llama-3", json={"deployments": [deployment(fake.url, model="llama")]})
    assert replaced.status_code == 200 and replaced.json()["deployments"][0]["health"]["calls"] == 1  # kept
    listed = gw.admin("GET", "/models").json()
    assert [(m["name"], m["origin"]) for m in listed["models"]] == [("cfg", "config"), ("meta/llama-3", "registered")]

    refusals = [
        ("PUT", "/models/cfg", {"deployments": [deployment(fake.url)]}, 409, "defined in the config file"),
        ("DELETE", "/models/cfg", None, 409, "defined in the config file"),
        ("PUT", "/models/p", {"deployments": [{"provider": "openai", "api_key": "sk-plain-0987"}]}, 422,
         "deployments[0].api_key must be a vault reference"),
        ("PUT", "/models/p", {"deployments": [{"provider": "openai", "api_key": "env:HOME"}]}, 422, "vault reference"),
        ("PUT", "/models/p", {"deployments": [{"provider": "openai", "headers": {"Authorization": "Bearer z"}}]}, 422,
         "looks like a credential"),
        ("PUT", "/models/p", {"deployments": [{"provider": "nope"}]}, 422, "deployments.0.provider"),
        ("PUT", "/models/p", {"deployments": [], "bogus": 1}, 422, "bogus: unknown key"),
        ("PUT", "/models/p", {"name": "q", "deployments": [{"provider": "openai"}]}, 400, "differs from the name"),
        ("PUT", "/models/p", "[1]", 400, "must be a JSON object"),
        ("DELETE", "/models/nope", None, 404, "no model named 'nope'"),
        ("GET", "/models/nope", None, 404, "no model named 'nope'"),
    ]  # fmt: skip
    for method, path, payload, status, words in refusals:
        sent = {"content": payload} if isinstance(payload, str) else {"json": payload}
        answer = gw.admin(method, path, **sent)
        assert answer.status_code == status and words in answer.json()["error"], (path, payload, answer.text)
        assert "sk-plain-0987" not in answer.text
    no_token = httpx2.get(gw.base + "/admin/models")
    assert no_token.status_code == 401
    consumer = httpx2.get(gw.base + "/admin/models", headers={"Authorization": f"Bearer {gw.key}"})
    assert consumer.status_code == 403
    assert gw.admin("DELETE", "/models/meta/llama-3").status_code == 204
    assert "meta/llama-3" not in gw.listed()


def test_admin_and_cli_test_every_deployment(tmp_path: Path, fake: FakeProvider, start) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    gw = start()
    gw.gateway.vault.put("wrong-key", "sk-wrong-key-echoed-back-7766")
    body = {
        "deployments": [
            deployment(fake.url, model="gpt-4o"),
            {**deployment(fake.url), "api_key": "secret:wrong-key", "name": "wrong"},
            {**deployment(dead), "name": "down"},
        ]
    }
    assert gw.admin("PUT", "/models/probe-me", json=body).status_code == 201
    calls = len(fake.seen)
    answer = gw.admin("POST", "/models/probe-me/test").json()
    assert answer["ok"] is False
    by_name = {r["deployment"]: r for r in answer["results"]}
    ok, wrong, down = by_name["openai/gpt-4o"], by_name["wrong"], by_name["down"]
    assert ok["ok"] and ok["status"] == 200 and ok["latency_ms"] > 0
    probes = [seen.body for seen in fake.seen[calls:]]  # (sent at once: in any order)
    assert {"model": "gpt-4o", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]} in probes
    assert not wrong["ok"] and wrong["status"] == 401 and wrong["failure"] == "http"
    assert "Incorrect API key provided" in wrong["message"] and "sk-wrong-key" not in json.dumps(answer)
    assert not down["ok"] and down["status"] is None and down["failure"] == "refused"
    # The probe is not traffic: the router's health is untouched.
    assert all(d["health"]["calls"] == 0 for d in gw.admin("GET", "/models/probe-me").json()["deployments"])

    # The same test from the CLI, in its own process, with the vault's keys; exit status 1.
    out = run_cli(tmp_path, "models", "test", "probe-me")
    assert out.returncode == 1 and "2 of 3 deployments failed" in out.stderr
    lines = {line.split()[1]: line for line in out.stdout.splitlines()[1:]}
    assert " ok " in lines["openai/gpt-4o"] and "HTTP 200" in lines["openai/gpt-4o"] and " ms" in lines["openai/gpt-4o"]
    assert "failed" in lines["wrong"] and "HTTP 401" in lines["wrong"] and "sk-wrong" not in out.stdout
    assert "failed" in lines["down"] and "refused" in lines["down"]
    assert gw.admin("PUT", "/models/probe-me", json={"deployments": body["deployments"][:1]}).status_code == 200
    fine = run_cli(tmp_path, "models", "test", "--json")
    assert fine.returncode == 0 and [r["ok"] for r in json.loads(fine.stdout)] == [True]


def test_models_list_and_show_read_health_from_a_running_gateway(tmp_path: Path, fake: FakeProvider, start) -> None:
    gw = start([{"name": "cfg", "deployments": [deployment(fake.url)]}])
    gw.chat("cfg")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"admin_token: {ADMIN_TOKEN}\n")
    listed = run_cli(tmp_path, "models", "list", "--url", gw.base, "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:5] == ["MODEL", "ORIGIN", "DEPLOYMENT", "CALLS", "ERRORS"]
    assert row.split()[:5] == ["cfg", "config", "openai/cfg", "1", "0"] and " ms" in row
    shown = run_cli(tmp_path, "models", "show", "cfg", "--json", "--config", str(config), MCP_GATEWAY_URL=gw.base)
    assert json.loads(shown.stdout)["deployments"][0]["health"]["calls"] == 1
    # Without the gateway's URL: the configuration only (here, none: the config file has no models).
    assert "no models" in run_cli(tmp_path, "models", "list").stdout
    no_token = run_cli(tmp_path, "models", "list", "--url", gw.base)
    assert no_token.returncode == 2 and "admin token" in no_token.stderr


# -- changes while calls run ------------------------------------------------------------------------------------


class SlowStream:
    """An OpenAI-compatible provider whose streams wait for `release` before their last chunks."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.url = ""

    async def chat(self, request: Request) -> Response:
        import anyio

        async def events() -> AsyncIterator[bytes]:
            def chunk(text: str) -> bytes:
                data = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "slow",
                        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}  # fmt: skip
                return f"data: {json.dumps(data)}\n\n".encode()

            yield chunk("first ")
            while not self.release.is_set():
                await anyio.sleep(0.02)
            yield chunk("last")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])


def test_changes_keep_health_and_let_streams_in_flight_finish(tmp_path: Path, fake: FakeProvider, start) -> None:
    slow = SlowStream()
    with serve_in_thread(slow.app()) as slow_url:
        try:
            _change_while_streaming(slow, slow_url, fake, start)
        finally:
            slow.release.set()  # (a failed check must not leave the stream, and the servers, waiting)


def _change_while_streaming(slow: SlowStream, slow_url: str, fake: FakeProvider, start: Callable[..., Gw]) -> None:
    gw = start()
    router = gw.gateway.models
    assert gw.admin("PUT", "/models/steady", json={"deployments": [deployment(fake.url)]}).status_code == 201
    assert gw.admin("PUT", "/models/moving", json={"deployments": [deployment(slow_url)]}).status_code == 201
    gw.chat("steady")
    steady = router.targets["steady"][0]
    assert steady.health.calls == 1 and steady.provider is not None

    # A stream in flight on `moving`'s deployment...
    got: list[str] = []
    stream = gw.client().chat.completions.create(model="moving", messages=MESSAGES, stream=True)
    reader = threading.Thread(target=lambda: got.extend(c.choices[0].delta.content or "" for c in stream))
    reader.start()
    eventually(lambda: router.targets["moving"][0].health.in_flight == 1)
    old = router.targets["moving"][0]
    # ...while `moving` moves to another provider and `steady` gets another strategy (same deployment).
    assert gw.admin("PUT", "/models/moving", json={"deployments": [deployment(fake.url)]}).status_code == 200
    steady_body = {"deployments": [deployment(fake.url)], "strategy": "least-latency"}
    assert gw.admin("PUT", "/models/steady", json=steady_body).status_code == 200
    assert router.targets["steady"][0] is steady and steady.health.calls == 1 and steady.provider is not None
    assert router.targets["moving"][0] is not old and old.retired and old.provider is not None
    assert gw.chat("moving") == "echo: hello"  # new calls go to the new deployment at once
    time.sleep(2.5)  # a store poll passes: the stream still reads from the retired provider
    assert old.provider is not None and reader.is_alive()
    slow.release.set()
    reader.join(10)
    assert "".join(got) == "first last"  # not cut
    eventually(lambda: old.provider is None and old not in router._leaving)  # closed once it ended


def test_environment_models_serve_only_while_nothing_is_configured_or_registered(
    fake: FakeProvider, start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    gw = start(models_from_env=True)
    assert gw.chat("any-model") == "echo: hello"  # `*` from OPENAI_API_KEY
    assert [m["origin"] for m in gw.admin("GET", "/models").json()["models"]] == ["environment"]
    assert gw.admin("PUT", "/models/only", json={"deployments": [deployment(fake.url)]}).status_code == 201
    with pytest.raises(openai.NotFoundError):
        gw.chat("any-model")
    assert gw.chat("only") == "echo: hello"
    assert gw.admin("DELETE", "/models/only").status_code == 204
    assert gw.chat("any-model") == "echo: hello"
