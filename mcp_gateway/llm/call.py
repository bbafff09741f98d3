"""One model call: route it, send it, retry it, fall back, and account for it.

A request arrives in a client's wire format (`openai` or `anthropic`) for one operation. Each
attempt picks the next deployment in the router's order. A provider speaking the client's
format gets the body as the client wrote it, with only `model` replaced (and OpenAI's usage
option in streams), so provider features the gateway does not know work on day one.

Retried, on the next deployment where there is one: connection failures, timeouts, and
408/429/5xx answers, with exponential backoff and full jitter, honouring `Retry-After`, all
within the model's `total_timeout`. Other 4xx answers are the client's to see, with the
provider's message; but a 401 from a deployment whose credential is a token the gateway obtains
(Azure with Entra ID, Vertex AI) first drops that token and tries the same deployment once more
with a new one (a static key is not retried: a wrong key stays wrong). When every attempt
failed, the model's `fallbacks` are tried; a prompt too long for the model goes to its
`context_window_fallbacks`, a content refusal to its `content_policy_fallbacks`. A stream is
only retried before its first byte reaches the client; a provider that breaks later ends the
stream with an error event in the client's format.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from mcp_gateway.auth.principal import Principal
from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse, translate
from mcp_gateway.llm.errors import LlmError, kind_for_status, model_not_found
from mcp_gateway.llm.providers import Provider, bearer_of
from mcp_gateway.llm.router import ModelRouter, Target
from mcp_gateway.llm.stream_usage import UsageTap
from mcp_gateway.llm.transport import ProviderRequest, ProviderResponse
from mcp_gateway.llm.usage import (
    Usage,
    estimate_tokens,
    from_anthropic,
    from_bedrock,
    from_gemini,
    from_openai,
)
from mcp_gateway.metering import CallRecord, Meter
from mcp_gateway.metering.hooks import NOBODY, Observer
from mcp_gateway.upstream.client import UpstreamError
from mcp_gateway.upstream.scrub import scrubber

logger = logging.getLogger("mcp_gateway.models")

RETRY_STATUSES = frozenset((408, 409, 425, 429, 500, 502, 503, 504, 529))
BACKOFF_FIRST = 0.25  # seconds; doubled each retry, with full jitter
BACKOFF_MAX = 8.0
MAX_ERROR_BYTES = 64 * 1024


@dataclass(slots=True)
class ModelRequest:
    """What a client asked for, parsed once by the front door."""

    wire: str  # the client's format: "openai" | "anthropic"
    operation: str  # chat, embeddings, responses | messages, count_tokens
    model: str
    body: dict[str, Any]
    stream: bool
    headers: Mapping[str, str]  # the client's request headers, lower-case names
    principal: Principal | None = None
    endpoint: str = ""
    # Told of each usage record the request makes (every attempt's; a stream's when it ends):
    # token limits settle their reservations with it.
    on_record: Callable[[CallRecord], None] | None = None
    trace_id: str | None = None  # the trace the call is in (the caller's traceparent, or its span's)


class AttemptSpan(Protocol):
    """One provider request's trace span (observe/traces.py): current while the request is sent
    (`with`); ended with the attempt's final call record."""

    answer: dict[str, Any] | None  # a whole JSON answer (content capture)

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

    def end(self, record: CallRecord) -> None: ...


class ModelTraces(Protocol):
    """What the model path tells tracing (observe/traces.py's `Traces`)."""

    def requested(self, wire: str, operation: str, model: str, body: Mapping[str, Any], headers: Any) -> None: ...

    def attempt(self, record: CallRecord, method: str, url: str) -> AttemptSpan: ...


_UNTRACED = nullcontext()


@dataclass(slots=True)
class ModelAnswer:
    """What goes back: a whole body, or a stream of already-framed events."""

    status: int
    content_type: str
    body: bytes = b""
    events: AsyncIterator[bytes] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class _Attempt:
    """Bookkeeping across the attempts of one request."""

    def __init__(self, request: ModelRequest, budget: float) -> None:
        self.request = request
        self.deadline = time.monotonic() + budget
        self.retries = 0
        self.fallbacks = 0
        self.last: LlmError | None = None

    @property
    def left(self) -> float:
        return self.deadline - time.monotonic()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a provider asks to wait: `Retry-After` (seconds or an HTTP date), or its rate-limit
    reset headers (`1s`, `6m0s`, `20ms`)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        if seconds := _duration(headers.get(name, "")):
            return seconds
    return None


def _duration(text: str) -> float | None:
    """`1s`, `6m0s`, `1h2m3.5s`, `20ms` -> seconds."""
    if not text:
        return None
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
        elif text.startswith("ms", i):
            total += float(number or 0) / 1000
            number, i = "", i + 1
        elif c in "hms":
            total += float(number or 0) * {"h": 3600, "m": 60, "s": 1}[c]
            number = ""
        else:
            return None
        i += 1
    return total if not number else None


def _provider_message(body: bytes) -> tuple[str, str | None]:
    """The message and code of a provider's error body (OpenAI's, Anthropic's or AWS's shape), else its text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace").strip()[:2000] or "(no message)", None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        # Gemini's `code` is the HTTP status; its `status` (RESOURCE_EXHAUSTED...) says more.
        status = error.get("status")
        code = status if isinstance(status, str) else error.get("code") or error.get("type")
        return (str(message) if message else json.dumps(error)[:2000]), (str(code) if code else None)
    if isinstance(error, str):
        return error, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):  # AWS: the code is in a header
        return data["message"], None
    return json.dumps(data)[:2000], None


def _retry_delay(body: bytes) -> float | None:
    """Seconds Gemini asks to wait, in its error's `RetryInfo` detail (`"retryDelay": "37s"`):
    it sends no Retry-After header."""
    if b"RetryInfo" not in body:
        return None
    try:
        details = json.loads(body)["error"]["details"]
        delay = next(d["retryDelay"] for d in details if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"))
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return None
    return _duration(delay) if isinstance(delay, str) else None


def _is_context_window(status: int, message: str, code: str | None) -> bool:
    lowered = message.lower()
    return status == 400 and (
        code == "context_length_exceeded"
        or "context length" in lowered
        or "context window" in lowered
        or "prompt is too long" in lowered
        or "too many tokens" in lowered
        or "input is too long" in lowered  # Bedrock
    )


def _is_content_policy(status: int, message: str, code: str | None) -> bool:
    return status == 400 and (
        code in ("content_policy_violation", "content_filter") or "content policy" in message.lower()
    )


class ModelCaller:
    """Runs model calls over a router; records each call's usage with the meter."""

    def __init__(self, router: ModelRouter, meter: Meter) -> None:
        self.router = router
        self.meter = meter
        self.observer: Observer = NOBODY  # told of retries and fallbacks (metrics)
        self.traces: ModelTraces | None = None  # tracing on: the spans of calls and provider requests

    async def __call__(self, request: ModelRequest) -> ModelAnswer:
        """Serve `request`; raises LlmError for what the front door renders as an error."""
        model = self.router.find(request.model)
        if model is None:
            raise model_not_found(request.model)
        if self.traces is not None:
            self.traces.requested(request.wire, request.operation, request.model, request.body, request.headers)
        attempt = _Attempt(request, model.total_timeout)
        return await self._model(model, request.model, attempt, fallback_depth=0)

    async def _model(self, model: ModelConfig, asked: str, attempt: _Attempt, fallback_depth: int) -> ModelAnswer:
        try:
            return await self._deployments(model, asked, attempt)
        except _Fallback as reason:
            chain = {"context": model.context_window_fallbacks, "policy": model.content_policy_fallbacks}.get(
                reason.kind, []
            )
            error = reason.error
        except LlmError as exc:
            if exc.status < 500 and exc.status not in RETRY_STATUSES:
                raise
            chain, error = model.fallbacks, exc
        if fallback_depth == 0:
            for name in chain:
                other = self.router.find(name)
                if other is None or attempt.left <= 0:
                    continue
                attempt.fallbacks += 1
                self.observer.fell_back(asked, name)
                logger.warning("model %s failed (%s); falling back to %s", asked, error.message, name)
                try:
                    return await self._model(other, name, attempt, fallback_depth + 1)
                except LlmError as exc:
                    error = exc
        raise error

    async def _deployments(self, model: ModelConfig, asked: str, attempt: _Attempt) -> ModelAnswer:
        order = self.router.order(model, asked)
        tries = model.retries + 1
        for number in range(tries):
            target = order[number % len(order)]
            if number:
                attempt.retries += 1
                self.observer.retried(asked, attempt.last.kind if attempt.last is not None else "timeout")
                wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (number - 1)) * random.random()
                if attempt.last is not None and attempt.last.retry_after is not None:
                    wait = max(wait, attempt.last.retry_after if len(order) == 1 else 0.0)
                if wait >= attempt.left:
                    break
                await anyio.sleep(wait)
            if attempt.left <= 0:
                break
            try:
                return await self._send(target, model, asked, attempt)
            except _Retry as retry:
                attempt.last = retry.error
        last = attempt.last
        if last is None:
            raise LlmError("timeout", f"model {asked}: no attempt fitted in its {model.total_timeout:g}s budget")
        if last.kind in ("rate_limit", "overloaded", "timeout"):
            raise last
        raise LlmError(
            "bad_gateway" if last.status >= 500 else last.kind,
            f"model {asked}: every attempt failed ({attempt.retries + 1} tried); the last: {last.message}",
            status=last.status if last.status < 500 else 502,
            code=last.code,
        )

    async def _send(self, target: Target, model: ModelConfig, asked: str, attempt: _Attempt) -> ModelAnswer:
        """One attempt on `target`: when the provider refused the token the gateway obtained for
        it (401) and the token was dropped, the same deployment at once with a new one, before any
        other retry, so the call that met a revoked token need not fail. Once: a second 401 is
        the client's."""
        try:
            return await self._send_once(target, model, asked, attempt, renew=True)
        except _Renew:
            attempt.retries += 1
            self.observer.retried(asked, "authentication")
            return await self._send_once(target, model, asked, attempt, renew=False)

    async def _send_once(
        self, target: Target, model: ModelConfig, asked: str, attempt: _Attempt, renew: bool
    ) -> ModelAnswer:
        request = attempt.request
        try:
            provider = await self.router.provider(target)
        except Exception as exc:  # a missing secret, say: this deployment only, with a message naming it
            why = f"deployment {target.deployment.label(asked)} cannot be set up: {exc}"
            logger.error("model %s: %s", asked, why)
            target.health.failed(why, model.cooldown_seconds)
            raise _Retry(LlmError("api_error", why)) from None
        native = provider.wire == request.wire and provider.supports(request.operation)
        translator = None if native else translate.find(request.wire, provider.wire)
        operation: str | None = request.operation
        if not native:
            operation = translator.operation(request.operation) if translator is not None else None
        if operation is None or not provider.supports(operation):
            raise _Retry(
                LlmError(
                    "invalid_request",
                    f"model {asked}: deployment {target.deployment.label(asked)} speaks {provider.wire}; "
                    f"this endpoint ({request.wire} {request.operation}) cannot be translated to it",
                )
            )
        provider_model = target.deployment.model_for(asked)
        added_usage = False
        if translator is not None:
            # A field the provider's format cannot carry is the client's 400 (not retried elsewhere).
            body = translator.request(request.operation, request.body, model, provider_model, request.stream)
        else:
            body = dict(request.body)
            body["model"] = provider_model
            if request.stream and request.wire == "openai" and request.operation == "chat":
                options = body.get("stream_options")
                if not (isinstance(options, dict) and options.get("include_usage")):
                    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                    added_usage = True
        native = provider.request(operation, provider_model, json.dumps(body).encode(), request.stream, request.headers)
        record = CallRecord(
            kind="model",
            consumer=request.principal.consumer if request.principal else None,
            team=request.principal.team if request.principal else None,
            org=request.principal.org if request.principal else None,
            key_id=request.principal.credential_id if request.principal else None,
            model=request.model,
            provider=target.deployment.provider,
            provider_model=provider_model,
            deployment=target.deployment.label(asked),
            streamed=request.stream,
            endpoint=request.endpoint,
            retries=attempt.retries,
            fallbacks=attempt.fallbacks,
            request_bytes=len(native.content),
            trace_id=request.trace_id,
        )
        span = self.traces.attempt(record, native.method, native.url) if self.traces is not None else None
        started = time.perf_counter()
        streaming = False
        target.health.in_flight += 1
        try:
            try:
                with span or _UNTRACED:  # current while sent: the provider's traceparent names it
                    response = await provider.send(native)
            except UpstreamError as exc:
                message = scrubber(provider.secrets).text(str(exc))
                target.health.failed(message, model.cooldown_seconds)
                record.error_kind = exc.kind
                self._finish(record, target, started, 504 if "timeout" in exc.kind else 502, request)
                raise _Retry(LlmError("timeout" if "timeout" in exc.kind else "bad_gateway", message)) from None
            if response.status >= 400:
                await self._refused(response, target, model, provider, record, started, native, renew, request)
            target.health.succeeded(response.first_byte_at - started)
            record.ttft_ms = (response.first_byte_at - started) * 1000
            if request.stream and response.content_type == provider.stream_type:
                streaming = True  # in flight until the stream ends: _relay lets go
                events = self._relay(
                    response, target, record, started, added_usage, provider, request, translator, span
                )
                return ModelAnswer(200, "text/event-stream", events=events, headers=[("Cache-Control", "no-cache")])
            try:
                payload = await response.read()
            except UpstreamError as exc:
                record.error_kind = exc.kind
                self._finish(record, target, started, 502, request)
                raise LlmError("bad_gateway", scrubber(provider.secrets).text(str(exc))) from None
            data = _json_object(payload)
            clean = scrubber(provider.secrets)
            if clean and clean.present(payload.decode("utf-8", errors="replace")):
                # A provider that reflects its request must not hand its key to the client.
                data = clean.data(data) if data is not None else None
                payload = (
                    json.dumps(data).encode()
                    if data is not None
                    else clean.text(payload.decode("utf-8", errors="replace")).encode()
                )
            record.response_bytes = len(payload)
            if span is not None:
                span.answer = data
            record.usage = self._usage_of(provider.wire, data, request, len(payload))
            record.cost = self._cost(target, asked, record.usage)
            self._finish(record, target, started, response.status, request)
            if translator is not None:
                if data is None:
                    raise LlmError("bad_gateway", f"model {asked}: the provider's answer is not a JSON object")
                translated = translator.response(request.operation, data, request.model, request.body)
                return ModelAnswer(response.status, "application/json", json.dumps(translated).encode())
            return ModelAnswer(response.status, response.headers.get("content-type", "application/json"), payload)
        finally:
            if not streaming:
                target.health.in_flight -= 1
                if span is not None:
                    span.end(record)

    async def _refused(
        self,
        response: ProviderResponse,
        target: Target,
        model: ModelConfig,
        provider: Provider,
        record: CallRecord,
        started: float,
        sent: ProviderRequest,
        renew: bool,
        request: ModelRequest,
    ) -> None:
        """A provider's 4xx/5xx: retried, passed on, or a fallback (`_Renew`: a refused token was
        dropped, and `renew` allows one more try with a new one)."""
        try:
            body = await response.read(MAX_ERROR_BYTES)
        except UpstreamError:
            body = b""
        # The token sent too: another call may have replaced it in the provider's secrets meanwhile.
        clean = scrubber([*provider.secrets, bearer_of(sent)])
        message, code = _provider_message(body)
        code = code or response.headers.get("x-amzn-errortype", "").split(":", 1)[0] or None  # AWS's error code
        message = clean.text(message)
        status = response.status
        renewed = status == 401 and renew and await provider.rejected(sent)
        self._finish(record, target, started, status, request)
        if renewed:
            raise _Renew
        retry_after = _retry_after(response.headers) or _retry_delay(body)
        error = LlmError(kind_for_status(status), message, status=status, code=code, retry_after=retry_after)
        if status in RETRY_STATUSES:
            target.health.failed(f"HTTP {status}: {message[:200]}", model.cooldown_seconds, retry_after)
            raise _Retry(error)
        if _is_context_window(status, message, code):
            raise _Fallback("context", error)
        if _is_content_policy(status, message, code):
            raise _Fallback("policy", error)
        raise error

    def _usage_of(self, wire: str, data: dict[str, Any] | None, request: ModelRequest, size: int) -> Usage:
        """Usage from a whole answer in the provider's format `wire`; an estimate when it has none."""
        found = None
        if data is not None and wire == "gemini":
            found = from_gemini(data.get("usageMetadata"))
        elif data is not None and wire == "bedrock":
            found = from_bedrock(data.get("usage"))
        elif data is not None:
            found = from_anthropic(data.get("usage")) if wire == "anthropic" else from_openai(data.get("usage"))
        if found is None or found.empty:
            # Embeddings produce no output tokens (Gemini's report none at all): only the input is estimated.
            output = 0 if request.operation == "embeddings" else estimate_tokens(size)
            found = Usage(input=estimate_tokens(len(json.dumps(request.body))), output=output, estimated=True)
        return found

    def _cost(self, target: Target, asked: str, usage: Usage) -> Any:
        found = target.pricer(asked)
        return found.cost(usage) if found is not None else None

    def _finish(self, record: CallRecord, target: Target, started: float, status: int, request: ModelRequest) -> None:
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.status = status
        record.error = status >= 400
        self.meter.record(record)
        if request.on_record is not None:
            request.on_record(record)

    async def _relay(
        self,
        response: ProviderResponse,
        target: Target,
        record: CallRecord,
        started: float,
        added_usage: bool,
        provider: Provider,
        request: ModelRequest,
        translator: translate.Translator | None,
        span: AttemptSpan | None,
    ) -> AsyncIterator[bytes]:
        """The client's stream: the provider's events as they come (translated when the formats
        differ), usage read from them on the way, the usage chunk the gateway asked for dropped,
        and an error event in the client's format when the provider breaks off."""
        done = False

        def account(status: int) -> None:
            # Once, at the provider's last event (before the client sees the end of its stream:
            # usage is on record however fast the client hangs up), or when the stream breaks.
            nonlocal done
            if done:
                return
            done = True
            target.health.in_flight -= 1
            usage = tap.usage
            if usage is None or usage.empty:
                # Never zero for a call that produced tokens: an estimate, marked as one.
                usage = Usage(input=estimate_tokens(len(json.dumps(request.body))),
                              output=estimate_tokens(tap.output_chars), estimated=True)  # fmt: skip
            record.usage = usage
            record.response_bytes = tap.bytes
            record.cost = self._cost(target, record.model or "", usage)
            self._finish(record, target, started, status, request)
            if span is not None:
                span.end(record)

        tap = UsageTap(provider.wire, added_usage, provider.secrets, lambda: account(200))
        try:
            batches = tap.batches(provider.batches(response.stream()))
            if translator is None:
                async for batch in batches:
                    yield batch[0].raw if len(batch) == 1 else b"".join(event.raw for event in batch)
            else:
                events = sse.flatten(batches)
                async for framed in translator.stream(request.operation, events, request.model, request.body):
                    yield framed
            account(200)
        except UpstreamError as exc:
            record.error_kind = exc.kind
            account(502)
            message = scrubber(provider.secrets).text(f"the provider's stream broke off: {exc}")
            logger.warning("model %s: %s", record.model, message)
            yield _stream_error(request.wire, message)
        except BaseException:
            account(499)  # the client went away (or the gateway is stopping): the provider request is cancelled
            raise


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _stream_error(wire: str, message: str) -> bytes:
    if wire == "anthropic":
        return sse.encode({"type": "error", "error": {"type": "api_error", "message": message}}, "error")
    return sse.encode({"error": {"message": message, "type": "api_error", "param": None, "code": None}})


class _Retry(Exception):
    def __init__(self, error: LlmError) -> None:
        super().__init__(error.message)
        self.error = error


class _Renew(Exception):
    """The provider refused a token the gateway obtained; it was dropped: try once more."""


class _Fallback(Exception):
    def __init__(self, kind: str, error: LlmError) -> None:
        super().__init__(error.message)
        self.kind = kind
        self.error = error
