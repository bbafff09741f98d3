"""An OpenAI chat completions client served by an AWS Bedrock deployment (the Converse API).

The request: system and developer messages become `system` (hoisted, in order); user and
assistant turns Converse messages (consecutive ones of a role merged); tool messages
`toolResult` blocks answering their call's id, in the next user turn; images (base64 `data:`
URLs) `image` blocks and files (`file_data`) `document` blocks, a text part's `cache_control`
a `cachePoint` after it. Tools become `toolSpec`s (`strict` kept), `tool_choice`
`auto`/`required`/a function Converse's `auto`/`any`/`tool`; `none` sends no tools (refused
when the conversation already used some: Converse then needs them and cannot forbid a call).
`max_completion_tokens` (or `max_tokens`), `temperature`, `top_p` and `stop` go into
`inferenceConfig`; `response_format` `json_schema` is `outputConfig.textFormat`;
`service_tier` `default`/`flex`/`priority` Bedrock's tier of that name. What Anthropic's models
on Bedrock take beyond Converse's fields goes into `additionalModelRequestFields`: `top_k`,
Anthropic's `thinking` sent as an extra field, and `reasoning_effort` as a thinking budget (see
`mappings`; at most half of a limit the client set). `user` and `safety_identifier` identify
the end user to OpenAI; Converse has no such field and they change no answer: accepted, not
sent.

The answer: text, tool calls (ids kept), reasoning as `reasoning_content` with the blocks
themselves, signatures included, in `thinking_blocks` (send the assistant message back as it
came and a tool loop with thinking works); finish reasons (a guardrail's intervention is
`content_filter`) and usage in OpenAI's terms; `model` as asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.translate import bedrock_wire as bw
from mcp_gateway.llm.translate.fields import (
    Fields,
    PartReader,
    as_dict,
    as_int,
    as_list,
    as_str,
    content_parts,
    items,
    malformed,
    request_fields,
)
from mcp_gateway.llm.translate.mappings import (
    THINKING_BUDGET,
    openai_usage,
    readable,
    split_data_url,
    thinking_budget,
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
from mcp_gateway.llm.translate.relay import relay, stream_error

TARGET = bw.TARGET
_TIERS = ("default", "flex", "priority")


class OpenAIToBedrock:
    """OpenAI `chat` requests to Bedrock `converse`, and the answers back."""

    def operation(self, client_operation: str) -> str | None:
        """Chat completions are served by Converse; embeddings and Responses are not translated."""
        return "converse" if client_operation == "chat" else None

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The Converse body for an OpenAI chat completions body."""
        fields = request_fields(body, model, TARGET)
        turns = bw.Turns()
        system = _messages(fields.pop("messages"), fields, turns)
        out: dict[str, Any] = {"messages": turns.finish()}
        if system:
            out["system"] = system
        options = fields.pop("stream_options")
        if options is not None:
            fields.unknown_keys(
                as_dict(options, "stream_options"), ("include_usage", "include_obfuscation"), "stream_options"
            )
        inference, limit = _inference(fields)
        if inference:
            out["inferenceConfig"] = inference
        if (config := _tools(fields, turns.tools_used)) is not None:
            out["toolConfig"] = config
        if (form := _response_format(fields)) is not None:
            out["outputConfig"] = {"textFormat": form}
        extra = _model_fields(fields, limit)
        if extra:
            out["additionalModelRequestFields"] = extra
        if (tier := fields.pop("service_tier")) is not None:
            if tier in _TIERS:
                out["serviceTier"] = {"type": tier}
            elif tier != "auto":
                fields.refuse("service_tier", f"{TARGET} has no `{tier}` tier (default, flex and priority translate)")
        for name in ("user", "safety_identifier"):
            if (value := fields.pop(name)) is not None:
                as_str(value, name)  # an end-user id: Converse has none, and it changes nothing
        neutral_sampling(fields)
        fields.finish()
        return out

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The OpenAI chat completion for a Converse answer."""
        return readable(lambda: _completion(body, asked))

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """OpenAI chat completion chunks for ConverseStream's events."""
        return relay(events, _Chunks(asked, include_usage(client_body)), "openai")


# -- the request ------------------------------------------------------------------------------------


def _messages(messages: Any, fields: Fields, turns: bw.Turns) -> list[dict[str, Any]]:
    """The system blocks; the turns go into `turns`."""
    system: list[dict[str, Any]] = []
    for path, role, message in openai_messages(messages, fields):
        content = message.get("content")
        if role in ("system", "developer"):
            system += _blocks(content, f"{path}.content", fields, media=False)
        elif role == "user":
            turns.add("user", _blocks(content, f"{path}.content", fields, media=True))
        elif role == "tool":
            call_id = as_str(message.get("tool_call_id"), f"{path}.tool_call_id")
            texts = [b for b in _blocks(content, f"{path}.content", fields, media=False) if "text" in b]
            turns.add("user", [bw.result(call_id, texts)])
        else:
            turns.add("assistant", _assistant(message, path, fields))
    return system


def _blocks(content: Any, path: str, fields: Fields, *, media: bool) -> list[dict[str, Any]]:
    """A string or content parts -> text blocks, and image and document blocks where `media`
    (each followed by a cache point when its part asks for one)."""
    readers = _MEDIA if media else _TEXT
    marked = content_parts(content, path, fields, readers, "text, images and files" if media else "text only")
    return [block for pair in marked for block in pair]


def _text(part: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    fields.unknown_keys(part, ("type", "text", "cache_control"), path)
    return bw.marked({"text": as_str(part.get("text"), f"{path}.text")}, part, path)


def _image(part: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    where = f"{path}.image_url.url"
    url = image_url(part, path, fields, ("cache_control",))
    inline = split_data_url(url)
    if inline is None:
        bw.url_refused(url, where, fields)
        return []
    return bw.marked(bw.image(inline[0], inline[1], where, fields), part, path)


def _file(part: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    fields.unknown_keys(part, ("type", "file", "cache_control"), path)
    file = as_dict(part.get("file"), f"{path}.file")
    fields.unknown_keys(file, ("file_data", "filename", "file_id"), f"{path}.file")
    if file.get("file_data") is None:
        fields.refuse(f"{path}.file.file_id", f"{TARGET} cannot read OpenAI's uploaded files: send file_data")
        return []
    where = f"{path}.file.file_data"
    inline = split_data_url(as_str(file["file_data"], where))
    if inline is None:
        raise malformed(where, "a base64 data: URL")
    name = as_str(file.get("filename") or "document", f"{path}.file.filename")
    return bw.marked(bw.document(inline[0], {"bytes": inline[1]}, name, where, fields), part, path)


def _refusal(part: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    """A refusal of an earlier answer: its text."""
    return [{"text": as_str(part.get("refusal"), f"{path}.refusal")}]


_TEXT: dict[str, PartReader] = {"text": _text}
_ASSISTANT: dict[str, PartReader] = {"text": _text, "refusal": _refusal}
_MEDIA: dict[str, PartReader] = {"text": _text, "image_url": _image, "file": _file}


def _assistant(message: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    """Earlier reasoning first (signed thinking blocks, as they came back), then text, then tool uses."""
    blocks: list[dict[str, Any]] = []
    for where, block in items(message.get("thinking_blocks") or [], f"{path}.thinking_blocks"):
        kind = block.get("type")
        if kind == "thinking":
            text = as_str(block.get("thinking") or "", f"{where}.thinking")
            blocks.append(bw.reasoning(text, as_str(block.get("signature") or "", f"{where}.signature")))
        elif kind == "redacted_thinking":
            blocks.append(bw.redacted(as_str(block.get("data"), f"{where}.data")))
        else:
            raise malformed(f"{where}.type", "thinking or redacted_thinking")
    texts = content_parts(message.get("content"), f"{path}.content", fields, _ASSISTANT, "text")
    blocks += [b for found in texts for b in found if b.get("text") != ""]  # Converse takes no blank text
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        blocks.append({"text": message["refusal"]})
    for where, call, name, arguments in tool_calls(message, path, fields):
        blocks.append(bw.tool_use(as_str(call.get("id"), f"{where}.id"), name, arguments))
    return blocks


def _inference(fields: Fields) -> tuple[dict[str, Any], int | None]:
    """inferenceConfig, and the output limit the client set."""
    config: dict[str, Any] = {}
    limit, legacy = fields.pop("max_completion_tokens"), fields.pop("max_tokens")
    client_limit = None
    if limit is not None:
        client_limit = as_int(limit, "max_completion_tokens")
    elif legacy is not None:
        client_limit = as_int(legacy, "max_tokens")
    if client_limit is not None:
        config["maxTokens"] = client_limit
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        if (value := fields.pop(name)) is not None:
            config[key] = value
    if (stop := fields.pop("stop")) is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else as_list(stop, "stop")
    return config, client_limit


def _tools(fields: Fields, history: bool) -> dict[str, Any] | None:
    tools = fields.pop("tools")
    choice = fields.pop("tool_choice")
    parallel = fields.pop("parallel_tool_calls")
    specs: list[dict[str, Any]] = []
    for path, tool, function, name in function_tools(tools, fields, ("cache_control",)):
        spec = bw.tool_spec(name, function.get("description"), function.get("parameters"), function.get("strict"), path)
        specs += bw.marked(spec, tool, path)
    chosen: dict[str, Any] | None = None
    if choice is not None:
        if choice == "auto":
            chosen = {"auto": {}}
        elif choice == "required":
            chosen = {"any": {}}
        elif choice == "none":
            chosen = {}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            function = as_dict(choice.get("function"), "tool_choice.function")
            chosen = {"tool": {"name": as_str(function.get("name"), "tool_choice.function.name")}}
        elif isinstance(choice, dict | str):
            fields.refuse("tool_choice", f"{TARGET} takes auto, none, required or one function, not {choice!r}")
        else:
            raise malformed("tool_choice", "a string or an object")
    if parallel is False and specs:
        fields.refuse("parallel_tool_calls", f"{TARGET} has no way to keep the model to one call at a time")
    elif parallel not in (None, True, False):
        raise malformed("parallel_tool_calls", "a boolean")
    return bw.tool_config(specs, chosen, history, fields)


def _response_format(fields: Fields) -> dict[str, Any] | None:
    form = fields.pop("response_format")
    if form is None:
        return None
    form = as_dict(form, "response_format")
    kind = form.get("type")
    if kind == "json_schema":
        spec = as_dict(form.get("json_schema"), "response_format.json_schema")
        fields.unknown_keys(spec, ("name", "description", "schema", "strict"), "response_format.json_schema")
        schema = as_dict(spec.get("schema"), "response_format.json_schema.schema")
        return bw.output_format(schema, spec.get("name"), spec.get("description"))
    if kind == "json_object":
        fields.refuse("response_format", f"{TARGET} has no JSON mode without a schema: use json_schema")
    elif kind != "text":
        raise malformed("response_format.type", "text, json_object or json_schema")
    return None


def _model_fields(fields: Fields, client_limit: int | None) -> dict[str, Any]:
    """additionalModelRequestFields: `top_k`, and thinking (Anthropic's, or for `reasoning_effort`)."""
    extra: dict[str, Any] = {}
    if (top_k := fields.pop("top_k")) is not None:
        extra["top_k"] = as_int(top_k, "top_k")
    thinking = fields.pop("thinking")
    effort = fields.pop("reasoning_effort")
    if thinking is not None:
        extra["thinking"] = as_dict(thinking, "thinking")
    if effort is None or effort == "none":
        return extra
    if not isinstance(effort, str) or effort not in THINKING_BUDGET:
        raise malformed("reasoning_effort", "one of none, " + ", ".join(THINKING_BUDGET))
    if thinking is not None:
        fields.refuse("reasoning_effort", "it conflicts with the `thinking` given (set one of them)")
        return extra
    budget = thinking_budget(effort, client_limit, fields)
    if budget is None:
        return extra
    extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return extra


# -- the answer -------------------------------------------------------------------------------------


def _call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
    return {"id": block["toolUseId"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}


def _completion(body: dict[str, Any], asked: str) -> dict[str, Any]:
    """The OpenAI chat completion for a Converse answer (KeyError and the like when it is malformed)."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in bw.content(body):
        if isinstance(block.get("text"), str):
            text.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            calls.append(_call(block["toolUse"]))
        elif isinstance(block.get("reasoningContent"), dict):
            thinking.append(bw.thinking_block(block["reasoningContent"]))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
        message["thinking_blocks"] = thinking
    return {
        "id": bw.new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": asked,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": bw.finish_reason(body.get("stopReason") or "end_turn", bool(calls)),
                "logprobs": None,
            }
        ],
        "usage": openai_usage(bw.usage(body)),
        "system_fingerprint": None,
    }


# -- the stream --------------------------------------------------------------------------------------


class _Chunks(ChatChunks):
    """ConverseStream events in, OpenAI chat completion chunks out, for one stream."""

    def __init__(self, asked: str, include_usage: bool) -> None:
        super().__init__(asked, include_usage)
        self.id = bw.new_id("chatcmpl-")
        self.end = bw.StreamEnd()
        self.calls: dict[int, int] = {}  # Converse block index -> OpenAI tool_calls index
        self.thinking: dict[int, str] = {}  # Converse block index -> its reasoning so far

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The chunks for one ConverseStream event."""
        if (failure := bw.stream_failure(data)) is not None:
            self.done = True
            return [stream_error("openai", failure)]
        if "messageStart" in data:
            return [self.chunk({"role": "assistant", "content": ""})]
        if (use := bw.tool_start(data)) is not None:
            number = self.calls[use[0]] = len(self.calls)
            call = {"index": number, "id": use[1], "type": "function", "function": {"name": use[2], "arguments": ""}}
            return [self.chunk({"tool_calls": [call]})]
        if (found := bw.delta_of(data)) is not None:
            return self._delta(*found)
        if self.end.read(data):
            self.usage = self.end.usage
            return self.ending()
        if "messageStop" in data:
            return [self.chunk({}, bw.finish_reason(self.end.stop, bool(self.calls)))]
        return []  # contentBlockStop, and events to come

    def _delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        if isinstance(delta.get("text"), str):
            return [self.chunk({"content": delta["text"]})] if delta["text"] else []
        if isinstance(delta.get("toolUse"), dict) and index in self.calls:
            fragment = delta["toolUse"]["input"]
            if not fragment:
                return []
            return [self.chunk({"tool_calls": [{"index": self.calls[index], "function": {"arguments": fragment}}]})]
        reasoning = delta.get("reasoningContent")
        if not isinstance(reasoning, dict):
            return []  # citations: the text carries them
        if isinstance(reasoning.get("text"), str):
            self.thinking[index] = self.thinking.get(index, "") + reasoning["text"]
            return [self.chunk({"reasoning_content": reasoning["text"]})]
        block = bw.thinking_block({**reasoning, "text": self.thinking.get(index, "")})
        return [self.chunk({"thinking_blocks": [block]})]

    def close(self, marked: bool) -> list[bytes] | None:
        """A stream that stopped (messageStop) but sent no metadata is complete, without usage;
        one that ends before it stopped is not."""
        return self.ending() if self.end.stop is not None else None
