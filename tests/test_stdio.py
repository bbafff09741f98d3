"""The official `mcp` client against `mcp-gateway stdio` as a real subprocess, both eras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import ECHO_SPEC

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]


def _params(data_dir: Path, *args: str) -> StdioServerParameters:
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(data_dir), "MCP_GATEWAY_LOG_LEVEL": "info"}
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_gateway.cli", "stdio", *args], env=env)


@pytest.mark.parametrize("mode", ERAS)
async def test_stdio_list_and_call(tmp_path: Path, upstream: str, mode: str) -> None:
    params = _params(tmp_path, "--spec", str(ECHO_SPEC), "--base-url", upstream)
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "getItem" in tools
            result = await client.call_tool("getItem", {"id": "42", "X-Trace-Id": "abc"})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            assert result.structured_content["path"] == "/api/items/42"
            assert result.structured_content["headers"]["x-trace-id"] == "abc"
            bad = await client.call_tool("getItem", {"id": 42})
            assert bad.is_error and "id" in bad.content[0].text  # type: ignore[union-attr]


async def test_stdio_stdout_carries_only_protocol(tmp_path: Path, upstream: str) -> None:
    """Logs go to stderr: stdout must be pure JSON-RPC even at debug level."""
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(tmp_path), "MCP_GATEWAY_LOG_LEVEL": "debug"}
    init = (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        '"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", "stdio", "--spec", str(ECHO_SPEC), "--base-url", upstream],
        input=init,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, proc.stderr
    assert all(line.startswith('{"jsonrpc":"2.0"') or line.startswith('{"id"') for line in lines), proc.stdout
    assert "tools" in proc.stderr  # the start-up log went to stderr


@pytest.mark.parametrize("mode", ERAS)
async def test_stdio_sees_cli_registration(tmp_path: Path, upstream: str, mode: str) -> None:
    """`mcp-gateway apis add` in another process reaches a running stdio gateway as list_changed:
    on the session stream (2025-11-25) or on a subscriptions/listen stream (2026-07-28)."""
    changed = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def add_extra() -> None:
        add = await anyio.run_process(
            [sys.executable, "-m", "mcp_gateway.cli", "apis", "add", "extra", str(ECHO_SPEC),
             "--prefix", "extra", "--base-url", upstream, "--data-dir", str(tmp_path)],
            check=False,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr

    params = _params(tmp_path, "--spec", str(ECHO_SPEC), "--base-url", upstream)
    with anyio.fail_after(60):
        async with Client(params, mode=mode, message_handler=on_message) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            if mode == "legacy":
                await add_extra()
                await changed.wait()
            else:
                async with client.listen(tools_list_changed=True) as sub:
                    await add_extra()
                    async for _event in sub:
                        break
            after = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
            assert "extra_getItem" in after - before
            result = await client.call_tool("extra_getItem", {"id": "7"})
            assert not result.is_error and result.structured_content["path"] == "/api/items/7"  # type: ignore[index]
