"""Tracing off (the default): no tracing stage or span hook, yet a caller's `traceparent` header
still names the trace of its call record (access line and ledger) and reaches the upstream;
when the `OTEL_*` variables switch tracing on; `traceparent` parsing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import pytest
from sqlalchemy import select

from mcp_gateway.config import GatewayConfig, TracesConfig, load_config
from mcp_gateway.observe.trace_context import trace_id_of, tracing_on
from mcp_gateway.store.schema import ledger
from tests.conftest import ECHO_SPEC, running_gateway
from tests.fake_llm import FakeProvider
from tests.servers import serve_in_thread
from tests.test_traces import CALLER_SPAN, TRACE_ID, TRACEPARENT, raw_call

pytestmark = pytest.mark.anyio


def test_traceparent_values() -> None:
    assert trace_id_of(TRACEPARENT) == TRACE_ID
    assert trace_id_of(f" {TRACEPARENT} ") == TRACE_ID
    assert trace_id_of(f"01-{TRACE_ID}-{CALLER_SPAN}-01-future") == TRACE_ID  # a later version may add fields
    bad = (
        None,
        "",
        "garbage",
        f"ff-{TRACE_ID}-{CALLER_SPAN}-01",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",
        f"00-{TRACE_ID}-xyz-01",
        f"00-{TRACE_ID[:-1]}-{CALLER_SPAN}-01",
    )
    for value in bad:
        assert trace_id_of(value) is None, value


def test_the_otel_variables_switch_tracing_on() -> None:
    off = TracesConfig()
    assert not tracing_on(off, {})
    assert tracing_on(off, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_on(off, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert tracing_on(off, {"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_on(off, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not tracing_on(off, {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert tracing_on(TracesConfig(endpoint="http://127.0.0.1:4318"), {})
    assert not tracing_on(TracesConfig(enabled=False), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert tracing_on(TracesConfig(enabled=True), {})


def test_a_bad_endpoint_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("traces:\n  endpoint: 127.0.0.1:4318\n")
    with pytest.raises(ValueError, match=r"traces\.endpoint") as raised:
        load_config(path)
    assert str(path) in str(raised.value) and "http://" in str(raised.value)


async def test_untraced_calls_keep_the_callers_trace_id(
    tmp_path: Path, upstream: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO, logger="mcp_gateway")
    fake = FakeProvider()
    with serve_in_thread(fake.app()) as provider:
        deployment = {"provider": "openai", "model": "gpt-4o", "base_url": f"{provider}/v1", "api_key": fake.key}
        config = GatewayConfig.model_validate(
            {
                "data_dir": str(tmp_path / "data"),
                "models_from_env": False,
                "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
                "models": [{"name": "gpt-test", "deployments": [deployment]}],
            }
        )
        with running_gateway(config) as (url, gateway):
            # Off: no tracing stage, no span hook on upstream requests or model calls.
            assert gateway.traces is None and gateway.pool.spans is None and gateway.model_caller.traces is None
            echo = await raw_call(url, {"traceparent": TRACEPARENT})
            chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
            answer = await anyio.to_thread.run_sync(
                lambda: httpx2.post(f"{url.removesuffix('/mcp')}/v1/chat/completions", json=chat,
                                    headers={"traceparent": TRACEPARENT}, timeout=30)
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            await gateway.ledger.flush()
            with gateway.db.engine.connect() as conn:
                stored = conn.execute(select(ledger.c.kind, ledger.c.trace_id)).all()
    assert trace_id_of(echo["headers"]["traceparent"]) == TRACE_ID
    lines = [r.getMessage() for r in caplog.records if r.name in ("mcp_gateway.calls", "mcp_gateway.models")]
    assert len(lines) == 2 and all(f"trace_id={TRACE_ID}" in line for line in lines), lines
    assert sorted(stored) == [("model", TRACE_ID), ("tool", TRACE_ID)]


META_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
META_TRACEPARENT = f"00-{META_TRACE_ID}-b7ad6b7169203331-01"


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
async def test_untraced_calls_continue_a_traceparent_in_meta_over_the_header(
    tmp_path: Path, upstream: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, era: str
) -> None:
    # Untraced, the SDK's span middleware is left out; reading `_meta` (which wins over the
    # header, as the SDK's middleware has it) is then the gateway's own.
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO, logger="mcp_gateway.calls")
    config = GatewayConfig.model_validate(
        {"data_dir": str(tmp_path / "data"), "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}]}
    )
    meta: dict[str, object] = {"traceparent": META_TRACEPARENT}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": era,
        "traceparent": TRACEPARENT,
    }
    if era >= "2026":
        headers.update({"Mcp-Method": "tools/call", "Mcp-Name": "getItem"})
        meta.update({
            "io.modelcontextprotocol/protocolVersion": era,
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        })  # fmt: skip
    payload = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "getItem", "arguments": {"id": "1"}, "_meta": meta}}  # fmt: skip
    with running_gateway(config) as (url, gateway):
        assert gateway.traces is None
        async with httpx2.AsyncClient() as http:
            response = await http.post(url, json=payload, headers=headers, timeout=30)
        await gateway.ledger.flush()
        with gateway.db.engine.connect() as conn:
            stored = conn.execute(select(ledger.c.trace_id)).all()
    lines = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
    message = json.loads(lines[-1]) if lines else response.json()  # an SSE stream, or JSON
    echo = json.loads(message["result"]["content"][0]["text"])
    assert trace_id_of(echo["headers"]["traceparent"]) == META_TRACE_ID
    assert stored == [(META_TRACE_ID,)]
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.calls"]
    assert len(lines) == 1 and f"trace_id={META_TRACE_ID}" in lines[0]
