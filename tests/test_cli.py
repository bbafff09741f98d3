"""The `mcp-gateway` command as a user runs it: real subprocesses, real files, real HTTP."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from tests.conftest import ECHO_SPEC
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent


def cli(
    *args: str, data_dir: Path, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(data_dir), **(env or {})}
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
        "apis", "add", "echo", str(ECHO_SPEC), "--prefix", "ec", "--base-url", "http://127.0.0.1:9/api",
        data_dir=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "registered echo" in added.stdout
    listed = cli("apis", "list", "--json", data_dir=tmp_path)
    assert [a["name"] for a in json.loads(listed.stdout)] == ["echo"]
    table = cli("apis", "list", data_dir=tmp_path).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "ORIGIN", "SPEC"]
    assert table[1].split()[:2] == ["echo", "registered"] and re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table[1])
    assert json.loads(cli("apis", "show", "echo", "--json", data_dir=tmp_path).stdout)["prefix"] == "ec"
    shown = cli("apis", "show", "echo", data_dir=tmp_path).stdout
    assert re.search(r"^prefix: +ec$", shown, re.M) and re.search(r"^registered: +\d{4}-", shown, re.M)
    # An existing name is not silently replaced.
    again = cli("apis", "add", "echo", str(ECHO_SPEC), data_dir=tmp_path)
    assert again.returncode == 2 and "--replace" in again.stderr and "already registered" in again.stderr
    assert json.loads(cli("apis", "show", "echo", "--json", data_dir=tmp_path).stdout)["prefix"] == "ec"
    replaced = cli("apis", "add", "echo", str(ECHO_SPEC), "--replace", data_dir=tmp_path)
    assert replaced.returncode == 0 and "replaced echo" in replaced.stdout
    assert "prefix" not in json.loads(cli("apis", "show", "echo", "--json", data_dir=tmp_path).stdout)
    removed = cli("apis", "remove", "echo", data_dir=tmp_path)
    assert removed.returncode == 0 and f"removed API echo (spec {ECHO_SPEC})" in removed.stdout
    gone = cli("apis", "remove", "echo", data_dir=tmp_path)
    assert gone.returncode == 1 and "no registered API named 'echo'" in gone.stderr
    assert "no APIs" in cli("apis", "list", data_dir=tmp_path).stdout


def test_apis_add_refuses_a_broken_spec(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    out = cli("apis", "add", "ghost", str(missing), data_dir=tmp_path)
    assert out.returncode == 2 and "file not found" in out.stderr
    assert "no APIs" in cli("apis", "list", data_dir=tmp_path).stdout


def test_allow_unauthenticated_is_a_flag_of_serve_stdio_and_apis_add(tmp_path: Path) -> None:
    from mcp_gateway.cli import build_config, parser

    for command in ("serve", "stdio"):
        args = parser().parse_args([command, "--spec", str(ECHO_SPEC), "--allow-unauthenticated"])
        assert [a.allow_unauthenticated for a in build_config(args).apis] == [True]
        args = parser().parse_args([command, "--spec", str(ECHO_SPEC)])
        assert [a.allow_unauthenticated for a in build_config(args).apis] == [False]
    added = cli("apis", "add", "echo", str(ECHO_SPEC), "--allow-unauthenticated", data_dir=tmp_path)
    assert added.returncode == 0, added.stderr
    assert json.loads(cli("apis", "show", "echo", "--json", data_dir=tmp_path).stdout)["allow_unauthenticated"]


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield " ".join(path), parser
    for group in groups:
        for name, child in group.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_option_has_help_with_its_default() -> None:
    from mcp_gateway.cli import parser

    leaves = dict(_leaves(parser()))
    assert {"serve", "stdio", "apis add", "keys list", "secrets set", "connections remove"} <= set(leaves)
    missing: list[str] = []
    for command, p in leaves.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help or ""
            if not text.strip():
                missing.append(f"{command} {action.dest}: no help")
            # An option that takes a value says what happens without it (flags are off by default).
            elif action.option_strings and action.nargs != 0 and "default" not in text and not action.required:
                in_group = any(action in g._group_actions for g in p._mutually_exclusive_groups if g.required)
                if not in_group:
                    missing.append(f"{command} {action.option_strings[0]}: no default in {text!r}")
    assert not missing, "\n".join(missing)


def test_every_list_and_show_command_takes_json() -> None:
    from mcp_gateway.cli import parser

    for command, p in _leaves(parser()):
        if command.split()[-1] in ("list", "show"):
            assert any("--json" in a.option_strings for a in p._actions), command


def test_unknown_flags_show_the_subcommands_usage(tmp_path: Path) -> None:
    out = cli("keys", "list", "--bogus", data_dir=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("usage: mcp-gateway keys list")
    assert "unrecognized arguments: --bogus" in out.stderr and "Traceback" not in out.stderr
    out = cli("apis", "add", "x", str(ECHO_SPEC), "--prefx", "p", data_dir=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("usage: mcp-gateway apis add")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "0"], "not a port number"),
        (["--port", "70000"], "not a port number"),
        (["--port", "http"], "not a port number"),
        (["--workers", "0"], "1 or more"),
        (["--workers", "-2"], "1 or more"),
    ],
)
def test_serve_validates_port_and_workers(tmp_path: Path, flags: list[str], message: str) -> None:
    out = cli("serve", *flags, data_dir=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    return errors[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path, workers: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = cli("serve", "--spec", str(ECHO_SPEC), "--port", str(port), "--workers", workers, data_dir=tmp_path)
    line = _one_error_line(out)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


def test_an_unusable_data_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for data_dir, problem in ((a_file, "is a file"), (a_file / "sub", "cannot be created")):
        for command in (["serve", "--spec", str(ECHO_SPEC)], ["stdio", "--spec", str(ECHO_SPEC)]):
            line = _one_error_line(cli(*command, "--data-dir", str(data_dir), data_dir=tmp_path))
            assert str(data_dir) in line and problem in line and "--data-dir" in line
        # Commands on the store say so too (the database cannot be opened there).
        line = _one_error_line(cli("consumers", "list", "--data-dir", str(data_dir), data_dir=tmp_path))
        assert str(data_dir) in line and "--data-dir" in line


def test_serve_and_stdio_stop_when_no_spec_can_be_loaded(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    for command in ("serve", "stdio"):
        started = time.monotonic()
        out = cli(command, "--spec", str(missing), "--port" if command == "serve" else "--log-level",
                  str(free_port()) if command == "serve" else "info", data_dir=tmp_path)  # fmt: skip
        assert out.returncode == 2, (command, out.stderr)
        assert "no API can be served" in out.stderr and str(missing) in out.stderr and "file not found" in out.stderr
        assert "Traceback" not in out.stderr and time.monotonic() - started < 30
    # With several, the ones that load are served (and /readyz says which did not: test_mcp_http.py).


def test_a_config_yaml_error_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("server:\n  port: 8080\n apis: [\n")
    line = _one_error_line(cli("apis", "list", "--config", str(config), data_dir=tmp_path))
    assert str(config) in line and "invalid YAML at line 3" in line
    config.write_text("server:\n  prot: 8080\nauth:\n  enabeld: true\n")
    line = _one_error_line(cli("apis", "list", "--config", str(config), data_dir=tmp_path))
    assert "server.prot: unknown key (did you mean 'port'?)" in line
    assert "auth.enabeld: unknown key (did you mean 'enabled'?)" in line


def test_policies_for_unknown_consumers_warn_and_removals_say_what(tmp_path: Path) -> None:
    added = cli("policies", "add", "--consumer", "carol", "--allow", "--tool", "get*", data_dir=tmp_path)
    assert added.returncode == 0 and "warning: there is no consumer named 'carol'" in added.stderr
    assert "added policy #1: allow consumer carol: tools get*" in added.stdout
    assert cli("consumers", "add", "carol", data_dir=tmp_path).returncode == 0
    quiet = cli("policies", "add", "--consumer", "carol", "--deny", "--method", "delete", data_dir=tmp_path)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    key = cli("keys", "create", "carol", "--expires-in", "90d", data_dir=tmp_path)
    assert key.stdout.strip().startswith("mgw_") and len(key.stdout.strip().splitlines()) == 1, key.stdout
    keys = cli("keys", "list", data_dir=tmp_path).stdout.splitlines()
    assert keys[0].split()[:4] == ["KEY", "ID", "CONSUMER", "STATE"] and "active" in keys[1]
    assert cli("policies", "remove", "2", data_dir=tmp_path).stdout.strip() == (
        "removed policy #2: deny consumer carol: methods DELETE"
    )
    models = cli("policies", "add", "--consumer", "carol", "--allow", "--model", "gpt-4o*", data_dir=tmp_path)
    assert models.returncode == 0 and "added policy #3: allow consumer carol: models gpt-4o*" in models.stdout
    mixed = cli("policies", "add", "--everyone", "--allow", "--model", "x", "--tool", "y", data_dir=tmp_path)
    assert mixed.returncode == 2 and "models or about tools" in mixed.stderr
    assert cli("policies", "remove", "3", data_dir=tmp_path).returncode == 0
    removed = cli("consumers", "remove", "carol", data_dir=tmp_path)
    assert removed.stdout.strip() == "removed consumer carol, its 1 key and 1 policy"


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
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        # The URL is logged once the port is bound and the APIs are loaded (by the parent, with workers).
        deadline = time.monotonic() + 60
        while "".join(lines).count("Application startup complete") < workers or "ready: MCP at" not in "".join(lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        # Several connections, so that with two workers both answer some of them.
        for n in range(4):
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                result = await client.call_tool("getItem", {"id": str(n)})
                assert result.structured_content is not None
                assert result.structured_content["path"] == f"/api/items/{n}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
    stderr = "".join(lines)
    # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is the clean exit.
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert stderr.count("Application shutdown complete") == workers and "Traceback" not in stderr
    assert "serving" in stderr
    assert stderr.count(f"ready: MCP at http://127.0.0.1:{port}/mcp") == 1


def test_health_follows_the_configured_port(tmp_path: Path, upstream: str) -> None:
    """What the Docker image's HEALTHCHECK runs: the port comes from MCP_GATEWAY_PORT (or the config file)."""
    port = free_port()
    env = {**os.environ, "MCP_GATEWAY_DATA_DIR": str(tmp_path), "MCP_GATEWAY_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gateway.cli", "serve", "--spec", str(ECHO_SPEC), "--base-url", upstream],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        ok = cli("health", "--ready", data_dir=tmp_path, env={"MCP_GATEWAY_PORT": str(port)})
        assert ok.returncode == 0 and f"127.0.0.1:{port}/readyz: ok" in ok.stdout, ok.stderr
        config = tmp_path / "gateway.yaml"
        config.write_text(f"server: {{host: 0.0.0.0, port: {port}}}\n")
        assert cli("health", data_dir=tmp_path, env={"MCP_GATEWAY_CONFIG": str(config)}).returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    down = cli("health", data_dir=tmp_path, env={"MCP_GATEWAY_PORT": str(port)})
    assert down.returncode == 1 and f"127.0.0.1:{port}/healthz: ConnectError" in down.stderr


def test_no_spec_serves_bundled_specs(tmp_path: Path) -> None:
    """Without --spec or --config, everything in openapi_specs/ is what `validate` would produce."""
    from mcp_gateway.cli import build_config, parser

    args = parser().parse_args(["serve"])
    config = build_config(args)
    names = sorted(a.name for a in config.apis)
    expected = sorted(
        p.stem for p in (REPO / "mcp_gateway" / "openapi_specs").iterdir() if p.suffix in (".yaml", ".yml", ".json")
    )
    assert names == expected and len(names) >= 3
