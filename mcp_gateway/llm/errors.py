"""Failures of a model call, neutral to the wire format; each front door renders them in its own shape.

A provider's own 4xx answer is passed on with its message (the client wrote the request, the
provider's words help most); the gateway's own failures (unknown model, bad JSON, timeouts,
exhausted retries) say what happened in the gateway's words. Never a traceback, never a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Kind = Literal[
    "invalid_request",  # 400: the request is malformed or cannot be served as asked
    "authentication",  # 401
    "permission",  # 403
    "not_found",  # 404: an unknown or denied model (answered alike)
    "too_large",  # 413
    "rate_limit",  # 429
    "insufficient_quota",  # 429 (Anthropic's door: 402): a budget has no room for the call
    "api_error",  # 500: the gateway or a provider failed
    "bad_gateway",  # 502: a provider's answer could not be used
    "overloaded",  # 529/503: providers are overloaded or cooling down
    "timeout",  # 504
]

STATUS: dict[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "too_large": 413,
    "rate_limit": 429,
    "insufficient_quota": 429,
    "api_error": 500,
    "bad_gateway": 502,
    "overloaded": 503,
    "timeout": 504,
}


class LlmError(Exception):
    """A model call that failed; `status` and `kind` say how, `message` is safe to show the caller."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status if status is not None else STATUS[kind]
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.headers = headers  # more response headers (a rate limit's RateLimit fields)


def kind_for_status(status: int) -> Kind:
    """The kind of failure an HTTP status means (a provider's answer)."""
    if status == 401:
        return "authentication"
    if status == 403:
        return "permission"
    if status == 404:
        return "not_found"
    if status == 413:
        return "too_large"
    if status == 429:
        return "rate_limit"
    if status in (503, 529):
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "api_error"
    return "invalid_request"


def model_not_found(model: str) -> LlmError:
    """Unknown and denied models get the same answer, so a denial reveals nothing."""
    return LlmError(
        "not_found", f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
    )


# -- rendering, per front door -----------------------------------------------------------------

_OPENAI_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "insufficient_quota": "insufficient_quota",
    "api_error": "api_error",
    "bad_gateway": "api_error",
    "overloaded": "api_error",
    "timeout": "timeout_error",
}
_ANTHROPIC_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "api_error": "api_error",
    "bad_gateway": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
}


# Anthropic answers a spent budget with 402 `billing_error` (its SDKs: PaymentRequiredError, not
# retried), where OpenAI answers 429 `insufficient_quota`.
_ANTHROPIC_STATUS: dict[str, int] = {"insufficient_quota": 402}


def anthropic_status(error: LlmError) -> int:
    """The HTTP status of `error` at the Anthropic door."""
    return _ANTHROPIC_STATUS.get(error.kind, error.status)


def openai_error(error: LlmError) -> dict[str, object]:
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI answers."""
    return {
        "error": {
            "message": error.message,
            "type": _OPENAI_TYPES.get(error.kind, "api_error"),
            "param": error.param,
            "code": error.code,
        }
    }


def anthropic_error(error: LlmError) -> dict[str, object]:
    """`{"type": "error", "error": {"type", "message"}}`, as Anthropic answers."""
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(error.kind, "api_error"), "message": error.message}}
