"""A real `mcp-gateway serve`: with `--workers 2`, calls spread over both workers and `/metrics`
in either reports them summed; with `log_format: json`, every stderr line is one JSON object,
each call has its access line with its fields, and neither the provider key from the vault, the
caller's Authorization header, a tool argument nor a prompt appears (at log_level debug)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
import yaml
from mcp import Client

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.gateway import Gateway
from mcp_gateway.observe.text_log import TEXT_FORMAT, TextFormatter
from mcp_gateway.store.identities import Selector
from tests.conftest import ECHO_SPEC
from tests.fake_llm import FakeProvider
from tests.servers import free_port, serve_in_thread
from tests.test_access import key_client
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.anyio

PROVIDER_KEY = "sk-provider-vault-secret-7c1d9e"
ARGUMENT = "arg-json-4b2e71"
PROMPT = "prompt-words-9f3a55"


@contextmanager
def serving(tmp_path: Path, settings: dict[str, Any], *flags: str) -> Iterator[tuple[str, list[str]]]:
    """`mcp-gateway serve` on `settings`; yields its base URL and, once stopped, its stderr lines."""
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "server": {"port": port}, **settings}))
    command = [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(path), *flags]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            try:
                if httpx2.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        yield base, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        lines += stderr.splitlines()


async def test_two_workers_report_one_sum(tmp_path: Path, upstream: str) -> None:
    settings = {
        "log_format": "json",
        "metrics": {"public": True},
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
    }
    calls = 24
    with serving(tmp_path, settings, "--workers", "2") as (base, lines):
        # The second worker may still be starting when the first is ready.
        await anyio.sleep(2)
        for n in range(calls):  # a new connection each: the kernel spreads them over the workers
            async with Client(f"{base}/mcp") as client:
                assert not (await client.call_tool("getItem", {"id": f"i{n}"})).is_error
        scrapes = [await anyio.to_thread.run_sync(lambda: scrape(base, None)) for _ in range(6)]
    for samples in scrapes:  # whichever worker answered
        assert value(samples, "mcp_gateway_tool_calls_total", api="echo", tool="getItem", status="2xx") == calls
        assert value(samples, "mcp_gateway_tool_call_duration_seconds_count", api="echo") == calls
    access = [json.loads(line) for line in lines if '"logger": "mcp_gateway.calls"' in line]
    assert len(access) == calls
    assert len({a["pid"] for a in access}) == 2, "the calls did not reach both workers"


async def test_json_logs_carry_the_call_fields_and_no_secret(tmp_path: Path, upstream: str) -> None:
    fake = FakeProvider(PROVIDER_KEY)
    settings = {
        "log_format": "json",
        "log_level": "debug",
        "auth": {"enabled": True},
        "models_from_env": False,
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
    }
    with serve_in_thread(fake.app()) as provider:
        deployment = {"provider": "openai", "model": "gpt-4o", "base_url": f"{provider}/v1"}
        deployment["api_key"] = "secret:provider"
        settings["models"] = [{"name": "gpt-test", "deployments": [deployment]}]
        # The vault's secret and alice's key, in the database the served gateway opens.
        setup = Gateway(GatewayConfig.model_validate({**settings, "data_dir": str(tmp_path / "data")}))
        setup.vault.put("provider", PROVIDER_KEY)
        setup.identities.add_consumer("alice", "payments", "acme")
        _, key = keys.issue(setup.identities, "alice")
        setup.identities.add_policy("consumer", "alice", "allow", Selector(apis=("echo",)), None)
        setup.identities.add_policy("consumer", "alice", "allow", Selector(models=("*",)), None)
        setup.db.close()
        with serving(tmp_path, settings) as (base, lines):
            async with key_client(f"{base}/mcp", key) as client:
                result = await client.call_tool("getItem", {"id": ARGUMENT})
                assert not result.is_error
            chat = {"model": "gpt-test", "messages": [{"role": "user", "content": PROMPT}]}
            answer = await anyio.to_thread.run_sync(
                lambda: httpx2.post(f"{base}/v1/chat/completions", json=chat,
                                    headers={"Authorization": f"Bearer {key}"}, timeout=30)
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            reply = answer.json()["choices"][0]["message"]["content"]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)
    assert any(r["level"] == "debug" for r in records)
    text = "\n".join(lines)
    for secret in (PROVIDER_KEY, key, ARGUMENT, PROMPT, reply):
        assert secret not in text, secret
    (tool,) = [r for r in records if r["logger"] == "mcp_gateway.calls"]
    assert tool["consumer"] == "alice" and tool["api"] == "echo" and tool["tool"] == "getItem"
    assert tool["status"] == 200 and tool["duration_ms"] > 0 and "trace_id" in tool and "cost" in tool
    (model,) = [r for r in records if r["logger"] == "mcp_gateway.models"]
    assert model["model"] == "gpt-test" and model["provider"] == "openai" and model["consumer"] == "alice"
    assert model["status"] == 200 and model["tokens"]["input"] > 0 and model["tokens"]["output"] > 0
    assert float(model["cost"]) > 0 and model["duration_ms"] > 0


def test_the_text_format_keeps_the_standard_lines() -> None:
    # The text formatter keeps each second's time text; its lines are logging.Formatter's.
    ours, standard = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    record = logging.LogRecord("mcp_gateway.calls", logging.INFO, __file__, 1, "tool=%s", ("getItem",), None)
    for step in (0.0, 0.25, 0.5, 1.0, 0.001, 3600.0):
        record.created += step
        record.msecs = (record.created - int(record.created)) * 1000
        assert ours.format(record) == standard.format(record)
    assert ours.formatTime(record, "%H") == standard.formatTime(record, "%H")
