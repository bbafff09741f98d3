"""What OpenAI chat and Anthropic Messages call by different names, both ways: finish and stop
reasons, reasoning effort and thinking budgets, usage, image data URLs.

Reasoning: OpenAI's `reasoning_effort` becomes an Anthropic thinking budget (`THINKING_BUDGET`);
a budget comes back as the effort whose budget it does not exceed (`effort_for_budget`).
Usage goes through the gateway's own `Usage`, whose `input` counts every prompt token, cached
ones included, as OpenAI's `prompt_tokens` does; Anthropic's `input_tokens` leaves out cache
reads and writes, so they are taken off on the way there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.translate.fields import Fields
from mcp_gateway.llm.translate.relay import MALFORMED
from mcp_gateway.llm.usage import Usage

T = TypeVar("T")

# Anthropic stop_reason -> OpenAI finish_reason
FINISH_REASON: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# OpenAI finish_reason -> Anthropic stop_reason
STOP_REASON: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# reasoning_effort -> thinking budget_tokens. Anthropic's minimum budget is 1024; `xhigh` and
# `max` share the largest budget, which every model with extended thinking can produce.
THINKING_BUDGET: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 32768,
}
MIN_THINKING_BUDGET = 1024


def finish_reason(stop_reason: Any) -> str | None:
    """OpenAI's finish_reason for an Anthropic stop_reason (None while the answer goes on)."""
    if stop_reason is None:
        return None
    return FINISH_REASON.get(stop_reason, "stop")


def stop_reason(finish: Any, called_tools: bool) -> str | None:
    """Anthropic's stop_reason for an OpenAI finish_reason. Some OpenAI-compatible servers say
    `stop` after a tool call; an Anthropic client loops on `tool_use`, so that is what it gets."""
    if finish is None:
        return None
    reason = STOP_REASON.get(finish, "end_turn")
    return "tool_use" if called_tools and reason == "end_turn" else reason


def thinking_budget(effort: str, client_limit: int | None, fields: Fields) -> int | None:
    """The thinking budget for a `reasoning_effort` (one of `THINKING_BUDGET`). Anthropic's models
    count thinking within the output limit, as OpenAI counts reasoning: a limit the client set
    stays, and the budget is at most half of it; under the least budget there is, the effort is
    refused (None)."""
    budget = THINKING_BUDGET[effort]
    if client_limit is None:
        return budget
    budget = min(budget, client_limit // 2)
    if budget < MIN_THINKING_BUDGET:
        fields.refuse(
            "reasoning_effort",
            f"a thinking budget is at least {MIN_THINKING_BUDGET} tokens and at most half of "
            f"max_completion_tokens ({client_limit})",
        )
        return None
    return budget


def effort_for_budget(budget: int) -> str:
    """The reasoning_effort for a thinking budget: `low`, `medium` or `high` (the values every
    OpenAI reasoning model takes), the least whose budget is not below it."""
    if budget <= THINKING_BUDGET["low"]:
        return "low"
    if budget <= THINKING_BUDGET["medium"]:
        return "medium"
    return "high"


def openai_usage(usage: Usage) -> dict[str, Any]:
    """Usage in OpenAI chat's shape; cache writes (which OpenAI has no field for) as
    `prompt_tokens_details.cache_write_tokens`, reasoning only when the provider counted it."""
    details: dict[str, int] = {"cached_tokens": usage.cache_read}
    if usage.cache_write:
        details["cache_write_tokens"] = usage.cache_write
    shaped: dict[str, Any] = {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": details,
    }
    if usage.reasoning:
        shaped["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning}
    return shaped


def anthropic_usage(usage: Usage) -> dict[str, Any]:
    """Usage in Anthropic's shape: `input_tokens` without the cache reads and writes."""
    shaped: dict[str, Any] = {
        "input_tokens": max(0, usage.input - usage.cache_read - usage.cache_write),
        "output_tokens": usage.output,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
    }
    if usage.reasoning:
        shaped["output_tokens_details"] = {"thinking_tokens": usage.reasoning}
    return shaped


def split_data_url(url: str) -> tuple[str, str] | None:
    """`data:<media type>;base64,<data>` -> (media type, data); None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, comma, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if not comma or encoding != "base64" or not media_type:
        return None
    return media_type, data


def data_url(media_type: str, data: str) -> str:
    """A base64 `data:` URL."""
    return f"data:{media_type};base64,{data}"


def unreadable(exc: Exception) -> LlmError:
    """A provider's answer of a shape its own format does not have: a 502 saying so."""
    return LlmError("bad_gateway", f"the provider's answer could not be translated ({type(exc).__name__}: {exc})")


def readable(translate: Callable[[], T]) -> T:
    """`translate()`, run on a provider's answer: one of a shape its own format does not have
    (a KeyError, a TypeError... on the way) is a 502 saying so."""
    try:
        return translate()
    except MALFORMED as exc:
        raise unreadable(exc) from None
