"""The model front door: OpenAI- and Anthropic-compatible endpoints under `/v1`.

- OpenAI: `POST /v1/chat/completions`, `POST /v1/embeddings`, `POST /v1/responses`,
  `GET /v1/models`, `GET /v1/models/{id}`
- Anthropic: `POST /v1/messages`, `POST /v1/messages/count_tokens` (and `GET /v1/models` in
  Anthropic's shape when the request carries `anthropic-version`)

The official SDKs work with only `base_url` and `api_key` pointed here: the gateway key (or a
JWT) is accepted as `Authorization: Bearer`, `x-api-key` (Anthropic's SDK) or `api-key`
(Azure-style clients), and is never forwarded to a provider. Errors come in each door's own
shape. This is a plain ASGI middleware over Starlette's request/response types, placed right
after the Host/Origin guard: a model call pays for neither the MCP SDK's machinery nor
Starlette's router and exception layers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.auth.apikeys import AuthFailure
from mcp_gateway.auth.principal import Principal
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm.call import ModelCaller, ModelRequest
from mcp_gateway.llm.errors import LlmError, anthropic_error, anthropic_status, model_not_found, openai_error
from mcp_gateway.llm.usage import estimate_tokens
from mcp_gateway.metering import CallRecord
from mcp_gateway.metering.budgets import BudgetExceeded, Budgets, BudgetsUnavailable, Hold
from mcp_gateway.metering.headers import ratelimit_headers
from mcp_gateway.metering.limits import (
    Admission,
    BackendDown,
    Limiter,
    LimitExceeded,
    LimitsUnavailable,
    subject_of,
)
from mcp_gateway.observe.trace_context import current_trace_id, trace_id_of
from mcp_gateway.server.admin_usage import UsageQueryError, usage_answer, usage_query
from mcp_gateway.store.ledger import LedgerStore

Endpoint = Callable[[Request], Awaitable[ASGIApp]]  # a Response, or one wrapped to release its limits

# (client wire, operation, fields the body must have)
_DOORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "/v1/chat/completions": ("openai", "chat", ("model", "messages")),
    "/v1/embeddings": ("openai", "embeddings", ("model", "input")),
    "/v1/responses": ("openai", "responses", ("model",)),
    "/v1/messages": ("anthropic", "messages", ("model", "messages", "max_tokens")),
    "/v1/messages/count_tokens": ("anthropic", "count_tokens", ("model", "messages")),
}
_CREATED = int(time.time())
# A spent budget does not come back in seconds: the official SDKs retry a 429 unless told not to.
NO_RETRY = {"x-should-retry": "false"}
_EPOCH = "1970-01-01T00:00:00Z"


def _anthropic_model(name: str) -> dict[str, str]:
    return {"type": "model", "id": name, "display_name": name, "created_at": _EPOCH}


def _openai_model(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": "mcp-gateway"}


def credential(request: Request) -> str | None:
    """The caller's gateway credential: `Authorization: Bearer`, `x-api-key` or `api-key`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for name in ("x-api-key", "api-key"):
        if value := request.headers.get(name, "").strip():
            return value
    return None


def _render(wire: str, error: LlmError) -> JSONResponse:
    body = anthropic_error(error) if wire == "anthropic" else openai_error(error)
    headers = dict(error.headers or {})
    if error.retry_after:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    status = anthropic_status(error) if wire == "anthropic" else error.status
    return JSONResponse(body, status_code=status, headers=headers or None)


def _tokens(body: dict[str, Any], size: int, operation: str) -> tuple[int, int | None] | None:
    """(prompt tokens, the most the answer may have) of a call: the prompt is its bytes / 4, the
    answer's cap its `max_tokens` or kin (None when it sets none; 0 for embeddings). None for an
    operation that costs nothing and counts no tokens (count_tokens)."""
    if operation == "count_tokens":
        return None
    if operation == "embeddings":
        return estimate_tokens(size), 0
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return estimate_tokens(size), value
    return estimate_tokens(size), None


class _Held:
    """A response whose call holds rate-limit counters (slots, token reservations) or a budget
    reservation until it is sent, a stream until its end or its client's going away."""

    def __init__(self, response: Response, holds: list[Admission | Hold]) -> None:
        self.response = response
        self.holds = holds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            await _release(self.holds)


async def _release(holds: list[Admission | Hold]) -> None:
    """Release each (each is shielded from cancellation, and once only)."""
    for hold in holds:
        await hold.release()


class DoorTraces(Protocol):
    """Tracing of the model calls (observe/traces.py's `Traces`)."""

    def model_span(self, scope: Scope, send: Send) -> AbstractContextManager[Send]:
        """The span of one call, current while it is served; yields the `send` to answer through."""
        ...


class ModelDoors:
    """ASGI middleware serving the `/v1` endpoints of `caller`'s models; every other request
    (and an unknown `/v1` path) goes on to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        caller: ModelCaller,
        access: AccessControl | None,
        max_body: int = 32 * 1024 * 1024,
        ledger: LedgerStore | None = None,
        limiter: Limiter | None = None,
        budgets: Budgets | None = None,
        traces: DoorTraces | None = None,
    ) -> None:
        self.app = app
        self.traces = traces
        self.posts, self.gets, self.model_path = _endpoints(caller, access, max_body, ledger, limiter, budgets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path in self.posts:
            endpoint, allow = self.posts[path], ("POST",)
        elif path in self.gets or path.startswith("/v1/models/"):
            endpoint, allow = (self.gets.get(path) or self.model_path), ("GET", "HEAD")
        else:
            await self.app(scope, receive, send)
            return
        if method not in allow:
            headers = {"Allow": ", ".join(allow)}
            response: ASGIApp = PlainTextResponse("Method Not Allowed", status_code=405, headers=headers)
        elif self.traces is not None and path in self.posts:
            with self.traces.model_span(scope, send) as sending:  # to the last byte of the answer
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, sending)
            return
        else:
            response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)


def _settles(admission: Admission | None, hold: Hold | None) -> Callable[[CallRecord], None]:
    """The hook that counts each usage record's tokens (input and output) to `admission` and its
    cost to `hold`."""

    def settle(record: CallRecord) -> None:
        if admission is not None:
            admission.use_tokens(record.usage.input + record.usage.output)
        if hold is not None:
            hold.spend(record.cost)

    return settle


def _endpoints(
    caller: ModelCaller,
    access: AccessControl | None,
    max_body: int,
    ledger: LedgerStore | None,
    limiter: Limiter | None,
    budgets: Budgets | None,
) -> tuple[dict[str, Endpoint], dict[str, Endpoint], Endpoint]:
    """(POST endpoints by path, GET endpoints by path, the endpoint of `/v1/models/{id}`)."""
    enabled = access is not None and access.enabled
    default_output = limiter.config.default_output_tokens if limiter is not None else 0
    budget_output = budgets.config.default_output_tokens if budgets is not None else None

    async def principal_of(request: Request, wire: str) -> Principal | None:
        if not enabled:
            return None
        assert access is not None
        token = credential(request)
        if token is None:
            raise LlmError(
                "authentication",
                "no credential: send your gateway key as Authorization: Bearer (or x-api-key / api-key)",
            )
        known = access.known(token.encode())  # a key already checked: no coroutine to await
        if known is not None:
            return known
        try:
            return await access.authenticate(token)
        except AuthFailure as failure:
            raise LlmError(
                "permission" if failure.status == 403 else "authentication",
                failure.description or "the credential was not accepted",
            ) from None

    def may_use(principal: Principal | None, model: str) -> bool:
        return principal is None or (access is not None and access.policy.allows_model(principal, model))

    async def admit(principal: Principal | None, model: str, reserve: int | None) -> Admission | None:
        """Check the call's rate limits; LlmError (429, or 503 when they cannot be checked) if refused."""
        assert limiter is not None
        try:
            return await limiter.admit(subject_of(principal, model=model), reserve)
        except LimitExceeded as refused:
            raise LlmError(
                "rate_limit",
                refused.message,
                code="rate_limit_exceeded",
                retry_after=refused.retry_after,
                headers=ratelimit_headers(refused.states),
            ) from None
        except LimitsUnavailable as down:
            raise LlmError("overloaded", down.message, status=503, retry_after=down.retry_after) from None

    async def budget(
        principal: Principal | None, found: ModelConfig, model: str, tokens: tuple[int, int | None]
    ) -> Hold | None:
        """Reserve the most the call may cost on its budgets; LlmError (429 insufficient_quota, or
        503 when they cannot be checked) if refused."""
        assert budgets is not None
        prompt, output = tokens
        if output is None:
            output = budget_output or found.default_max_tokens
        most = caller.router.max_cost(found, model, prompt, output)
        subject = subject_of(principal, model=model)
        if most is None and budgets.config.unpriced_models == "refuse" and budgets.plan(subject):
            raise LlmError(
                "permission",
                f"The model `{model}` has no price, so its cost cannot be reserved on the budgets that apply to this "
                "call; the gateway's operator can set a price on its deployments (0 for a free model) or "
                "budgets.unpriced_models: allow",
                headers=NO_RETRY,
            )
        try:
            return await budgets.admit(subject, most or 0)
        except BudgetExceeded as refused:
            raise LlmError("insufficient_quota", refused.message, code="insufficient_quota", headers=NO_RETRY) from None
        except BudgetsUnavailable as down:
            raise LlmError("overloaded", down.message, status=503, retry_after=down.retry_after) from None

    async def read_body(request: Request) -> tuple[dict[str, Any], int]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise LlmError("too_large", f"the request body is over {max_body} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body:
                raise LlmError("too_large", f"the request body is over {max_body} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            raise LlmError("invalid_request", "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise LlmError("invalid_request", "the request body must be a JSON object")
        return body, len(raw)

    def door(path: str) -> Endpoint:
        wire, operation, required = _DOORS[path]

        async def endpoint(request: Request) -> ASGIApp:
            admission: Admission | None = None
            hold: Hold | None = None
            try:
                principal = await principal_of(request, wire)
                body, size = await read_body(request)
                for name in required:
                    if body.get(name) is None:
                        raise LlmError("invalid_request", f"missing required field: {name}", param=name)
                model = body["model"]
                if not isinstance(model, str) or not model:
                    raise LlmError("invalid_request", "model must be a non-empty string", param="model")
                if not may_use(principal, model):
                    raise model_not_found(model)  # a denied model looks exactly like an unknown one
                stream = body.get("stream") is True and operation in ("chat", "responses", "messages")
                model_request = ModelRequest(wire, operation, model, body, stream, request.headers, principal, path)
                # The trace: its span's when traced, else the caller's traceparent (for the ledger).
                model_request.trace_id = current_trace_id() or trace_id_of(request.headers.get("traceparent"))
                limited = limiter is not None and bool(limiter.rules)
                capped = budgets is not None and budgets.active
                if limited or capped:
                    found = caller.router.find(model)
                    if found is None:
                        raise model_not_found(model)  # before any quota is spent on it
                    tokens = _tokens(body, size, operation)
                    if limited:
                        assert limiter is not None
                        estimate = None
                        if tokens is not None:
                            estimate = tokens[0] + (tokens[1] if tokens[1] is not None else default_output)
                        admission = await admit(principal, model, estimate)
                    if capped and tokens is not None:
                        hold = await budget(principal, found, model, tokens)
                    if (admission is not None and tokens is not None) or hold is not None:
                        model_request.on_record = _settles(admission, hold)
                answer = await caller(model_request)
            except LlmError as error:
                await _release([h for h in (admission, hold) if h is not None])
                return _render(wire, error)
            except BaseException:
                await _release([h for h in (admission, hold) if h is not None])
                raise
            response: Response
            if answer.events is not None:
                headers = {"X-Accel-Buffering": "no", **dict(answer.headers)}
                response = StreamingResponse(answer.events, media_type="text/event-stream", headers=headers)
            else:
                response = Response(answer.body, status_code=answer.status, media_type=answer.content_type)
            holds: list[Admission | Hold] = [hold] if hold is not None else []
            if admission is not None:
                response.headers.update(ratelimit_headers(admission.states))
                if admission.holds:
                    holds.append(admission)
            return _Held(response, holds) if holds else response

        return endpoint

    def listed(principal: Principal | None) -> list[str]:
        return [name for name in caller.router.names() if may_use(principal, name)]

    async def models(request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers
        try:
            principal = await principal_of(request, "anthropic" if anthropic else "openai")
        except LlmError as error:
            return _render("anthropic" if anthropic else "openai", error)
        names = listed(principal)
        if anthropic:
            data = [_anthropic_model(n) for n in names]
            return JSONResponse(
                {"data": data, "has_more": False, "first_id": names[0] if names else None,
                 "last_id": names[-1] if names else None}
            )  # fmt: skip
        return JSONResponse(
            {"object": "list",
             "data": [_openai_model(n) for n in names]}
        )  # fmt: skip

    async def one_model(request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers
        wire = "anthropic" if anthropic else "openai"
        name = request.url.path.removeprefix("/v1/models/")
        try:
            principal = await principal_of(request, wire)
            if name not in listed(principal):
                raise model_not_found(name)
        except LlmError as error:
            return _render(wire, error)
        if anthropic:
            return JSONResponse(
                {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
            )
        return JSONResponse({"id": name, "object": "model", "created": _CREATED, "owned_by": "mcp-gateway"})

    async def usage(request: Request) -> Response:
        # The caller's own calls, tools and models alike (everyone's when access control is off).
        try:
            principal = await principal_of(request, "openai")
            query = usage_query(request.query_params, default_by="day")
        except LlmError as error:
            return _render("openai", error)
        except UsageQueryError as exc:
            return _render("openai", LlmError("invalid_request", str(exc)))
        assert ledger is not None
        more = None
        if budgets is not None:
            # The caller's budgets: those scoped to their key, consumer, team or org.
            try:
                mine = await budgets.mine(subject_of(principal))
            except BackendDown as exc:
                return _render("openai", LlmError("overloaded", f"budgets: {exc}", status=503, retry_after=1))
            more = {"budgets": [b.public() for b in mine]}
        return await usage_answer(ledger, query, more=more, consumer=principal.consumer if principal else None)

    gets: dict[str, Endpoint] = {"/v1/models": models}
    if ledger is not None:
        gets["/v1/usage"] = usage
    return {path: door(path) for path in _DOORS}, gets, one_model
