"""An OpenAI chat completions client served by an Anthropic Messages deployment.

The request: system and developer messages become `system` (hoisted, in order, as Anthropic's
own OpenAI compatibility does); tool messages become `tool_result` blocks, consecutive ones in
one user turn; images (URL or `data:` base64) become image blocks; tools, `tool_choice` and
`parallel_tool_calls: false` their Anthropic forms; `stop` becomes `stop_sequences`;
`max_completion_tokens` (or `max_tokens`, else the model's `default_max_tokens`) `max_tokens`;
`user` (or `safety_identifier`) `metadata.user_id`. `response_format` `json_schema` is
Anthropic's structured output (`output_config.format`); `json_object`, which Anthropic has no
form of, is a forced call of a tool whose input is any JSON object, unwrapped back into the
message's content. `reasoning_effort` becomes a thinking budget (see `mappings`), or, next to
an Anthropic `thinking: {"type": "adaptive"}` sent as an extra field, `output_config.effort`.
Anthropic's `thinking` and `top_k` are accepted as extra fields and passed on.

The answer: text, tool calls (ids kept), thinking as `reasoning_content` (as DeepSeek and vLLM
carry it) with the blocks themselves, signatures included, in `thinking_blocks` so a client can
send them back in a tool loop; finish reasons and usage in OpenAI's terms; `model` as asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.translate.fields import (
    Fields,
    as_dict,
    as_int,
    as_list,
    as_str,
    items,
    malformed,
)
from mcp_gateway.llm.translate.mappings import (
    THINKING_BUDGET,
    finish_reason,
    openai_usage,
    split_data_url,
    thinking_budget,
    unreadable,
)
from mcp_gateway.llm.translate.openai_chunks import ChatChunks
from mcp_gateway.llm.translate.openai_request import (
    function_tools,
    image_url,
    include_usage,
    neutral_sampling,
    openai_messages,
    tool_calls,
)
from mcp_gateway.llm.translate.relay import MALFORMED, relay, stream_error
from mcp_gateway.llm.usage import Usage, from_anthropic

TARGET = "Anthropic Messages"
# The tool that carries JSON mode (`response_format: json_object`): its input is the answer.
JSON_TOOL = "json_object_answer"
_JSON_TOOL_SPEC = {
    "name": JSON_TOOL,
    "description": "Give your whole answer as a JSON object.",
    "input_schema": {"type": "object"},
}
_TOOL_CHOICE = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
_SERVICE_TIER = {"auto": "auto", "default": "standard_only"}


class OpenAIToAnthropic:
    """OpenAI `chat` requests to Anthropic `messages`, and the answers back."""

    def operation(self, client_operation: str) -> str | None:
        """Chat completions are served by Messages; embeddings and Responses are not translated."""
        return "messages" if client_operation == "chat" else None

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The Anthropic Messages body for an OpenAI chat completions body."""
        fields = Fields(body, model, TARGET)
        fields.pop("model")
        fields.pop("stream")
        out: dict[str, Any] = {"model": provider_model}
        system, messages = _messages(fields.pop("messages"), fields)
        if system:
            only = system[0]
            out["system"] = only["text"] if len(system) == 1 and set(only) == {"type", "text"} else system
        out["messages"] = messages
        limit, legacy = fields.pop("max_completion_tokens"), fields.pop("max_tokens")
        client_limit = None
        if limit is not None:
            client_limit = as_int(limit, "max_completion_tokens")
        elif legacy is not None:
            client_limit = as_int(legacy, "max_tokens")
        out["max_tokens"] = client_limit if client_limit is not None else model.default_max_tokens
        if stream:
            out["stream"] = True
        options = fields.pop("stream_options")
        if options is not None:
            # include_usage shapes the client's stream (see _Chunks); the gateway never obfuscates.
            fields.unknown_keys(
                as_dict(options, "stream_options"), ("include_usage", "include_obfuscation"), "stream_options"
            )
        for name in ("temperature", "top_p", "top_k"):
            if (value := fields.pop(name)) is not None:
                out[name] = value
        if (stop := fields.pop("stop")) is not None:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else as_list(stop, "stop")
        _tools(fields, out)
        _response_format(fields, out)
        _reasoning(fields, out, client_limit, model.default_max_tokens)
        identifier, user = fields.pop("safety_identifier"), fields.pop("user")
        if identifier is not None or user is not None:
            who = "safety_identifier" if identifier is not None else "user"
            out["metadata"] = {"user_id": as_str(identifier if identifier is not None else user, who)}
        if (tier := fields.pop("service_tier")) is not None:
            if isinstance(tier, str) and tier in _SERVICE_TIER:
                out["service_tier"] = _SERVICE_TIER[tier]
            else:
                fields.refuse("service_tier", f"{TARGET} has no `{tier}` tier (only auto and default translate)")
        neutral_sampling(fields)
        fields.finish()
        return out

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The OpenAI chat completion for an Anthropic message."""
        try:
            return _completion(body, asked, _json_mode(client_body))
        except MALFORMED as exc:
            raise unreadable(exc) from None

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """OpenAI chat completion chunks for Anthropic's stream events."""
        state = _Chunks(asked, _json_mode(client_body), include_usage(client_body))
        return relay(events, state, "openai")


# -- the request ------------------------------------------------------------------------------------


def _messages(messages: Any, fields: Fields) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): system and developer messages hoisted into `system`; a turn's
    consecutive messages of one role (tool results and what follows them) merged into one."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for path, role, message in openai_messages(messages, fields):
        content = message.get("content")
        if role in ("system", "developer"):
            system += _blocks(content, f"{path}.content", fields, images=False)
        elif role == "user":
            _append(turns, "user", _blocks(content, f"{path}.content", fields, images=True))
        elif role == "tool":
            call_id = as_str(message.get("tool_call_id"), f"{path}.tool_call_id")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
            blocks = _blocks(content, f"{path}.content", fields, images=False)
            result["content"] = blocks[0]["text"] if isinstance(content, str) else blocks
            _append(turns, "user", [result])
        else:
            _append(turns, "assistant", _assistant_blocks(message, path, fields))
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
            turn["content"] = blocks[0]["text"]  # plain text stays a plain string
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += blocks
    else:
        turns.append({"role": role, "content": blocks})


def _blocks(content: Any, path: str, fields: Fields, *, images: bool) -> list[dict[str, Any]]:
    """A string or content parts -> text blocks, and image blocks where `images` (a part's
    `cache_control` kept)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for where, part in items(content, path):
        kind = part.get("type")
        if kind == "text":
            blocks.append(_text(part, where, fields))
        elif kind == "image_url" and images:
            if (image := _image(part, where, fields)) is not None:
                blocks.append(image)
        else:
            fields.refuse(where, f"{TARGET} takes {'text and images' if images else 'text only'} here, not {kind!r}")
    return blocks


def _text(part: dict[str, Any], path: str, fields: Fields) -> dict[str, Any]:
    fields.unknown_keys(part, ("type", "text", "cache_control"), path)
    block = {"type": "text", "text": as_str(part.get("text"), f"{path}.text")}
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _image(part: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    url = image_url(part, path, fields, ("cache_control",))
    inline = split_data_url(url)
    if inline is not None:
        source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise malformed(f"{path}.image_url.url", "an http(s) URL or a base64 data: URL")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    """Thinking blocks first (as Anthropic wants them), then text, then tool calls."""
    blocks: list[dict[str, Any]] = []
    # `reasoning_content` without its blocks cannot be sent back: Anthropic needs each thinking
    # block's signature, and ignores the thinking of earlier turns anyway.
    for where, block in items(message.get("thinking_blocks") or [], f"{path}.thinking_blocks"):
        if block.get("type") not in ("thinking", "redacted_thinking"):
            raise malformed(f"{where}.type", "thinking or redacted_thinking")
        blocks.append(block)
    content = message.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content is not None:
        for where, part in items(content, f"{path}.content"):
            if part.get("type") == "refusal":
                blocks.append({"type": "text", "text": as_str(part.get("refusal"), f"{where}.refusal")})
            elif part.get("type") == "text":
                blocks.append(_text(part, where, fields))
            else:
                fields.refuse(where, f"an assistant message in {TARGET} holds text, not {part.get('type')!r}")
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        blocks.append({"type": "text", "text": message["refusal"]})
    for where, call, name, tool_input in tool_calls(message, path, fields):
        blocks.append(
            {
                "type": "tool_use",
                "id": as_str(call.get("id"), f"{where}.id"),
                "name": name,
                "input": tool_input,
            }
        )
    return blocks


def _tools(fields: Fields, out: dict[str, Any]) -> None:
    tools = fields.pop("tools")
    choice = fields.pop("tool_choice")
    parallel = fields.pop("parallel_tool_calls")
    if tools is not None:
        translated = []
        for _path, tool, function, name in function_tools(tools, fields, ("cache_control",)):
            spec: dict[str, Any] = {
                "name": name,
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
            for key in ("description", "strict", "cache_control"):
                source = tool if key == "cache_control" else function
                if source.get(key) is not None:
                    spec[key] = source[key]
            translated.append(spec)
        if translated:
            out["tools"] = translated
    if choice is not None:
        if isinstance(choice, str) and choice in _TOOL_CHOICE:
            out["tool_choice"] = dict(_TOOL_CHOICE[choice])
        elif isinstance(choice, dict) and choice.get("type") == "function":
            function = as_dict(choice.get("function"), "tool_choice.function")
            out["tool_choice"] = {"type": "tool", "name": as_str(function.get("name"), "tool_choice.function.name")}
        elif isinstance(choice, dict | str):
            fields.refuse("tool_choice", f"{TARGET} takes auto, none, required or one function, not {choice!r}")
        else:
            raise malformed("tool_choice", "a string or an object")
    if parallel is False and "tools" in out:
        chosen = out.setdefault("tool_choice", {"type": "auto"})
        if chosen["type"] != "none":
            chosen["disable_parallel_tool_use"] = True
    elif parallel not in (None, True, False):
        raise malformed("parallel_tool_calls", "a boolean")


def _response_format(fields: Fields, out: dict[str, Any]) -> None:
    form = fields.pop("response_format")
    if form is None:
        return
    form = as_dict(form, "response_format")
    kind = form.get("type")
    if kind == "text":
        return
    if kind == "json_schema":
        spec = as_dict(form.get("json_schema"), "response_format.json_schema")
        fields.unknown_keys(spec, ("name", "description", "schema", "strict"), "response_format.json_schema")
        schema = as_dict(spec.get("schema"), "response_format.json_schema.schema")
        out.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}
    elif kind == "json_object":
        if "tools" in out or "tool_choice" in out:
            fields.refuse("response_format", f"JSON mode is a forced tool call in {TARGET}, which rules out tools")
            return
        out["tools"] = [dict(_JSON_TOOL_SPEC)]
        out["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
    else:
        raise malformed("response_format.type", "text, json_object or json_schema")


def _reasoning(fields: Fields, out: dict[str, Any], client_limit: int | None, default_limit: int) -> None:
    """`reasoning_effort` -> a thinking budget within the token limit; Anthropic's own `thinking`
    passes as given. Anthropic counts thinking within `max_tokens`, as OpenAI counts reasoning
    within `max_completion_tokens`: a limit the client set stays, and the budget is at most half
    of it; with none set, the budget comes on top of the model's default."""
    effort = fields.pop("reasoning_effort")
    thinking = fields.pop("thinking")
    if thinking is not None:
        thinking = as_dict(thinking, "thinking")
        out["thinking"] = thinking
        budget = thinking.get("budget_tokens")
        if thinking.get("type") == "enabled" and client_limit is None and isinstance(budget, int):
            out["max_tokens"] = default_limit + budget
    if effort is None:
        return
    if not isinstance(effort, str):
        raise malformed("reasoning_effort", "a string")
    if thinking is not None and thinking.get("type") == "adaptive":
        if effort != "none":
            out.setdefault("output_config", {})["effort"] = effort
        return
    if thinking is not None:
        fields.refuse("reasoning_effort", "it conflicts with the `thinking` given (set one of them)")
        return
    if effort == "none":
        out["thinking"] = {"type": "disabled"}
        return
    if effort not in THINKING_BUDGET:
        raise malformed("reasoning_effort", "one of none, " + ", ".join(THINKING_BUDGET))
    budget = thinking_budget(effort, client_limit, fields)
    if budget is None:
        return
    if client_limit is None:
        out["max_tokens"] = default_limit + budget
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}


def _completion(body: dict[str, Any], asked: str, json_mode: bool) -> dict[str, Any]:
    """The OpenAI chat completion for an Anthropic message (KeyError and the like when it is malformed)."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block["text"])
        elif kind == "tool_use" and json_mode and block.get("name") == JSON_TOOL:
            text.append(json.dumps(block.get("input"), ensure_ascii=False))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(
                {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}
            )
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            thinking.append(block)
        elif kind == "redacted_thinking":
            thinking.append(block)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(reasoning)
        message["thinking_blocks"] = thinking
    finish = finish_reason(body.get("stop_reason"))
    if finish == "tool_calls" and not calls:
        finish = "stop"  # the JSON mode tool answered
    usage = from_anthropic(body.get("usage")) or Usage()
    return {
        "id": body.get("id") or "chatcmpl-gateway",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": asked,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": openai_usage(usage),
        "system_fingerprint": None,
    }


def _json_mode(client_body: Mapping[str, Any]) -> bool:
    form = client_body.get("response_format")
    return isinstance(form, dict) and form.get("type") == "json_object"


# -- the stream --------------------------------------------------------------------------------------


class _Chunks(ChatChunks):
    """Anthropic stream events in, OpenAI chunks out, for one stream."""

    def __init__(self, asked: str, json_mode: bool, include_usage: bool) -> None:
        super().__init__(asked, include_usage)
        self.json_mode = json_mode
        self.blocks: dict[int, str] = {}  # Anthropic block index -> its type ("json": the JSON mode tool)
        self.tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self.thinking: dict[int, str] = {}  # Anthropic block index -> its thinking so far
        self.finish: str | None = None

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The chunks for one Anthropic event."""
        kind = data.get("type")
        if kind == "message_start":
            message = data["message"]
            self.id = message.get("id") or self.id
            self.usage = from_anthropic(message.get("usage"), self.usage) or self.usage
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._start(data["index"], data["content_block"])
        if kind == "content_block_delta":
            return self._delta(data["index"], data["delta"])
        if kind == "message_delta":
            self.usage = from_anthropic(data.get("usage"), self.usage) or self.usage
            reason = finish_reason((data.get("delta") or {}).get("stop_reason"))
            if reason == "tool_calls" and not self.tool_index:
                reason = "stop"  # the JSON mode tool answered
            self.finish = reason
            return [self.chunk({}, reason)] if reason is not None else []
        if kind == "message_stop":
            return self.ending()
        if kind == "error":
            self.done = True
            error = data.get("error") or {}
            return [stream_error("openai", str(error.get("message") or "the provider's stream failed"))]
        return []  # ping, content_block_stop, and events to come

    def close(self, marked: bool) -> list[bytes] | None:
        """Anthropic ends a stream with message_stop: without it, the answer is incomplete."""
        return None

    def _start(self, index: int, block: dict[str, Any]) -> list[bytes]:
        kind = block.get("type")
        if kind == "tool_use" and self.json_mode and block.get("name") == JSON_TOOL:
            self.blocks[index] = "json"
            return []
        self.blocks[index] = kind
        if kind == "text":
            return [self.chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "tool_use":
            number = self.tool_index[index] = len(self.tool_index)
            call = {
                "index": number,
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": ""},
            }
            return [self.chunk({"tool_calls": [call]})]
        if kind == "thinking":
            self.thinking[index] = block.get("thinking") or ""
            return [self.chunk({"reasoning_content": self.thinking[index]})] if self.thinking[index] else []
        if kind == "redacted_thinking":
            return [self.chunk({"thinking_blocks": [block]})]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        kind = delta.get("type")
        block = self.blocks.get(index)
        if kind == "text_delta":
            return [self.chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and block == "json":
            return [self.chunk({"content": delta["partial_json"]})] if delta["partial_json"] else []
        if kind == "input_json_delta" and block == "tool_use":
            fragment = delta["partial_json"]
            if not fragment:
                return []
            return [
                self.chunk({"tool_calls": [{"index": self.tool_index[index], "function": {"arguments": fragment}}]})
            ]
        if kind == "thinking_delta":
            self.thinking[index] = self.thinking.get(index, "") + delta["thinking"]
            return [self.chunk({"reasoning_content": delta["thinking"]})]
        if kind == "signature_delta":
            whole = {"type": "thinking", "thinking": self.thinking.get(index, ""), "signature": delta["signature"]}
            return [self.chunk({"thinking_blocks": [whole]})]
        return []  # citations: the text carries them
