"""Tracing off (the default): no tracing stage or span hook, yet a caller's `traceparent` header
still names the trace of its call record (access line and ledger) and reaches the upstream;
when the `OTEL_*` variables switch tracing on; `traceparent` parsing."""

from __future__ import annotations

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
