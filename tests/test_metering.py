"""Every call, tool or model, produces one record for the meter: who, what, the upstream's status,
sizes, duration (and tokens and cost for models). Through the real MCP client and openai SDK."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import anyio
import mcp_types as types
import openai
import pytest

from mcp_gateway.metering import CallRecord
from mcp_gateway.pipeline import Call
from mcp_gateway.pipeline.stages import meter_calls
from tests.conftest import running_gateway
from tests.fake_llm import FakeProvider
from tests.test_access import cli, key_client, new_key
from tests.test_key_policies import PROVIDER_KEY, _config, provider  # noqa: F401 (a fixture)


class Records:
    """A meter that keeps what it is given (the ledger's place in these tests)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        self.records.append(record)


@pytest.mark.anyio
async def test_tool_and_model_calls_each_produce_one_record(
    tmp_path: Path,
    upstream: str,
    provider: FakeProvider,  # noqa: F811 (the fixture imported above)
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.calls")
    cli(tmp_path, "consumers", "add", "dev", "--team", "platform", "--org", "acme")
    cli(tmp_path, "policies", "add", "--consumer", "dev", "--allow")
    key = new_key(tmp_path, "dev")
    with running_gateway(_config(tmp_path, upstream, provider.url)) as (url, gateway):
        gateway.vault.put("provider-key", PROVIDER_KEY)
        kept = Records()
        gateway.meter.meters = (*gateway.meter.meters, kept)
        async with key_client(url, key) as client:
            created = await client.call_tool("createItem", {"name": "metered", "price": 1.5})
            refused = await client.call_tool("getItem", {})  # a required argument missing: never sent
        assert not created.is_error and refused.is_error

        def chat() -> None:
            client = openai.OpenAI(base_url=url.removesuffix("/mcp") + "/v1", api_key=key, max_retries=0)
            client.chat.completions.create(model="gpt-cheap", messages=[{"role": "user", "content": "hi"}])

        await anyio.to_thread.run_sync(chat)

    tool, invalid, model = kept.records
    who = (tool.consumer, tool.team, tool.org, tool.key_id)
    assert who == ("dev", "platform", "acme", key[4:16])
    assert (tool.kind, tool.api, tool.tool, tool.status, tool.error) == ("tool", "echo", "createItem", 200, False)
    assert tool.request_bytes == len(b'{"name":"metered","price":1.5}')
    assert tool.response_bytes > 0 and tool.latency_ms > 0
    assert (invalid.tool, invalid.status, invalid.error, invalid.request_bytes) == ("getItem", 0, True, 0)
    assert (model.kind, model.model, model.provider, model.status, model.error) == (
        "model", "gpt-cheap", "openai", 200, False,
    )  # fmt: skip
    assert (model.consumer, model.key_id) == ("dev", key[4:16])
    assert model.usage.input > 0 and model.usage.output > 0 and model.request_bytes > 0 and model.response_bytes > 0
    # The log line of a tool call names who and how it went; never the arguments.
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.calls"]
    assert any(line.startswith("tool=createItem api=echo consumer=dev error=False status=200") for line in lines)
    assert not any("metered" in line for line in lines)


@pytest.mark.anyio
async def test_the_record_is_handed_over_after_the_caller_has_its_answer() -> None:
    # The fast path writes the answer without yielding once the pipeline returns: a record handed
    # over on the loop's next turn follows the response instead of delaying it.
    records = Records()

    async def endpoint(call: Call) -> types.CallToolResult:
        call.context["status"] = 200
        return types.CallToolResult(content=[types.TextContent(type="text", text="done")])

    handle = meter_calls(records)(endpoint)
    call = Call(tool=SimpleNamespace(catalog_name="getItem"), api=SimpleNamespace(name="echo"), arguments={})  # type: ignore[arg-type]
    result = await handle(call)
    assert not result.is_error and records.records == []
    await anyio.sleep(0)
    assert [(r.api, r.tool, r.status) for r in records.records] == [("echo", "getItem", 200)]
