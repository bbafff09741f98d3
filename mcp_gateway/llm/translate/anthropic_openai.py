"""An Anthropic Messages client served by an OpenAI chat completions deployment (OpenAI, Azure,
and every OpenAI-compatible server).

The request: `system` becomes a leading system message; `tool_result` blocks become tool
messages, placed before the rest of their user turn as OpenAI wants them right after the
tool calls (a result marked `is_error` is prefixed with `Error: `, OpenAI having no flag for
it); images (base64 or URL) become `image_url` parts; tools and `tool_choice` their OpenAI
forms, `disable_parallel_tool_use` `parallel_tool_calls: false`; `stop_sequences` `stop`;
`max_tokens` `max_completion_tokens`; `metadata.user_id` `user`. Structured output
(`output_config.format`) becomes a strict `json_schema` response format; `output_config.effort`
becomes `reasoning_effort`, and so does a thinking budget (see `mappings`); adaptive or
disabled thinking leaves the provider's default. `cache_control` marks are left out: OpenAI
caches prompt prefixes by itself. Thinking blocks of earlier turns are left out: OpenAI chat
cannot take them back. Streams ask the provider for usage (`stream_options.include_usage`).

The answer: text, tool calls (ids kept), reasoning that OpenAI-compatible servers return as
`reasoning_content` (DeepSeek) or `reasoning` (vLLM) as a thinking block (with an empty
signature: none exists), stop reasons and usage in Anthropic's terms; `model` as asked.
Counting tokens is not translated: an OpenAI-compatible provider has no such endpoint.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.translate.anthropic_events import Blocks, event
from mcp_gateway.llm.translate.fields import ANTHROPIC_ONLY, Fields, as_dict, as_int, as_list, as_str, items, malformed
from mcp_gateway.llm.translate.mappings import (
    anthropic_usage,
    data_url,
    effort_for_budget,
    stop_reason,
    unreadable,
)
from mcp_gateway.llm.translate.relay import MALFORMED, relay, stream_error
from mcp_gateway.llm.usage import Usage, from_openai

TARGET = "OpenAI chat completions"
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
_SERVICE_TIER = {"auto": "auto", "standard_only": "default"}
# Keys of content blocks whose values need no translation: `cache_control` (OpenAI caches by
# itself), `citations` of a past answer (its text carries them), and the SDK's echoes of a
# tool call's `caller` and `toolset_name` when they are null.
_TEXT_KEYS = ("type", "text", "cache_control", "citations")
_IMAGE_KEYS = ("type", "source", "cache_control")
_RESULT_KEYS = ("type", "tool_use_id", "content", "is_error", "cache_control")
_USE_KEYS = ("type", "id", "name", "input", "cache_control")
_THINKING = ("thinking", "redacted_thinking")


class AnthropicToOpenAI:
    """Anthropic `messages` requests to OpenAI `chat`, and the answers back."""

    def operation(self, client_operation: str) -> str | None:
        """Messages are served by chat completions; token counting has no OpenAI equivalent."""
        return "chat" if client_operation == "messages" else None

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The OpenAI chat completions body for an Anthropic Messages body."""
        fields = Fields(body, model, TARGET)
        fields.pop("model")
        fields.pop("stream")
        fields.pop("cache_control")  # prompt caching: OpenAI caches prefixes by itself
        out: dict[str, Any] = {"model": provider_model}
        messages: list[dict[str, Any]] = []
        if (system := fields.pop("system")) is not None:
            messages.append({"role": "system", "content": _system(system, fields)})
        for path, message in items(fields.pop("messages"), "messages"):
            messages += _message(message, path, fields)
        out["messages"] = messages
        if (limit := fields.pop("max_tokens")) is not None:
            out["max_completion_tokens"] = as_int(limit, "max_tokens")
        if stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}  # the gateway's meter reads it
        for name in ("temperature", "top_p"):
            if (value := fields.pop(name)) is not None:
                out[name] = value
        if (stop := fields.pop("stop_sequences")) is not None:
            out["stop"] = as_list(stop, "stop_sequences")
        _tools(fields, out)
        _output(fields, out)
        if (metadata := fields.pop("metadata")) is not None:
            metadata = as_dict(metadata, "metadata")
            fields.unknown_keys(metadata, ("user_id",), "metadata")
            if metadata.get("user_id") is not None:
                out["user"] = as_str(metadata["user_id"], "metadata.user_id")
        if (tier := fields.pop("service_tier")) is not None:
            if isinstance(tier, str) and tier in _SERVICE_TIER:
                out["service_tier"] = _SERVICE_TIER[tier]
            else:
                fields.refuse("service_tier", f"{TARGET} has no `{tier}` tier (auto and standard_only translate)")
        fields.neutral("speed", "standard")
        fields.absent("top_k", *ANTHROPIC_ONLY)
        fields.finish()
        return out

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The Anthropic message for an OpenAI chat completion."""
        try:
            return _answer(body, asked)
        except MALFORMED as exc:
            raise unreadable(exc) from None

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """Anthropic stream events for OpenAI chat completion chunks."""
        return relay(events, _Events(asked), "anthropic")


# -- the request ------------------------------------------------------------------------------------


def _system(system: Any, fields: Fields) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    parts = []
    for where, block in items(system, "system"):
        if block.get("type") != "text":
            raise malformed(f"{where}.type", "text")
        parts.append({"type": "text", "text": _text(block, where, fields)})
    return _plain(parts)


def _text(block: dict[str, Any], path: str, fields: Fields) -> str:
    """A text block's text."""
    fields.unknown_keys(block, _TEXT_KEYS, path)
    return as_str(block.get("text"), f"{path}.text")


def _plain(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part is sent as a plain string, as every OpenAI-compatible server takes."""
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _message(message: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise malformed(f"{path}.role", "user or assistant")
    fields.unknown_keys(message, ("role", "content"), path)
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = items(content, f"{path}.content")
    return _user(blocks, fields) if role == "user" else _assistant(blocks, fields)


def _user(blocks: Iterator[tuple[str, dict[str, Any]]], fields: Fields) -> list[dict[str, Any]]:
    """Tool results first, as tool messages; the rest of the turn after them, as one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for where, block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, where, fields)})
        elif kind == "image":
            if (image := _image(block, where, fields)) is not None:
                parts.append(image)
        elif kind == "tool_result":
            fields.unknown_keys(block, _RESULT_KEYS, where)
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": as_str(block.get("tool_use_id"), f"{where}.tool_use_id"),
                    "content": _result(block, where, fields),
                }
            )
        else:
            fields.refuse(where, f"{TARGET} takes text, images and tool results here, not {kind!r}")
    return results + ([{"role": "user", "content": _plain(parts)}] if parts else [])


def _image(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    fields.unknown_keys(block, _IMAGE_KEYS, path)
    source = as_dict(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        fields.unknown_keys(source, ("type", "media_type", "data"), f"{path}.source")
        media_type = as_str(source.get("media_type"), f"{path}.source.media_type")
        url = data_url(media_type, as_str(source.get("data"), f"{path}.source.data"))
    elif kind == "url":
        fields.unknown_keys(source, ("type", "url"), f"{path}.source")
        url = as_str(source.get("url"), f"{path}.source.url")
    else:
        fields.refuse(f"{path}.source", f"{TARGET} takes images by URL or base64, not {kind!r}")
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _result(block: dict[str, Any], path: str, fields: Fields) -> str | list[dict[str, Any]]:
    content = block.get("content")
    prefix = "Error: " if block.get("is_error") is True else ""
    if content is None or isinstance(content, str):
        return prefix + (content or "")
    parts = []
    for where, part in items(content, f"{path}.content"):
        if part.get("type") != "text":
            fields.refuse(where, f"a tool message in {TARGET} holds text only, not {part.get('type')!r}")
            continue
        parts.append({"type": "text", "text": _text(part, where, fields)})
    if prefix:
        first = parts[0]["text"] if parts else ""
        parts[:1] = [{"type": "text", "text": prefix + first}]
    return _plain(parts) if parts else ""


def _assistant(blocks: Iterator[tuple[str, dict[str, Any]]], fields: Fields) -> list[dict[str, Any]]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for where, block in blocks:
        kind = block.get("type")
        if kind == "text":
            text.append(_text(block, where, fields))
        elif kind == "tool_use":
            fields.unknown_keys(block, _USE_KEYS, where)
            arguments = json.dumps(as_dict(block.get("input"), f"{where}.input"), ensure_ascii=False)
            calls.append(
                {
                    "id": as_str(block.get("id"), f"{where}.id"),
                    "type": "function",
                    "function": {"name": as_str(block.get("name"), f"{where}.name"), "arguments": arguments},
                }
            )
        elif kind not in _THINKING:  # earlier reasoning: OpenAI chat has no way to take it back
            fields.refuse(where, f"an assistant message in {TARGET} holds text and tool calls, not {kind!r}")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tools(fields: Fields, out: dict[str, Any]) -> None:
    tools = fields.pop("tools")
    choice = fields.pop("tool_choice")
    if tools is not None:
        translated = []
        for path, tool in items(tools, "tools"):
            if tool.get("type") not in (None, "custom"):
                fields.refuse(path, f"{TARGET} has function tools only, not Anthropic's {tool.get('type')!r} tool")
                continue
            fields.unknown_keys(tool, ("type", "name", "description", "input_schema", "cache_control", "strict"), path)
            function: dict[str, Any] = {
                "name": as_str(tool.get("name"), f"{path}.name"),
                "parameters": as_dict(tool.get("input_schema"), f"{path}.input_schema"),
            }
            for key in ("description", "strict"):
                if tool.get(key) is not None:
                    function[key] = tool[key]
            translated.append({"type": "function", "function": function})
        if translated:
            out["tools"] = translated
    if choice is None:
        return
    choice = as_dict(choice, "tool_choice")
    fields.unknown_keys(choice, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
    kind = choice.get("type")
    if isinstance(kind, str) and kind in _TOOL_CHOICE:
        out["tool_choice"] = _TOOL_CHOICE[kind]
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": as_str(choice.get("name"), "tool_choice.name")}}
    else:
        raise malformed("tool_choice.type", "auto, any, tool or none")
    if choice.get("disable_parallel_tool_use") is True and "tools" in out:
        out["parallel_tool_calls"] = False


def _output(fields: Fields, out: dict[str, Any]) -> None:
    """`thinking` and `output_config` -> `reasoning_effort` and `response_format`."""
    thinking = fields.pop("thinking")
    config = fields.pop("output_config")
    effort = None
    if thinking is not None:
        thinking = as_dict(thinking, "thinking")
        fields.unknown_keys(thinking, ("type", "budget_tokens", "display"), "thinking")
        kind = thinking.get("type")
        if kind == "enabled":
            effort = effort_for_budget(as_int(thinking.get("budget_tokens"), "thinking.budget_tokens"))
        elif kind not in ("adaptive", "disabled", "between_tools"):
            raise malformed("thinking.type", "enabled, adaptive, disabled or between_tools")
    if config is not None:
        config = as_dict(config, "output_config")
        fields.unknown_keys(config, ("effort", "format"), "output_config")
        if config.get("effort") is not None:
            effort = as_str(config["effort"], "output_config.effort")  # explicit: it wins over a budget
        if config.get("format") is not None:
            form = as_dict(config["format"], "output_config.format")
            if form.get("type") != "json_schema":
                raise malformed("output_config.format.type", "json_schema")
            schema = as_dict(form.get("schema"), "output_config.format.schema")
            out["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": True},
            }
    if effort is not None:
        out["reasoning_effort"] = effort


# -- the answer -------------------------------------------------------------------------------------


def _answer(body: dict[str, Any], asked: str) -> dict[str, Any]:
    """The Anthropic message for an OpenAI chat completion (KeyError and the like when it is malformed)."""
    choices = body.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # a few compatible servers answer in parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal:
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls") or []
    for number, call in enumerate(calls):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"call_{number}",
                "name": function.get("name") or "",
                "input": _arguments(function.get("arguments")),
            }
        )
    reason = "refusal" if refusal else stop_reason(choice.get("finish_reason"), bool(calls))
    return {
        "id": body.get("id") or "msg_gateway",
        "type": "message",
        "role": "assistant",
        "model": asked,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": anthropic_usage(from_openai(body.get("usage")) or Usage()),
    }


def _arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments (a JSON string) as the object Anthropic's `input` must be."""
    if not arguments:
        return {}
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise LlmError("bad_gateway", "the provider answered with tool call arguments that are not a JSON object")
    return value


class _Events(Blocks):
    """OpenAI chunks in, Anthropic stream events out, for one stream."""

    def __init__(self, asked: str) -> None:
        self.asked = asked
        self.started = False
        super().__init__()  # blocks: "text", "thinking" or "tool:<n>"
        self.tools: dict[int, int] = {}  # OpenAI tool_calls index -> content block index
        self.finish: str | None = None
        self.refused = False
        self.usage = Usage()
        self.done = False

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The events for one chunk."""
        if isinstance(data.get("error"), dict):
            self.done = True
            return [stream_error("anthropic", str(data["error"].get("message") or "the provider's stream failed"))]
        out = []
        if not self.started:
            self.started = True
            out.append(
                event(
                    "message_start",
                    {
                        "message": {
                            "id": data.get("id") or "msg_gateway",
                            "type": "message",
                            "role": "assistant",
                            "model": self.asked,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": 0, "output_tokens": 0},
                        }
                    },
                )
            )
        if (usage := from_openai(data.get("usage"))) is not None:
            self.usage = usage
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            for text in (delta.get("content"), delta.get("refusal")):
                if isinstance(text, str) and text:
                    out += self._open("text", {"type": "text", "text": ""})
                    out.append(self._delta({"type": "text_delta", "text": text}))
            self.refused = self.refused or bool(delta.get("refusal"))
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def close(self, marked: bool) -> list[bytes] | None:
        """The events that close the message: the stop reason and the usage, now that both are known.
        A stream that finished but left out `[DONE]` (some servers do) is closed too."""
        if not (marked or self.finish is not None):
            return None
        self.done = True
        out = self._close()
        reason = "refusal" if self.refused else stop_reason(self.finish or "stop", bool(self.tools))
        out.append(
            event(
                "message_delta",
                {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": anthropic_usage(self.usage)},
            )
        )
        out.append(event("message_stop", {}))
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        number = call.get("index", 0)
        function = call.get("function") or {}
        out = []
        if number not in self.tools:
            out += self._close()
            self.index += 1
            self.tools[number] = self.index
            self.open = f"tool:{number}"
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"call_{number}",
                "name": function.get("name") or "",
                "input": {},
            }
            out.append(event("content_block_start", {"index": self.index, "content_block": block}))
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            out.append(event("content_block_delta", {"index": self.tools[number], "delta": delta}))
        return out
