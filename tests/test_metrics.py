"""`GET /metrics` after real calls: tool calls through the real MCP client to the echo upstream,
model calls through the /v1 doors to a fake provider; who may read it; what a caller cannot
put into a label; a bad `metrics:` value stops the config with one line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from mcp_gateway.auth import keys
from mcp_gateway.config import ApiConfig, ConfigError, GatewayConfig, load_config
from mcp_gateway.gateway import Gateway
from mcp_gateway.store.identities import Selector
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, GatewayFactory, running_gateway
from tests.fake_llm import FakeProvider, Misbehave
from tests.servers import free_port
from tests.test_access import auth_config, key_client
from tests.test_llm import Running, _models, _start, anthropic_fake, openai_fake  # noqa: F401 (fixtures)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str, token: str | None = ADMIN_TOKEN) -> Samples:
    """Every sample of `/metrics`, by name and labels."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx2.get(f"{base}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def label_values(samples: Samples, label: str) -> set[str]:
    return {v for (_, ls), _ in samples.items() for k, v in ls if k == label}


def base_of(mcp_url: str) -> str:
    return mcp_url.removesuffix("/mcp")


@pytest.mark.anyio
async def test_tool_calls_are_counted_by_api_tool_and_status(gateway_factory: GatewayFactory) -> None:
    with gateway_factory() as (url, _):
        async with Client(url) as client:
            for n in range(3):
                assert not (await client.call_tool("getItem", {"id": f"i{n}"})).is_error
            assert (await client.call_tool("getItem", {"limit": "not a number"})).is_error  # invalid: never sent
            with pytest.raises(MCPError):
                await client.call_tool("noSuchTool-from-a-caller", {"id": "x"})
        samples = scrape(base_of(url))
    assert value(samples, "mcp_gateway_tool_calls_total", api="echo", tool="getItem", status="2xx") == 3
    assert value(samples, "mcp_gateway_tool_calls_total", api="echo", tool="getItem", status="none") == 1
    assert value(samples, "mcp_gateway_tool_call_duration_seconds_count", api="echo") == 4
    # A caller's unknown tool name made no series; no consumer label unless switched on.
    assert label_values(samples, "tool") == {"getItem"}
    assert "consumer" not in {k for (_, ls) in samples for k, _ in ls}
    # The front door saw each MCP request (initialize, list, calls...) and timed it.
    assert value(samples, "mcp_gateway_http_requests_total", door="mcp", method="POST", status="2xx") >= 5
    assert value(samples, "mcp_gateway_http_request_duration_seconds_count", door="mcp") >= 5
    assert value(samples, "mcp_gateway_ledger_queue_depth") >= 0


@pytest.mark.anyio
async def test_an_unreachable_upstream_counts_as_an_upstream_error_by_kind(tmp_path: Path) -> None:
    with echo_gateway(tmp_path, f"http://127.0.0.1:{free_port()}/api") as (url, _):
        async with Client(url) as client:
            assert (await client.call_tool("getItem", {"id": "x"})).is_error
        samples = scrape(base_of(url))
    assert value(samples, "mcp_gateway_upstream_errors_total", door="mcp", kind="refused") == 1
    assert value(samples, "mcp_gateway_tool_calls_total", tool="getItem", status="none") == 1


def echo_gateway(tmp_path: Path, base_url: str, **overrides: object) -> AbstractContextManager[tuple[str, Gateway]]:
    """A gateway over the echo API at `base_url` (admin token set unless overridden)."""
    api = ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=base_url)
    settings = {"data_dir": tmp_path / "data", "apis": [api], "admin_token": ADMIN_TOKEN, **overrides}
    return running_gateway(GatewayConfig.model_validate(settings))


def test_metrics_need_the_admin_token_unless_public(tmp_path: Path, upstream: str) -> None:
    with echo_gateway(tmp_path, upstream) as (url, _):
        base = base_of(url)
        refused = httpx2.get(f"{base}/metrics")
        assert refused.status_code == 401 and "mcp_gateway" not in refused.text
        wrong = httpx2.get(f"{base}/metrics", headers={"Authorization": "Bearer not-the-admin-token"})
        assert wrong.status_code == 401
        assert value(scrape(base), "mcp_gateway_http_requests_total", door="other", status="4xx") == 2
    with echo_gateway(tmp_path, upstream, metrics={"public": True}) as (url, _):
        assert "mcp_gateway_tool_calls_total" in httpx2.get(f"{base_of(url)}/metrics").text
    # No admin token and not public: not served at all (as /admin).
    with echo_gateway(tmp_path, upstream, admin_token=None) as (url, _):
        assert httpx2.get(f"{base_of(url)}/metrics", headers={"Authorization": "Bearer x"}).status_code == 404
    with echo_gateway(tmp_path, upstream, metrics={"enabled": False, "public": True}) as (url, _):
        assert httpx2.get(f"{base_of(url)}/metrics").status_code == 404


@pytest.mark.anyio
async def test_consumer_labels_when_switched_on(tmp_path: Path, upstream: str) -> None:
    settings = auth_config(tmp_path / "data", upstream).model_dump()
    config = GatewayConfig.model_validate({**settings, "metrics": {"consumer_labels": True}})
    with running_gateway(config) as (url, gateway):
        gateway.identities.add_consumer("alice", "payments", "acme")
        _, key = keys.issue(gateway.identities, "alice")
        gateway.identities.add_policy("consumer", "alice", "allow", Selector(apis=("echo",)), None)
        await gateway.access.reload()
        async with key_client(url, key) as client:
            assert not (await client.call_tool("getItem", {"id": "x"})).is_error
        samples = scrape(base_of(url))
    assert value(samples, "mcp_gateway_tool_calls_total", tool="getItem", consumer="alice") == 1


@pytest.fixture
def limited(tmp_path: Path, openai_fake: FakeProvider, anthropic_fake: FakeProvider) -> Iterator[Running]:  # noqa: F811
    fallback = {
        "name": "flaky",
        "retries": 1,
        "fallbacks": ["gpt-test"],
        "deployments": [{"provider": "openai", "model": "gpt-4o-mini", "base_url": openai_fake.url + "/v1",
                         "api_key": "secret:openai-key"}],
    }  # fmt: skip
    yield from _start(
        tmp_path,
        _models(openai_fake.url, anthropic_fake.url, more=[fallback]),
        metrics={"public": True},
        limits={"rules": [{"name": "two-claude", "scope": "consumer", "match": {"model": "claude-*"},
                           "requests_per_minute": 2}]},
        budgets=[{"name": "monthly", "scope": "consumer", "usd": 100, "period": "month"}],
    )  # fmt: skip


def test_model_calls_tokens_cost_retries_fallbacks_and_refusals(limited: Running, openai_fake: FakeProvider) -> None:  # noqa: F811
    headers = {"Authorization": f"Bearer {limited.key}"}
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}]}
    totals = {"prompt_tokens": 0, "completion_tokens": 0}
    with httpx2.Client(base_url=limited.v1, headers=headers, timeout=30) as http:
        for _ in range(2):
            answer = http.post("/chat/completions", json=chat)
            assert answer.status_code == 200, answer.text
            for name in totals:
                totals[name] += answer.json()["usage"][name]
        with http.stream("POST", "/chat/completions", json={**chat, "stream": True}) as stream:
            assert stream.status_code == 200
            streamed = "".join(stream.iter_text())
        assert "[DONE]" in streamed
        # `flaky` fails twice with 503 (first try, one retry), then falls back to gpt-test.
        openai_fake.script.extend([Misbehave(status=503), Misbehave(status=503)])
        answer = http.post("/chat/completions", json={**chat, "model": "flaky"})
        assert answer.status_code == 200, answer.text
        claude = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        statuses = [http.post("/messages", json=claude).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    deadline = time.monotonic() + 5  # a stream's record is made as its last event goes out
    while True:
        samples = scrape(limited.url, None)
        done = value(samples, "mcp_gateway_llm_calls_total", model="gpt-test", status="2xx")
        if done >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert done == 3  # two plain calls and the stream
    # A record names the model the client asked for: the fallback's answer too.
    assert value(samples, "mcp_gateway_llm_calls_total", model="flaky", provider="openai", status="5xx") == 2
    assert value(samples, "mcp_gateway_llm_calls_total", model="flaky", provider="openai", status="2xx") == 1
    assert value(samples, "mcp_gateway_llm_calls_total", model="claude-test", provider="anthropic") == 2
    assert value(samples, "mcp_gateway_llm_retries_total", model="flaky", reason="overloaded") == 1
    assert value(samples, "mcp_gateway_llm_fallbacks_total", model="flaky", to="gpt-test") == 1
    assert value(samples, "mcp_gateway_upstream_errors_total", door="llm", kind="http_5xx") == 2
    assert value(samples, "mcp_gateway_refusals_total", by="limit", why="exceeded", rule="two-claude",
                 kind="model") == 1  # fmt: skip
    # Tokens: the two plain calls' as the provider reported them, and more from the rest.
    tokens_in = value(samples, "mcp_gateway_llm_tokens_total", model="gpt-test", type="input")
    tokens_out = value(samples, "mcp_gateway_llm_tokens_total", model="gpt-test", type="output")
    # (the stream's tokens are counted too)
    assert tokens_in > totals["prompt_tokens"] > 0 and tokens_out > totals["completion_tokens"] > 0
    assert value(samples, "mcp_gateway_llm_time_to_first_token_seconds_count", model="gpt-test") == 3
    assert value(samples, "mcp_gateway_llm_call_duration_seconds_count", model="gpt-test") == 3
    # gpt-4o has a known price: the cost counted equals the spend settled on the budget.
    cost = value(samples, "mcp_gateway_llm_cost_usd_total")
    assert cost > 0
    assert value(samples, "mcp_gateway_budget_spent_usd_total", budget="monthly", scope="consumer") == pytest.approx(
        cost
    )
    assert value(samples, "mcp_gateway_http_requests_total", door="llm", status="4xx") == 1
    assert label_values(samples, "model") == {"gpt-test", "flaky", "claude-test"}


def test_a_bad_metrics_value_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"metrics": {"public": "maybe"}, "log_format": "xml"}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message
    assert "metrics.public" in message and "log_format" in message
    path.write_text(yaml.safe_dump({"metrics": {"consumer_label": True}}))
    with pytest.raises(ConfigError, match=r"metrics\.consumer_label: unknown key \(did you mean 'consumer_labels'"):
        load_config(path)
