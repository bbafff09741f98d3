"""A chat completion written as an OpenAI Responses API response object, for a deployment the
Responses API reaches through chat (see `responses`); what its stream shares with it.

The output items, in the order a turn holds them: a `reasoning` item when the provider gave its
thinking (the text as its summary; thinking blocks, with the signatures Anthropic wants back
in a tool loop, in `encrypted_content`), a `message` with the text (`output_text`) or refusal,
then one `function_call` item per tool call (`call_id` the provider's call id; Gemini's thought
signature in `extra_content`, as Google's OpenAI compatibility carries it on chat tool calls).
Send the items back in the next request's `input` as they came, and a tool loop works.

`status` is `completed`, or `incomplete` with `incomplete_details.reason` `max_output_tokens`
(a `length` finish) or `content_filter`. Usage: `input_tokens` (cached ones included, as
`input_tokens_details.cached_tokens` says), `output_tokens` (reasoning included, as
`output_tokens_details.reasoning_tokens` says), `total_tokens`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

# chat finish_reason -> incomplete_details.reason (any other finish is `completed`)
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class Ids:
    """The ids of one response and its items: `resp_<token>`, `msg_<token>_<n>`..."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(12)
        self.response = f"resp_{self.token}"
        self.count = 0

    def item(self, prefix: str) -> str:
        """A new item id (`msg`, `fc`, `rs`)."""
        self.count += 1
        return f"{prefix}_{self.token}_{self.count}"


def chat_view(client_body: Mapping[str, Any]) -> dict[str, Any]:
    """What a chat translator reads of the client's request when it writes the answer: JSON mode
    (`text.format` `json_object`) and usage in streams (always wanted: the Responses stream's
    usage comes from it)."""
    view: dict[str, Any] = {"stream_options": {"include_usage": True}}
    text = client_body.get("text")
    form = text.get("format") if isinstance(text, dict) else None
    if isinstance(form, dict) and form.get("type") == "json_object":
        view["response_format"] = {"type": "json_object"}
    return view


def status_of(finish: Any) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) for a chat finish_reason."""
    reason = _INCOMPLETE.get(finish) if isinstance(finish, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def usage_of(usage: Any) -> dict[str, Any] | None:
    """Responses usage for chat usage; None when there is none."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    given = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return {
        "input_tokens": given[0],
        "input_tokens_details": {
            "cached_tokens": prompt.get("cached_tokens") or 0,
            "cache_write_tokens": prompt.get("cache_write_tokens") or 0,
        },
        "output_tokens": given[1],
        "output_tokens_details": {"reasoning_tokens": completion.get("reasoning_tokens") or 0},
        "total_tokens": usage.get("total_tokens") or given[0] + given[1],
    }


def output_text(text: str) -> dict[str, Any]:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, text: str, blocks: list[Any] | None) -> dict[str, Any]:
    """A reasoning item: the provider's thinking as its summary, its thinking blocks carried."""
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
    if text:
        item["summary"].append({"type": "summary_text", "text": text})
    if blocks:
        item["encrypted_content"] = json.dumps({"thinking_blocks": blocks}, ensure_ascii=False)
    return item


def call_item(item_id: str, call: Mapping[str, Any], arguments: str, status: str) -> dict[str, Any]:
    """A function_call item for a chat tool call (its id the `call_id`)."""
    function = call.get("function") or {}
    item: dict[str, Any] = {
        "type": "function_call",
        "id": item_id,
        "call_id": call["id"],
        "name": function["name"],
        "arguments": arguments,
        "status": status,
    }
    if call.get("extra_content") is not None:
        item["extra_content"] = call["extra_content"]
    return item


def reasoning_of(message: Mapping[str, Any]) -> str:
    """The reasoning text of a chat message or delta (`reasoning_content`, or vLLM's `reasoning`)."""
    text = message.get("reasoning_content")
    if not isinstance(text, str):
        text = message.get("reasoning")
    return text if isinstance(text, str) else ""


def envelope(
    client_body: Mapping[str, Any],
    asked: str,
    ids: Ids,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The response object around `output`, with the request's settings as OpenAI echoes them."""
    reasoning = client_body.get("reasoning") if isinstance(client_body.get("reasoning"), dict) else {}
    text = client_body.get("text") if isinstance(client_body.get("text"), dict) else {}
    tools = [
        {
            "type": "function",
            "name": tool.get("name"),
            "description": tool.get("description"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict"),
        }
        for tool in client_body.get("tools") or ()
        if isinstance(tool, dict) and tool.get("type") == "function"
    ]
    parallel = client_body.get("parallel_tool_calls")
    return {
        "id": ids.response,
        "object": "response",
        "created_at": created,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": client_body.get("instructions"),
        "max_output_tokens": client_body.get("max_output_tokens"),
        "model": asked,
        "output": output,
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": client_body.get("service_tier"),
        "store": False,
        "temperature": client_body.get("temperature"),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity")},
        "tool_choice": client_body.get("tool_choice") or "auto",
        "tools": tools,
        "top_p": client_body.get("top_p"),
        "truncation": client_body.get("truncation") or "disabled",
        "usage": usage,
        "user": client_body.get("user"),
        "metadata": client_body.get("metadata") or {},
    }


def response_object(completion: Mapping[str, Any], asked: str, client_body: Mapping[str, Any]) -> dict[str, Any]:
    """The response object for a chat completion (KeyError and the like when it is malformed)."""
    ids = Ids()
    choice = completion["choices"][0]
    message = choice["message"]
    status, incomplete = status_of(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    reasoning, blocks = reasoning_of(message), message.get("thinking_blocks")
    if reasoning or blocks:
        output.append(reasoning_item(ids.item("rs"), reasoning, blocks))
    parts = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(output_text(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append({"type": "message", "id": ids.item("msg"), "status": status, "role": "assistant",
                       "content": parts})  # fmt: skip
    for call in message.get("tool_calls") or ():
        output.append(call_item(ids.item("fc"), call, call["function"].get("arguments") or "", "completed"))
    created = completion.get("created")
    return envelope(
        client_body,
        asked,
        ids,
        created if isinstance(created, int) else int(time.time()),
        status,
        output,
        usage_of(completion.get("usage")),
        incomplete,
    )
