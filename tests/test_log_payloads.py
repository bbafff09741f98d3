"""Logs never carry message payloads (tool arguments, results, connect tickets) unless
`log_payloads: true`: a real `mcp-gateway serve` (and `stdio`) at log_level debug, called with
distinctive values that the echo upstream sends back, and its whole stderr scanned."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio.to_thread
import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_gateway.logs import HIDDEN
from tests.conftest import ECHO_SPEC
from tests.results import text_of
from tests.servers import free_port

pytestmark = pytest.mark.anyio

ARGUMENT = "arg-7f3a9c"  # a path argument: the upstream echoes it into the result
NOTE = "note-body-5e1d20"  # a request body
TICKET = "ticket-d41c88"  # a query string of the gateway's own endpoints


def write_config(tmp_path: Path, upstream: str, port: int, log_payloads: bool) -> Path:
    path = tmp_path / "gateway.yaml"
    config = {
        "data_dir": str(tmp_path / "data"),
        "log_level": "debug",
        "log_payloads": log_payloads,
        "server": {"port": port},
        "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def calls(client: Client) -> None:
    result = await client.call_tool("getItem", {"id": ARGUMENT})
    assert ARGUMENT in text_of(result), text_of(result)
    result = await client.call_tool("postNote", {"body": NOTE})
    assert NOTE in text_of(result), text_of(result)


async def serve_logs(tmp_path: Path, upstream: str, log_payloads: bool) -> str:
    """Everything `serve` writes to stderr while called over Streamable HTTP (SSE and JSON answers)."""
    port = free_port()
    config = write_config(tmp_path, upstream, port, log_payloads)
    command = [sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(config)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            try:
                if (await anyio.to_thread.run_sync(httpx2.get, f"{base}/readyz")).status_code == 200:
                    break
            except httpx2.HTTPError:
                await anyio.sleep(0.1)
        for mode in ("legacy", "2026-07-28"):
            async with Client(f"{base}/mcp", mode=mode) as client:
                await calls(client)
        link = await anyio.to_thread.run_sync(httpx2.get, f"{base}/oauth/connect/echo?ticket={TICKET}")
        assert link.status_code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=30))
    assert "Traceback" not in stderr, stderr[-2000:]
    return stderr


async def test_serve_at_debug_logs_no_payload(tmp_path: Path, upstream: str) -> None:
    logs = await serve_logs(tmp_path, upstream, log_payloads=False)
    assert "tool=getItem api=echo" in logs  # the call log line is there, at debug level among much else
    for value in (ARGUMENT, NOTE, TICKET):
        assert value not in logs, [line for line in logs.splitlines() if value in line][:3]
    assert HIDDEN in logs  # the library records are kept, cut


async def test_log_payloads_logs_them(tmp_path: Path, upstream: str) -> None:
    logs = await serve_logs(tmp_path, upstream, log_payloads=True)
    for value in (ARGUMENT, NOTE, TICKET):
        assert value in logs, value


async def test_stdio_at_debug_logs_no_payload(tmp_path: Path, upstream: str) -> None:
    config = write_config(tmp_path, upstream, free_port(), log_payloads=False)
    errlog = tmp_path / "stderr.log"
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_gateway.cli", "stdio", "-c", str(config)])
    with errlog.open("w") as sink, anyio.fail_after(60):
        async with Client(stdio_client(params, errlog=sink)) as client:
            await calls(client)
    logs = errlog.read_text()
    assert "tool=getItem api=echo" in logs
    for value in (ARGUMENT, NOTE):
        assert value not in logs, [line for line in logs.splitlines() if value in line][:3]
