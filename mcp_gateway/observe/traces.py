"""OpenTelemetry traces: set up from the config and the standard `OTEL_*` variables, exported in
batches (OTLP/HTTP with the `otlp` extra, or the console), following the GenAI and MCP semantic
conventions.

Imported only when tracing is on; the core never imports it. What it adds:
- MCP: the SDK already makes the SERVER span of each request (`tools/call <tool>` with
  `mcp.method.name`, `mcp.protocol.version`, `gen_ai.tool.name`, `gen_ai.operation.name`).
  `TraceHeaders` (trace_context.py) lets it continue a caller's `traceparent` header; the
  `trace_calls` pipeline stage adds who called (consumer, team, org, key id) and the API to it;
  `upstream_span` makes the CLIENT child span of each upstream HTTP request.
- Models: `model_span` makes the SERVER span `chat <model>` of each `/v1` call (through all its
  retries and fallbacks, to the end of a stream), `attempt` a CLIENT child per provider request;
  usage, response model and time to first chunk come from the call record.
- Content (prompts, completions, tool arguments and results) only with `capture_content`, with
  every secret the gateway resolved (vault values, configured keys) and the caller's own
  credential scrubbed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from opentelemetry import trace
from opentelemetry.context import attach, detach
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.datastructures import Headers
from starlette.types import Message, Scope, Send

from mcp_gateway import __version__
from mcp_gateway.config import ConfigError, TracesConfig
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.metering.records import CallRecord
from mcp_gateway.observe.trace_context import INBOUND_CREDENTIAL, TraceHeaders, bearer, truthy
from mcp_gateway.pipeline import Call, Handler
from mcp_gateway.upstream.request import UpstreamRequest
from mcp_gateway.upstream.scrub import scrubber

MAX_CAPTURED_CHARS = 64 * 1024  # per attribute: a 5 MB tool result must not ride in every export
# gen_ai.provider.name of each provider (the semantic conventions' well-known values).
PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
}
# gen_ai.operation.name of each /v1 operation.
OPERATIONS = {"chat": "chat", "messages": "chat", "responses": "chat", "embeddings": "embeddings"}
_EXPORTERS = ("otlp", "console", "none")


def _exporter(config: TracesConfig, env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter `OTEL_TRACES_EXPORTER` names (otlp by default); ConfigError naming what is wrong."""
    kind = "otlp" if config.endpoint else (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if kind not in _EXPORTERS:
        raise ConfigError(f"traces: OTEL_TRACES_EXPORTER={kind!r} is not supported (use otlp, console or none)")
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol or "http/protobuf"
    if protocol != "http/protobuf":
        raise ConfigError(f"traces: OTLP protocol {protocol!r} is not supported (use http/protobuf)")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(
            "traces: the OTLP exporter is not installed: pip install 'mcp-gateway[otlp]' "
            "(or set OTEL_TRACES_EXPORTER=console)"
        ) from None
    endpoint = config.endpoint.rstrip("/") + "/v1/traces" if config.endpoint else None
    return OTLPSpanExporter(endpoint=endpoint)


_installing = threading.Lock()


def setup_traces(config: TracesConfig, env: Mapping[str, str] | None = None) -> Traces:
    """The process's tracer: a TracerProvider with a batching exporter, installed globally (so the
    MCP SDK's spans go the same way), unless one is installed already (an embedding application's,
    or a test's), which is then used as it is."""
    env = os.environ if env is None else env
    with _installing:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            name = config.service_name or env.get("OTEL_SERVICE_NAME") or "mcp-gateway"
            # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; the sampler comes from OTEL_TRACES_SAMPLER.
            provider = TracerProvider(resource=Resource.create({"service.name": name, "service.version": __version__}))
            exporter = _exporter(config, env)
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
    capture = config.capture_content or truthy(env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"))
    return Traces(provider.get_tracer("mcp-gateway", __version__), capture)


def _who(attributes: dict[str, Any], consumer: str | None, team: str | None, org: str | None, key: str | None) -> None:
    for name, value in (("consumer", consumer), ("team", team), ("org", org), ("key_id", key)):
        if value is not None:
            attributes[f"mcp_gateway.{name}"] = value


def _server(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return {"server.address": parts.hostname or "", "server.port": port}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class Traces:
    """The gateway's spans (see the module's docstring); `capture`: content on spans, scrubbed."""

    def __init__(self, tracer: trace.Tracer, capture: bool = False) -> None:
        self.tracer = tracer
        self.capture = capture
        self._secrets: set[str] = set()
        # Captured content of model calls by their span's id, with the caller's credential: scrubbed
        # when the span ends, when every secret the call needed has been resolved.
        self._captured: dict[int, tuple[dict[str, str], str | None]] = {}

    # -- content capture -------------------------------------------------------

    def remembering(self, resolve: Callable[[str], str]) -> Callable[[str], str]:
        """`resolve` (a vault reference or plain value -> the secret), remembering each secret it
        returns: captured content is scrubbed of them all."""
        if not self.capture:
            return resolve

        def remembered(ref: str) -> str:
            value = resolve(ref)
            self._secrets.add(value)
            return value

        return remembered

    def scrubbed(self, text: str, *more: str | None) -> str:
        """`text` without any secret the gateway resolved or `more` holds, cut at MAX_CAPTURED_CHARS."""
        clean = scrubber([*self._secrets, *more]).text(text)
        return clean if len(clean) <= MAX_CAPTURED_CHARS else clean[:MAX_CAPTURED_CHARS] + "…"

    # -- MCP -------------------------------------------------------------------

    def middleware(self) -> TraceHeaders:
        """The MCP server middleware continuing a caller's `traceparent` header (keeping the
        caller's credential for scrubbing when content is captured)."""
        return TraceHeaders(keep_credential=self.capture)

    def trace_calls(self, next_handler: Handler) -> Handler:
        """Pipeline stage: who called and which API, on the SDK's `tools/call` span; the arguments
        and the result too when content is captured."""

        async def handle(call: Call) -> types.CallToolResult:
            span = trace.get_current_span()
            if not span.is_recording():
                return await next_handler(call)
            attributes: dict[str, Any] = {"mcp_gateway.api": call.api.name, "mcp_gateway.tool": call.tool.name}
            p = call.principal
            if p is not None:
                _who(attributes, p.consumer, p.team, p.org, p.credential_id)
            span.set_attributes(attributes)
            arguments = _json(call.arguments) if self.capture else ""  # before any stage may change them
            result = await next_handler(call)
            if self.capture:
                # Scrubbed after the call: its upstream's secrets are resolved (and known) by now.
                secrets = (INBOUND_CREDENTIAL.get(), call.caller.subject_token)
                content = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content]
                span.set_attributes(
                    {
                        "gen_ai.tool.call.arguments": self.scrubbed(arguments, *secrets),
                        "gen_ai.tool.call.result": self.scrubbed(_json(content), *secrets),
                    }
                )
            kind = call.context.get("error_kind")
            if kind is not None:
                span.set_attribute("mcp_gateway.error_kind", kind)
            return result

        return handle

    @contextmanager
    def upstream_span(
        self, api: str, tool: ToolDefinition, request: UpstreamRequest
    ) -> Iterator[Callable[[int], None]]:
        """The CLIENT span of one upstream HTTP request (redirects included), current while it is
        sent (its traceparent is what the upstream gets); yields the function that takes the
        answer's status. Never the URL: its query may hold an API key."""
        method = request.method.upper()
        attributes = {
            "http.request.method": method,
            "url.template": tool.operation.path,
            "mcp_gateway.api": api,
            **_server(request.url),
        }
        span = self.tracer.start_span(f"{method} {tool.operation.path}", kind=SpanKind.CLIENT, attributes=attributes)
        token = attach(trace.set_span_in_context(span))

        def answered(status: int) -> None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_attribute("error.type", str(status))
                span.set_status(StatusCode.ERROR)

        try:
            yield answered
        except BaseException as exc:
            # UpstreamError's kind (dns, refused, read-timeout...); its message names the host only.
            span.set_attribute("error.type", getattr(exc, "kind", type(exc).__qualname__))
            span.set_status(StatusCode.ERROR)
            raise
        finally:
            detach(token)
            span.end()

    # -- models ----------------------------------------------------------------

    @contextmanager
    def model_span(self, scope: Scope, send: Send) -> Iterator[Send]:
        """The SERVER span of one `/v1` call, from its start to the last byte of its answer, in the
        caller's trace when it sent a `traceparent`; current throughout. Named by its path until
        the model is known (`requested`). Yields the `send` to answer through."""
        headers = Headers(scope=scope)
        parent = extract(headers) if "traceparent" in headers else None
        method = scope["method"]
        span = self.tracer.start_span(
            f"{method} {scope['path']}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        )
        token = attach(trace.set_span_in_context(span, parent))
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
            await send(message)

        try:
            yield sending
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(StatusCode.ERROR)
            raise
        finally:
            if status >= 400:
                span.set_attribute("error.type", str(status))
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
            captured = self._captured.pop(span.get_span_context().span_id, None)
            if captured is not None:
                content, credential = captured
                span.set_attributes({name: self.scrubbed(text, credential) for name, text in content.items()})
            detach(token)
            span.end()

    def requested(self, wire: str, operation: str, model: str, body: Mapping[str, Any], headers: Any) -> None:
        """What a `/v1` call asks for, on its span (`model_span`'s, current): the name becomes
        `<operation> <model>`; the prompt is recorded when content is captured."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        name = OPERATIONS.get(operation, operation)
        span.update_name(f"{name} {model}")
        attributes: dict[str, Any] = {"gen_ai.operation.name": name, "gen_ai.request.model": model}
        if self.capture:
            prompt = {k: body[k] for k in ("system", "instructions", "messages", "input") if k in body}
            content = {"gen_ai.input.messages": _json(prompt)}
            self._captured[span.get_span_context().span_id] = (content, bearer(headers))
        span.set_attributes(attributes)

    def attempt(self, record: CallRecord, method: str, url: str) -> Attempt:
        """The CLIENT span of one provider request, a child of the call's span; `record` (the
        attempt's call record) names the provider, model and deployment."""
        parent = trace.get_current_span()
        provider = PROVIDER_NAMES.get(record.provider or "", record.provider or "")
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": record.provider_model or "",
            "mcp_gateway.deployment": record.deployment or "",
            **_server(url),
        }
        span = self.tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attributes)
        if parent.is_recording():
            who: dict[str, Any] = {"gen_ai.provider.name": provider}
            _who(who, record.consumer, record.team, record.org, record.key_id)
            parent.set_attributes(who)
        return Attempt(self, span, parent)


class Attempt:
    """One provider request's span: current while the request is sent (`with`), ended with its
    call record (`end`), whose outcome also goes on the call's span."""

    __slots__ = ("answer", "parent", "span", "token", "traces")

    def __init__(self, traces: Traces, span: Span, parent: Span) -> None:
        self.traces = traces
        self.span = span
        self.parent = parent
        self.token: object = None
        self.answer: dict[str, Any] | None = None  # a whole JSON answer, for content capture

    def __enter__(self) -> Attempt:
        self.token = attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(self, *exc: object) -> None:
        detach(self.token)  # type: ignore[arg-type]

    def end(self, record: CallRecord) -> None:
        """End the span with what `record` came to (once it is final)."""
        span = self.span
        if not span.is_recording():
            return
        status = record.status
        if status:
            span.set_attribute("http.response.status_code", status)
        failed = record.error_kind or (str(status) if status >= 400 else None)
        if not record.latency_ms:  # never finished: cancelled (the client went away)
            failed = "cancelled"
        if failed:
            span.set_attribute("error.type", failed)
            span.set_status(StatusCode.ERROR)
        else:
            outcome = self._outcome(record)
            span.set_attributes(outcome)
            if self.parent.is_recording():
                self.parent.set_attributes(outcome)
        span.end()

    def _outcome(self, record: CallRecord) -> dict[str, Any]:
        u = record.usage
        outcome: dict[str, Any] = {
            "gen_ai.response.model": record.provider_model or "",
            "gen_ai.usage.input_tokens": u.input,
            "gen_ai.usage.output_tokens": u.output,
            "gen_ai.usage.cache_read.input_tokens": u.cache_read,
            "gen_ai.usage.cache_creation.input_tokens": u.cache_write,
            "mcp_gateway.deployment": record.deployment or "",
        }
        if u.estimated:
            outcome["mcp_gateway.usage.estimated"] = True
        if record.streamed and record.ttft_ms is not None:
            outcome["gen_ai.response.time_to_first_chunk"] = record.ttft_ms / 1000
        captured = self.traces._captured.get(self.parent.get_span_context().span_id)
        if captured is not None and self.answer is not None:
            data = self.answer
            answer = data.get("choices") or data.get("content") or data.get("output") or data
            captured[0]["gen_ai.output.messages"] = _json(answer)  # scrubbed when the call's span ends
        return outcome
