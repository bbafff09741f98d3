"""End to end: a real `mcp-gateway serve`, switched on by `OTEL_EXPORTER_OTLP_ENDPOINT` alone,
exports over OTLP/HTTP to a receiver on loopback (decoding `ExportTraceServiceRequest` with
opentelemetry-proto); a real MCP tools/call and a real streamed /v1/chat/completions, both in
the caller's trace, come back as spans with the conventions' names, links and attributes, and
the upstream and the provider got a traceparent of the same trace."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from opentelemetry.context import attach, detach
from opentelemetry.propagate import extract
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import ECHO_SPEC
from tests.fake_llm import FakeProvider
from tests.servers import serve_in_thread
from tests.test_observe_serve import serving
from tests.test_traces import CALLER_SPAN, TRACE_ID, TRACEPARENT, check_chat_attributes

pytestmark = pytest.mark.anyio


class Receiver:
    """An OTLP/HTTP trace receiver: every span it is sent, with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

    async def export(self, request: Request) -> Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        for resource_spans in message.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "attributes": _attributes(span.attributes),
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                        }
                    )
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/traces", self.export, methods=["POST"])])

    def named(self, name: str) -> dict[str, Any]:
        found = [s for s in self.spans if s["name"] == name]
        assert len(found) == 1, [s["name"] for s in self.spans]
        return found[0]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


SPAN_SERVER, SPAN_CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind


async def test_serve_exports_the_spans_of_a_tool_call_and_a_chat_call(
    tmp_path: Path, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    fake = FakeProvider()
    with serve_in_thread(receiver.app()) as collector, serve_in_thread(fake.app()) as provider:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # milliseconds: the test need not wait 5 s
        deployment = {"provider": "openai", "model": "gpt-4o", "base_url": f"{provider}/v1", "api_key": fake.key}
        settings = {
            "models_from_env": False,
            "apis": [{"name": "echo", "spec": str(ECHO_SPEC), "base_url": upstream}],
            "models": [{"name": "gpt-test", "deployments": [deployment]}],
        }
        with serving(tmp_path, settings) as (base, _):
            token = attach(extract({"traceparent": TRACEPARENT}))  # the caller's trace
            try:
                async with Client(f"{base}/mcp", mode="legacy") as client:
                    result = await client.call_tool("getItem", {"id": "42"})
            finally:
                detach(token)
            assert not result.is_error
            echo = json.loads(result.content[0].text)
            chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            answer = await anyio.to_thread.run_sync(
                lambda: httpx2.post(f"{base}/v1/chat/completions", json=chat,
                                    headers={"traceparent": TRACEPARENT}, timeout=30)
            )  # fmt: skip
            assert answer.status_code == 200 and "data:" in answer.text
            deadline = time.monotonic() + 20
            wanted = {"tools/call getItem", "GET /items/{id}", "chat gpt-test", "POST"}
            while not wanted <= {s["name"] for s in receiver.spans} and time.monotonic() < deadline:
                await anyio.sleep(0.1)
    call = receiver.named("tools/call getItem")
    http = receiver.named("GET /items/{id}")
    assert call["resource"]["service.name"] == "mcp-gateway"
    assert call["kind"] == SPAN_SERVER and http["kind"] == SPAN_CLIENT
    assert call["trace_id"] == TRACE_ID and call["parent"] is not None  # the caller's trace, via `_meta`
    assert http["trace_id"] == TRACE_ID and http["parent"] == call["span_id"]
    assert call["attributes"]["mcp.method.name"] == "tools/call"
    assert call["attributes"]["gen_ai.tool.name"] == "getItem"
    assert call["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert call["attributes"]["mcp.protocol.version"]
    assert call["attributes"]["mcp_gateway.api"] == "echo"
    assert http["attributes"]["http.response.status_code"] == 200
    _, trace_id, parent, _ = echo["headers"]["traceparent"].split("-")
    assert (trace_id, parent) == (TRACE_ID, http["span_id"])

    chat_span = receiver.named("chat gpt-test")
    post = receiver.named("POST")
    assert chat_span["kind"] == SPAN_SERVER and post["kind"] == SPAN_CLIENT
    assert (chat_span["trace_id"], chat_span["parent"]) == (TRACE_ID, CALLER_SPAN)
    assert (post["trace_id"], post["parent"]) == (TRACE_ID, chat_span["span_id"])
    check_chat_attributes(chat_span["attributes"])
    assert chat_span["attributes"]["gen_ai.response.time_to_first_chunk"] > 0
    assert post["attributes"]["http.response.status_code"] == 200
    (seen,) = fake.seen
    assert seen.headers["traceparent"].split("-")[1:3] == [TRACE_ID, post["span_id"]]
