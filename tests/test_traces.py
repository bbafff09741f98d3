"""Traces with the SDK's in-memory exporter: a real gateway over loopback, a real MCP client and
the fake model provider; span names, kinds, parent links and attributes as the GenAI and MCP
semantic conventions name them, the caller's trace kept end to end (the upstream and the
provider get a `traceparent` naming the gateway's client span), the trace id on the access
line, and no secret on any span even with content capture on."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import trace
from opentelemetry.context import attach, detach
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from mcp_gateway.auth import keys
from mcp_gateway.config import ConfigError, GatewayConfig, TracesConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.observe.traces import setup_traces
from mcp_gateway.store.identities import Selector
from tests.conftest import ECHO_SPEC, running_gateway
from tests.fake_llm import FakeProvider
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
PROVIDER_KEY = "sk-provider-vault-secret-5e0c2a"
ARGUMENT = "arg-words-31c9d0"
PROMPT = "prompt-words-8b17e4"

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans the process makes, in memory. The SDK provider is installed once per process
    (OpenTelemetry allows one); the gateway's setup finds it and uses it as it is."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        provider._test_exporter = True  # type: ignore[attr-defined]
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def traced_config(tmp_path: Path, upstream: str, **more: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "models_from_env": False,
            "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
            "traces": {"enabled": True, **more.pop("traces", {})},
            **more,
        }
    )


def client_with(url: str, headers: dict[str, str]) -> Client:
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode="legacy")


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def parent_of(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


async def test_a_tool_call_continues_the_callers_trace_to_the_upstream(
    tmp_path: Path, upstream: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """The MCP client (in the caller's trace) sends its own span in `_meta`; the SDK continues it."""
    caplog.set_level(logging.INFO, logger="mcp_gateway.calls")
    with running_gateway(traced_config(tmp_path, upstream)) as (url, gateway):
        assert gateway.traces is not None
        token = attach(extract({"traceparent": TRACEPARENT}))
        try:
            async with Client(url, mode="legacy") as client:
                result = await client.call_tool("getItem", {"id": "42"})
        finally:
            detach(token)
    assert not result.is_error
    echo = json.loads(result.content[0].text)
    finished = spans.get_finished_spans()
    sent = named(finished, "MCP send tools/call getItem")  # the client's span, in the caller's trace
    call = named(finished, "tools/call getItem")  # the gateway's MCP SDK span
    http = named(finished, "GET /items/{id}")  # the gateway's: the upstream request
    assert call.kind == SpanKind.SERVER and http.kind == SpanKind.CLIENT
    assert ids(sent)[0] == TRACE_ID and parent_of(sent) == CALLER_SPAN
    assert ids(call)[0] == TRACE_ID and parent_of(call) == ids(sent)[1]
    assert ids(http)[0] == TRACE_ID and parent_of(http) == ids(call)[1]
    attributes = dict(call.attributes or {})
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "getItem"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["mcp.protocol.version"]
    assert attributes["mcp_gateway.api"] == "echo"
    assert "gen_ai.tool.call.arguments" not in attributes  # capture is off
    http_attributes = dict(http.attributes or {})
    assert http_attributes["http.request.method"] == "GET"
    assert http_attributes["http.response.status_code"] == 200
    assert http_attributes["server.address"] == "127.0.0.1"
    assert http_attributes["url.template"] == "/items/{id}"
    # The upstream got the trace, its parent the gateway's client span.
    _, trace_id, parent, _ = echo["headers"]["traceparent"].split("-")
    assert (trace_id, parent) == ids(http)
    # The access line (and so the ledger's record) carries the trace id.
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.calls"]
    assert len(lines) == 1 and f"trace_id={TRACE_ID}" in lines[0]


async def test_a_traceparent_header_is_continued(
    tmp_path: Path, upstream: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller that sends the W3C header only (no `_meta`): the gateway's request span continues it."""
    caplog.set_level(logging.INFO, logger="mcp_gateway.calls")
    with running_gateway(traced_config(tmp_path, upstream)) as (url, _):
        echo = await raw_call(url, {"traceparent": TRACEPARENT})
    finished = spans.get_finished_spans()
    call = named(finished, "tools/call getItem")
    http = named(finished, "GET /items/{id}")
    assert ids(call)[0] == TRACE_ID and parent_of(call) == CALLER_SPAN
    assert parent_of(http) == ids(call)[1]
    assert echo["headers"]["traceparent"].split("-")[1:3] == list(ids(http))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.calls"]
    assert f"trace_id={TRACE_ID}" in line


async def raw_call(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """One JSON-RPC tools/call getItem over plain HTTP (nothing in `_meta`); the echo's JSON."""
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "getItem", "arguments": {"id": "1"}},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": "2025-11-25",
        **headers,
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(url, json=payload, headers=headers)
    data = next(line[5:] for line in response.text.splitlines() if line.startswith("data:"))
    return json.loads(json.loads(data)["result"]["content"][0]["text"])


async def test_a_traced_call_without_a_traceparent_gets_its_own_trace(
    tmp_path: Path, upstream: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.calls")
    with running_gateway(traced_config(tmp_path, upstream)) as (url, _):
        await raw_call(url, {})
    call = named(spans.get_finished_spans(), "tools/call getItem")
    trace_id, _ = ids(call)
    assert call.parent is None and trace_id != TRACE_ID
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.calls"]
    assert f"trace_id={trace_id}" in line


def check_chat_attributes(attributes: Mapping[str, Any]) -> None:
    """The GenAI attributes of a served `chat gpt-test` call (the fake's gpt-4o behind it)."""
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-test"
    assert attributes["gen_ai.response.model"] == "gpt-4o"
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.usage.cache_read.input_tokens" in attributes
    assert attributes["http.response.status_code"] == 200


async def _chat(base: str, body: dict[str, Any], headers: dict[str, str]) -> httpx2.Response:
    return await anyio.to_thread.run_sync(
        lambda: httpx2.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chat_call_is_a_genai_span_with_a_child_per_provider_request(
    tmp_path: Path, upstream: str, spans: InMemorySpanExporter, stream: bool
) -> None:
    fake = FakeProvider()
    with serve_in_thread(fake.app()) as provider:
        deployment = {"provider": "openai", "model": "gpt-4o", "base_url": f"{provider}/v1", "api_key": fake.key}
        models = [{"name": "gpt-test", "deployments": [deployment], "retries": 1}]
        config = traced_config(tmp_path, upstream, models=models)
        with running_gateway(config) as (url, _):
            base = url.removesuffix("/mcp")
            # The first attempt meets a 503: retried, in the same call's span.
            from tests.fake_llm import Misbehave

            fake.script.append(Misbehave(status=503))
            chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            answer = await _chat(base, chat, {"traceparent": TRACEPARENT})
            assert answer.status_code == 200, answer.text
    finished = spans.get_finished_spans()
    call = named(finished, "chat gpt-test")
    attempts = sorted([s for s in finished if s.name == "POST"], key=lambda s: s.start_time or 0)
    assert call.kind == SpanKind.SERVER and ids(call)[0] == TRACE_ID and parent_of(call) == CALLER_SPAN
    assert len(attempts) == 2 and all(a.kind == SpanKind.CLIENT for a in attempts)
    assert all(parent_of(a) == ids(call)[1] and ids(a)[0] == TRACE_ID for a in attempts)
    failed, served = (dict(a.attributes or {}) for a in attempts)
    assert failed["http.response.status_code"] == 503 and failed["error.type"] == "503"
    assert served["http.response.status_code"] == 200 and "error.type" not in served
    assert served["gen_ai.provider.name"] == "openai" and served["gen_ai.request.model"] == "gpt-4o"
    attributes = dict(call.attributes or {})
    check_chat_attributes(attributes)
    if stream:
        assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < 30
    else:
        assert "gen_ai.response.time_to_first_chunk" not in attributes
    assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes
    # Each provider request carried the trace, its parent that request's own span.
    sent = [s.headers["traceparent"].split("-")[1:3] for s in fake.seen]
    assert [tuple(s) for s in sent] == [ids(a) for a in attempts]


async def test_no_secret_on_any_span_even_with_content_capture(
    tmp_path: Path, upstream: str, spans: InMemorySpanExporter
) -> None:
    """The vault's provider key and the caller's gateway key, put by the caller into a prompt and
    tool arguments (and echoed back by the upstream), are scrubbed from what capture records,
    while the rest of the content is there."""
    fake = FakeProvider(PROVIDER_KEY)
    with serve_in_thread(fake.app()) as provider:
        deployment = {"provider": "openai", "model": "gpt-4o", "base_url": f"{provider}/v1"}
        deployment["api_key"] = "secret:provider"
        config = traced_config(
            tmp_path,
            upstream,
            models=[{"name": "gpt-test", "deployments": [deployment]}],
            auth={"enabled": True},
            traces={"capture_content": True},
        )
        setup = Gateway(config)
        setup.vault.put("provider", PROVIDER_KEY)
        setup.identities.add_consumer("alice", "payments", "acme")
        issued, key = keys.issue(setup.identities, "alice")
        setup.identities.add_policy("consumer", "alice", "allow", Selector(apis=("echo",)), None)
        setup.identities.add_policy("consumer", "alice", "allow", Selector(models=("*",)), None)
        setup.db.close()
        with running_gateway(config) as (url, _):
            base = url.removesuffix("/mcp")
            words = f"{PROMPT} {key} {PROVIDER_KEY}"
            chat = {"model": "gpt-test", "messages": [{"role": "user", "content": words}]}
            answer = await _chat(base, chat, {"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
            async with client_with(url, {"Authorization": f"Bearer {key}"}) as client:
                result = await client.call_tool("getItem", {"id": ARGUMENT, "q": f"{key} {PROVIDER_KEY}"})
            assert not result.is_error
    finished = spans.get_finished_spans()
    dumped = "\n".join(span.to_json() for span in finished)
    for secret in (PROVIDER_KEY, key):
        assert secret not in dumped
    call = dict(named(finished, "tools/call getItem").attributes or {})
    assert ARGUMENT in call["gen_ai.tool.call.arguments"] and "[REDACTED]" in call["gen_ai.tool.call.arguments"]
    assert ARGUMENT in call["gen_ai.tool.call.result"] and "[REDACTED]" in call["gen_ai.tool.call.result"]
    assert call["mcp_gateway.consumer"] == "alice" and call["mcp_gateway.team"] == "payments"
    assert call["mcp_gateway.key_id"] == issued.key_id
    chat_span = dict(named(finished, "chat gpt-test").attributes or {})
    assert PROMPT in chat_span["gen_ai.input.messages"] and "[REDACTED]" in chat_span["gen_ai.input.messages"]
    assert PROMPT in chat_span["gen_ai.output.messages"]  # the fake echoes the prompt
    assert chat_span["mcp_gateway.consumer"] == "alice" and chat_span["mcp_gateway.key_id"] == issued.key_id


def test_an_unknown_exporter_or_protocol_stops_with_one_line() -> None:
    env = {"OTEL_TRACES_EXPORTER": "zipkin"}
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        from mcp_gateway.observe.traces import _exporter

        _exporter(TracesConfig(enabled=True), env)
    with pytest.raises(ConfigError, match="'grpc' is not supported"):
        from mcp_gateway.observe.traces import _exporter

        _exporter(TracesConfig(enabled=True), {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_setup_uses_an_installed_provider(spans: InMemorySpanExporter) -> None:
    installed = trace.get_tracer_provider()
    traces = setup_traces(TracesConfig(enabled=True), {})
    assert trace.get_tracer_provider() is installed and not traces.capture
    assert setup_traces(
        TracesConfig(enabled=True), {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    ).capture
