"""The `mcp-gateway` command as a user runs it: real subprocesses, real files, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from tests.conftest import ECHO_SPEC
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, data_dir: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_validate_prints_tools_and_sizes(tmp_path: Path) -> None:
    out = cli("apis", "validate", str(ECHO_SPEC), data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Echo API" in out.stdout and "OpenAPI 3.1" in out.stdout
    assert "getItem" in out.stdout and "GET" in out.stdout and "bytes" in out.stdout


def test_validate_json_prints_tool_definitions(tmp_path: Path) -> None:
    out = cli("apis", "validate", str(ECHO_SPEC), "--json", "--prefix", "e", "--method", "get", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    tools = json.loads(out.stdout)
    names = {t["name"] for t in tools}
    assert "e_getItem" in names and "e_createItem" not in names
    first = tools[0]
    assert {"name", "description", "inputSchema", "annotations"} <= set(first)
    assert first["inputSchema"]["type"] == "object"


def test_validate_reports_file_and_pointer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 4.0.0\ninfo: {title: x, version: '1'}\npaths: {}\n")
    out = cli("apis", "validate", str(bad), data_dir=tmp_path)
    assert out.returncode == 2
    assert str(bad) in out.stderr and "#/openapi" in out.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 3.1.0\npaths:\n  /x: [unclosed\n")
    out = cli("apis", "validate", str(broken), data_dir=tmp_path)
    assert out.returncode == 2 and str(broken) in out.stderr and "line" in out.stderr


def test_apis_add_list_show_remove(tmp_path: Path) -> None:
    added = cli(
        "apis",
        "add",
        "echo",
        str(ECHO_SPEC),
        "--prefix",
        "ec",
        "--base-url",
        "http://127.0.0.1:9/api",
        data_dir=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert "registered echo" in added.stdout
    listed = cli("apis", "list", "--json", data_dir=tmp_path)
    assert [a["name"] for a in json.loads(listed.stdout)] == ["echo"]
    shown = cli("apis", "show", "echo", data_dir=tmp_path)
    assert json.loads(shown.stdout)["prefix"] == "ec"
    again = cli("apis", "add", "echo", str(ECHO_SPEC), data_dir=tmp_path)
    assert "replaced echo" in again.stdout
    assert cli("apis", "remove", "echo", data_dir=tmp_path).returncode == 0
    assert cli("apis", "remove", "echo", data_dir=tmp_path).returncode == 1
    assert "no registered APIs" in cli("apis", "list", data_dir=tmp_path).stdout


def test_apis_add_refuses_a_broken_spec(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    out = cli("apis", "add", "ghost", str(missing), data_dir=tmp_path)
    assert out.returncode == 2 and "file not found" in out.stderr
    assert "no registered APIs" in cli("apis", "list", data_dir=tmp_path).stdout


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("gateway did not become ready")


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2])
async def test_serve_subprocess_end_to_end(tmp_path: Path, upstream: str, workers: int) -> None:
    port = free_port()
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gateway.cli", "serve", "--spec", str(ECHO_SPEC), "--base-url", upstream,
         "--port", str(port), "--workers", str(workers)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        # Several connections, so that with two workers both answer some of them.
        for n in range(4):
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                result = await client.call_tool("getItem", {"id": str(n)})
                assert result.structured_content is not None
                assert result.structured_content["path"] == f"/api/items/{n}"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is the clean exit.
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert stderr.count("Application shutdown complete") == workers and "Traceback" not in stderr
    assert "serving" in stderr


def test_no_spec_serves_bundled_specs(tmp_path: Path) -> None:
    """Without --spec or --config, everything in openapi_specs/ is what `validate` would produce."""
    from mcp_gateway.cli import build_config, parser

    args = parser().parse_args(["serve"])
    config = build_config(args)
    names = sorted(a.name for a in config.apis)
    expected = sorted(p.stem for p in (REPO / "openapi_specs").iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert names == expected and len(names) >= 3
