"""An Anthropic Messages client served by an AWS Bedrock deployment (the Converse API).

Written directly rather than through OpenAI chat: Converse carries what Anthropic has and OpenAI
chat has not (tool errors as errors, documents, cache points, signed thinking across a tool
loop, token counting).

The request: `system` becomes Converse's `system`; user and assistant turns its messages;
`tool_result` blocks `toolResult` blocks (text and images; `is_error` as `status: error`)
first in their user turn; images and documents (base64, and plain-text documents) `image` and
`document` blocks (a document's `title` its name, its `context` kept); `tool_use` blocks
`toolUse`, thinking blocks `reasoningContent` (signed, or redacted). Every `cache_control`
mark becomes a `cachePoint` block after the block it marks (system, messages, tools). Tools
become `toolSpec`s, `tool_choice` `auto`/`any`/`tool` Converse's own, `none` no tools (refused
when the conversation already used some). `max_tokens`, `temperature`, `top_p` and
`stop_sequences` go into `inferenceConfig`; `top_k` and `thinking` into
`additionalModelRequestFields`, as Anthropic's models on Bedrock take them;
`output_config.format` is `outputConfig.textFormat` and `output_config.effort`
`outputConfig.effort`. `metadata.user_id` identifies the end user to Anthropic; Converse has no
such field and it changes no answer: accepted, not sent.

Token counting (`/v1/messages/count_tokens`) is Bedrock's CountTokens on the same Converse input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.translate import bedrock_wire as bw
from mcp_gateway.llm.translate.anthropic_events import Blocks, event
from mcp_gateway.llm.translate.fields import (
    ANTHROPIC_ONLY,
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
from mcp_gateway.llm.translate.mappings import anthropic_usage, readable
from mcp_gateway.llm.translate.relay import relay, stream_error
from mcp_gateway.llm.usage import Usage

TARGET = bw.TARGET
_TEXT_KEYS = ("type", "text", "cache_control", "citations")
_SERVICE_TIER = {"standard_only": "default"}


class AnthropicToBedrock:
    """Anthropic `messages` and `count_tokens` requests to Bedrock, and the answers back."""

    def operation(self, client_operation: str) -> str | None:
        """Messages are served by Converse, token counting by CountTokens."""
        return {"messages": "converse", "count_tokens": "count_tokens"}.get(client_operation)

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The Converse (or CountTokens) body for an Anthropic Messages (or count_tokens) body."""
        fields = request_fields(body, model, TARGET)
        turns = bw.Turns()
        for path, message in items(fields.pop("messages"), "messages"):
            _message(message, path, fields, turns)
        out: dict[str, Any] = {"messages": turns.finish()}
        if (system := fields.pop("system")) is not None:
            out["system"] = _system(system, fields)
        if (config := _tools(fields, turns.tools_used)) is not None:
            out["toolConfig"] = config
        inference: dict[str, Any] = {}
        if (limit := fields.pop("max_tokens")) is not None:
            inference["maxTokens"] = as_int(limit, "max_tokens")
        for name, key in (("temperature", "temperature"), ("top_p", "topP")):
            if (value := fields.pop(name)) is not None:
                inference[key] = value
        if (stop := fields.pop("stop_sequences")) is not None:
            inference["stopSequences"] = as_list(stop, "stop_sequences")
        if inference:
            out["inferenceConfig"] = inference
        extra: dict[str, Any] = {}
        if (top_k := fields.pop("top_k")) is not None:
            extra["top_k"] = as_int(top_k, "top_k")
        if (thinking := fields.pop("thinking")) is not None:
            extra["thinking"] = as_dict(thinking, "thinking")
        if extra:
            out["additionalModelRequestFields"] = extra
        if (output := _output(fields)) is not None:
            out["outputConfig"] = output
        if (metadata := fields.pop("metadata")) is not None:
            fields.unknown_keys(as_dict(metadata, "metadata"), ("user_id",), "metadata")
        if (tier := fields.pop("service_tier")) is not None and tier != "auto":
            if tier in _SERVICE_TIER:
                out["serviceTier"] = {"type": _SERVICE_TIER[tier]}
            else:
                fields.refuse("service_tier", f"{TARGET} has no `{tier}` tier (auto and standard_only translate)")
        if fields.pop("cache_control") is not None:
            fields.refuse("cache_control", f"{TARGET} caches up to marked blocks only: put cache_control on a block")
        fields.neutral("speed", "standard")
        fields.absent(*ANTHROPIC_ONLY)
        fields.finish()
        return bw.count_request(out) if operation == "count_tokens" else out

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The Anthropic message (or token count) for a Converse (or CountTokens) answer."""
        if operation == "count_tokens":
            return readable(lambda: {"input_tokens": int(body["inputTokens"])})
        return readable(lambda: _message_answer(body, asked))

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """Anthropic stream events for ConverseStream's events."""
        return relay(events, _Events(asked), "anthropic")


# -- the request ------------------------------------------------------------------------------------


def _system(system: Any, fields: Fields) -> list[dict[str, Any]]:
    """System text blocks (and the cache points their marks ask for)."""
    return [b for found in content_parts(system, "system", fields, _SYSTEM, "text") for b in found]


def _text(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any]:
    fields.unknown_keys(block, _TEXT_KEYS, path)
    return {"text": as_str(block.get("text"), f"{path}.text")}


def _message(message: dict[str, Any], path: str, fields: Fields, turns: bw.Turns) -> None:
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise malformed(f"{path}.role", "user or assistant")
    fields.unknown_keys(message, ("role", "content"), path)
    readers, what = (_USER, _USER_HOLDS) if role == "user" else (_ASSISTANT, _ASSISTANT_HOLDS)
    blocks = content_parts(message.get("content"), f"{path}.content", fields, readers, what)
    turns.add(role, [b for found in blocks for b in found])


def _marked(read: PartReader) -> PartReader:
    """`read`, followed by the cache point its block's `cache_control` asks for."""
    return lambda block, path, fields: bw.marked(read(block, path, fields), block, path)


def _source(block: dict[str, Any], path: str, fields: Fields, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """A block's `source` when it is of one of `kinds` (base64, text); a URL is refused, never fetched."""
    source = as_dict(block.get("source"), f"{path}.source")
    form = source.get("type")
    if form == "url":
        bw.url_refused(as_str(source.get("url"), f"{path}.source.url"), f"{path}.source.url", fields, block["type"])
        return None
    if form not in kinds:
        fields.refuse(f"{path}.source", f"{TARGET} takes {block['type']}s as {' or '.join(kinds)} data, not {form!r}")
        return None
    fields.unknown_keys(source, ("type", "media_type", "data"), f"{path}.source")
    return source


def _image(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    fields.unknown_keys(block, ("type", "source", "cache_control"), path)
    source = _source(block, path, fields, ("base64",))
    if source is None:
        return None
    media_type = as_str(source.get("media_type"), f"{path}.source.media_type")
    return bw.image(media_type, as_str(source.get("data"), f"{path}.source.data"), f"{path}.source", fields)


def _document(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    # Citations come back as blocks of their own, which are not translated: refused, not lost.
    fields.unknown_keys(block, ("type", "source", "title", "context", "cache_control"), path)
    source = _source(block, path, fields, ("base64", "text"))
    if source is None:
        return None
    data = as_str(source.get("data"), f"{path}.source.data")
    media_type = as_str(source.get("media_type") or "text/plain", f"{path}.source.media_type")
    inner = {"bytes": data} if source["type"] == "base64" else {"text": data}
    title = as_str(block.get("title") or "document", f"{path}.title")
    found = bw.document(media_type, inner, title, f"{path}.source", fields)
    if found is not None and block.get("context") is not None:
        found["document"]["context"] = as_str(block["context"], f"{path}.context")
    return found


def _tool_result(block: dict[str, Any], path: str, fields: Fields) -> list[dict[str, Any]]:
    """A toolResult block; a cache mark on it, or on the last of its parts (Converse has no
    cache point inside a result), is a cache point right after it: the same prefix."""
    fields.unknown_keys(block, ("type", "tool_use_id", "content", "is_error", "cache_control"), path)
    call_id = as_str(block.get("tool_use_id"), f"{path}.tool_use_id")
    content = block.get("content")
    inner = content_parts(content or "", f"{path}.content", fields, _RESULT, "text, images and documents")
    parts = content if isinstance(content, list) else []
    mark = block.get("cache_control") or next((p.get("cache_control") for p in reversed(parts) if isinstance(p, dict)
                                              and p.get("cache_control") is not None), None)  # fmt: skip
    found = bw.result(call_id, inner, block.get("is_error") is True)
    return bw.marked(found, {"cache_control": mark}, path)


def _tool_use(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any]:
    fields.unknown_keys(block, ("type", "id", "name", "input", "cache_control"), path)
    return bw.tool_use(
        as_str(block.get("id"), f"{path}.id"),
        as_str(block.get("name"), f"{path}.name"),
        as_dict(block.get("input"), f"{path}.input"),
    )


def _thinking(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any]:
    fields.unknown_keys(block, ("type", "thinking", "signature"), path)
    signature = block.get("signature")
    return bw.reasoning(
        as_str(block.get("thinking") or "", f"{path}.thinking"),
        as_str(signature, f"{path}.signature") if signature is not None else None,
    )


def _redacted(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any]:
    fields.unknown_keys(block, ("type", "data"), path)
    return bw.redacted(as_str(block.get("data"), f"{path}.data"))


# What each turn (and a tool result) holds, read block by block.
_USER: dict[str, PartReader] = {
    "text": _marked(_text),
    "image": _marked(_image),
    "document": _marked(_document),
    "tool_result": _tool_result,
}
_USER_HOLDS = "text, images, documents and tool results"
_ASSISTANT: dict[str, PartReader] = {
    "text": _marked(_text),
    "tool_use": _marked(_tool_use),
    "thinking": _marked(_thinking),
    "redacted_thinking": _marked(_redacted),
}
_ASSISTANT_HOLDS = "text, tool uses and thinking"
_RESULT: dict[str, PartReader] = {"text": _text, "image": _image, "document": _document}
_SYSTEM: dict[str, PartReader] = {"text": _marked(_text)}


def _tools(fields: Fields, history: bool) -> dict[str, Any] | None:
    tools = fields.pop("tools")
    choice = fields.pop("tool_choice")
    specs: list[dict[str, Any]] = []
    for path, tool in items(tools or [], "tools"):
        if tool.get("type") not in (None, "custom"):
            fields.refuse(path, f"{TARGET} takes client tools only, not Anthropic's {tool.get('type')!r} tool")
            continue
        fields.unknown_keys(tool, ("type", "name", "description", "input_schema", "cache_control", "strict"), path)
        schema = as_dict(tool.get("input_schema"), f"{path}.input_schema")
        name = as_str(tool.get("name"), f"{path}.name")
        specs += bw.marked(bw.tool_spec(name, tool.get("description"), schema, tool.get("strict"), path), tool, path)
    chosen: dict[str, Any] | None = None
    if choice is not None:
        choice = as_dict(choice, "tool_choice")
        fields.unknown_keys(choice, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
        kind = choice.get("type")
        if kind in ("auto", "any"):
            chosen = {kind: {}}
        elif kind == "tool":
            chosen = {"tool": {"name": as_str(choice.get("name"), "tool_choice.name")}}
        elif kind == "none":
            chosen = {}
        else:
            raise malformed("tool_choice.type", "auto, any, tool or none")
        if choice.get("disable_parallel_tool_use") is True and specs:
            fields.refuse("tool_choice.disable_parallel_tool_use", f"{TARGET} has no way to keep the model to one call")
    return bw.tool_config(specs, chosen, history, fields)


def _output(fields: Fields) -> dict[str, Any] | None:
    """`output_config` -> outputConfig: structured output (`format`) and `effort`."""
    output = fields.pop("output_config")
    if output is None:
        return None
    output = as_dict(output, "output_config")
    fields.unknown_keys(output, ("effort", "format"), "output_config")
    config: dict[str, Any] = {}
    if (effort := output.get("effort")) is not None:
        config["effort"] = as_str(effort, "output_config.effort")
    if (form := output.get("format")) is not None:
        form = as_dict(form, "output_config.format")
        if form.get("type") != "json_schema":
            raise malformed("output_config.format.type", "json_schema")
        config["textFormat"] = bw.output_format(as_dict(form.get("schema"), "output_config.format.schema"))
    return config or None


# -- the answer -------------------------------------------------------------------------------------


def _block(block: dict[str, Any]) -> dict[str, Any] | None:
    """An answer's Converse block as an Anthropic content block (None: a kind never asked for)."""
    if isinstance(block.get("text"), str):
        return {"type": "text", "text": block["text"]}
    if isinstance(block.get("toolUse"), dict):
        use = block["toolUse"]
        return {"type": "tool_use", "id": use["toolUseId"], "name": use["name"], "input": use.get("input") or {}}
    if isinstance(block.get("reasoningContent"), dict):
        return bw.thinking_block(block["reasoningContent"])
    return None


def _message_answer(body: dict[str, Any], asked: str) -> dict[str, Any]:
    """The Anthropic message for a Converse answer (KeyError and the like when malformed)."""
    content = [found for block in bw.content(body) if (found := _block(block)) is not None]
    return _reply(asked, content, bw.stop_reason(body.get("stopReason") or "end_turn"), bw.usage(body))


def _reply(asked: str, content: list[dict[str, Any]], stop: str | None, usage: Usage) -> dict[str, Any]:
    """An Anthropic message, answering as model `asked` (Converse gives no id: a new one)."""
    shaped = {"id": bw.new_id("msg_"), "type": "message", "role": "assistant", "model": asked, "content": content}
    return shaped | {"stop_reason": stop, "stop_sequence": None, "usage": anthropic_usage(usage)}


class _Events(Blocks):
    """ConverseStream events in, Anthropic stream events out, for one stream."""

    def __init__(self, asked: str) -> None:
        super().__init__()  # blocks: "text", "thinking" or "tool_use", one open at a time
        self.asked = asked
        self.end = bw.StreamEnd()
        self.block_of: dict[int, int] = {}  # Converse block index -> Anthropic block index
        self.done = False

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The events for one ConverseStream event."""
        if (failure := bw.stream_failure(data)) is not None:
            self.done = True
            return [stream_error("anthropic", failure)]
        if "messageStart" in data:
            # Converse reports usage at the end only: zeros here, the counts in message_delta.
            start = _reply(self.asked, [], None, Usage())
            return [event("message_start", {"message": start})]
        if (use := bw.tool_start(data)) is not None:
            return self._start(use[0], "tool_use", {"type": "tool_use", "id": use[1], "name": use[2], "input": {}})
        if (found := bw.delta_of(data)) is not None:
            return self._converse_delta(*found)
        if "contentBlockStop" in data:
            return self._close()
        if self.end.read(data):
            return self.finish()
        return []  # messageStop (read above), and events to come

    def _start(self, index: int, kind: str, block: dict[str, Any]) -> list[bytes]:
        """A new Anthropic block for Converse block `index` (the one open before is closed)."""
        out = self._close()
        self.open = None
        out += self._open(kind, block)
        self.block_of[index] = self.index
        return out

    def _converse_delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        reasoning = delta.get("reasoningContent")
        if isinstance(delta.get("text"), str):
            kind, block, inner = "text", {"type": "text", "text": ""}, {"type": "text_delta", "text": delta["text"]}
        elif isinstance(delta.get("toolUse"), dict):
            kind, block = "tool_use", {}
            inner = {"type": "input_json_delta", "partial_json": delta["toolUse"]["input"]}
        elif isinstance(reasoning, dict) and isinstance(reasoning.get("redactedContent"), str):
            block = {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
            return [*self._start(index, "redacted_thinking", block), *self._close()]
        elif isinstance(reasoning, dict):
            kind, block = "thinking", {"type": "thinking", "thinking": "", "signature": ""}
            if isinstance(reasoning.get("signature"), str):
                inner = {"type": "signature_delta", "signature": reasoning["signature"]}
            else:
                inner = {"type": "thinking_delta", "thinking": reasoning["text"]}
        else:
            return []  # citations: the text carries them
        out: list[bytes] = []
        if self.block_of.get(index) != self.index or self.open is None:
            if kind == "tool_use":
                raise KeyError(f"a tool use delta for block {index}, which never started")
            out += self._start(index, kind, block)
        out.append(self._delta(inner))
        return out

    def finish(self) -> list[bytes]:
        """The stop reason and the usage, and the end of the message."""
        self.done = True
        out = self._close()
        delta = {"stop_reason": bw.stop_reason(self.end.stop or "end_turn"), "stop_sequence": None}
        out += [event("message_delta", {"delta": delta, "usage": anthropic_usage(self.end.usage)}),
                event("message_stop", {})]  # fmt: skip
        return out

    def close(self, marked: bool) -> list[bytes] | None:
        """A stream that stopped (messageStop) but sent no metadata is complete, without usage;
        one that ends before it stopped is not."""
        return self.finish() if self.end.stop is not None else None
