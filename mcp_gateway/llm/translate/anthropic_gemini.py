"""An Anthropic Messages client served by a Gemini deployment (AI Studio or Vertex AI).

Written directly rather than through OpenAI chat: that path would lose what Gemini has and
OpenAI chat has not (`top_k`, token counting, tool errors as errors, PDFs, thinking with its
signatures across a tool loop).

The request: `system` becomes `systemInstruction`; user turns `user` and assistant turns `model`
contents; `tool_result` blocks `functionResponse` parts named after their `tool_use`
(`{"output": ...}`, or `{"error": ...}` when `is_error`), ahead of the rest of their turn;
images and PDF documents (base64, or gs:// and Files API URIs) media parts; plain-text documents
text. Tools become `functionDeclarations` with their `input_schema` as it is, `tool_choice`
Gemini's function calling mode (`auto`/`any`/`tool`/`none` -> AUTO/ANY/ANY with
`allowedFunctionNames`/NONE; a `strict` tool: VALIDATED); `stop_sequences`, `temperature`,
`top_p`, `top_k` and `max_tokens` go into `generationConfig`. Thinking: a budget is Gemini's
budget (1.x, 2.x) or the level it matches (3 on), adaptive thinking is Gemini's dynamic
thinking, `output_config.effort` a level or budget, `output_config.format`
`responseJsonSchema`. Gemini's thought signatures ride in thinking blocks: each answer part
that has one is preceded by a thinking block holding it (with the thought summary, when
thoughts were asked for), and a thinking block sent back gives its signature to the part after
it. `cache_control` marks are left out (Gemini caches prompt prefixes by itself), and so is
`metadata.user_id`, which identifies the end user to Anthropic and changes nothing in the answer.

Token counting (`/v1/messages/count_tokens`) is Gemini's `countTokens`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.translate import gemini_wire as gw
from mcp_gateway.llm.translate.anthropic_events import Blocks, event
from mcp_gateway.llm.translate.fields import ANTHROPIC_ONLY, Fields, as_dict, as_int, as_list, as_str, items, malformed
from mcp_gateway.llm.translate.mappings import anthropic_usage, unreadable
from mcp_gateway.llm.translate.relay import MALFORMED, relay, stream_error
from mcp_gateway.llm.usage import Usage, from_gemini

TARGET = gw.TARGET
_CHOICE_MODES = {"auto": None, "any": "ANY", "none": "NONE"}
_TEXT_KEYS = ("type", "text", "cache_control", "citations")
_SOURCE_KEYS = {
    "base64": ("type", "media_type", "data"),
    "url": ("type", "url"),
    "text": ("type", "media_type", "data"),
}


class AnthropicToGemini:
    """Anthropic `messages` and `count_tokens` requests to Gemini, and the answers back."""

    def operation(self, client_operation: str) -> str | None:
        """Messages are served by generateContent, token counting by countTokens."""
        return {"messages": "generate", "count_tokens": "count_tokens"}.get(client_operation)

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The Gemini body for an Anthropic Messages (or count_tokens) body."""
        fields = Fields(body, model, TARGET)
        fields.pop("model")
        fields.pop("stream")
        fields.pop("cache_control")  # prompt caching: Gemini caches prefixes by itself
        out: dict[str, Any] = {"contents": _contents(fields.pop("messages"), fields)}
        if (system := fields.pop("system")) is not None:
            out["systemInstruction"] = {"parts": _system(system, fields)}
        _tools(fields, out)
        if operation == "count_tokens":
            # Counting takes no function calling mode (Vertex's countTokens has no such field),
            # and the mode adds no token to the prompt.
            out.pop("toolConfig", None)
        config: dict[str, Any] = {}
        if (limit := fields.pop("max_tokens")) is not None:
            config["maxOutputTokens"] = as_int(limit, "max_tokens")
        for name, key in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
            if (value := fields.pop(name)) is not None:
                config[key] = value
        if (stop := fields.pop("stop_sequences")) is not None:
            config["stopSequences"] = as_list(stop, "stop_sequences")
        _thinking(fields, config, provider_model)
        if config:
            out["generationConfig"] = config
        if (metadata := fields.pop("metadata")) is not None:
            metadata = as_dict(metadata, "metadata")
            fields.unknown_keys(metadata, ("user_id",), "metadata")
        fields.neutral("service_tier", "auto", "standard_only")
        fields.neutral("speed", "standard")
        fields.absent(*ANTHROPIC_ONLY)
        fields.finish()
        return out

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The Anthropic message (or token count) for a Gemini answer."""
        try:
            if operation == "count_tokens":
                return {"input_tokens": int(body["totalTokens"])}
            return _message(body, asked)
        except MALFORMED as exc:
            raise unreadable(exc) from None

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """Anthropic stream events for Gemini's SSE chunks."""
        return relay(events, _Events(asked), "anthropic")


# -- the request ------------------------------------------------------------------------------------


def _system(system: Any, fields: Fields) -> list[dict[str, Any]]:
    if isinstance(system, str):
        return [{"text": system}]
    parts = []
    for where, block in items(system, "system"):
        if block.get("type") != "text":
            raise malformed(f"{where}.type", "text")
        fields.unknown_keys(block, _TEXT_KEYS, where)
        parts.append({"text": as_str(block.get("text"), f"{where}.text")})
    return parts


def _contents(messages: Any, fields: Fields) -> list[dict[str, Any]]:
    contents = gw.Contents()
    for path, message in items(messages, "messages"):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise malformed(f"{path}.role", "user or assistant")
        fields.unknown_keys(message, ("role", "content"), path)
        content = message.get("content")
        if isinstance(content, str):
            contents.add("user" if role == "user" else "model", [{"text": content}])
            continue
        blocks = items(content, f"{path}.content")
        if role == "user":
            contents.add("user", _user(blocks, fields, contents))
        else:
            contents.add("model", _assistant(blocks, fields, contents))
    return contents.finish()


def _user(blocks: Iterator[tuple[str, dict[str, Any]]], fields: Fields, contents: gw.Contents) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for where, block in blocks:
        kind = block.get("type")
        found: dict[str, Any] | None = None
        if kind == "text":
            fields.unknown_keys(block, _TEXT_KEYS, where)
            found = {"text": as_str(block.get("text"), f"{where}.text")}
        elif kind in ("image", "document"):
            found = _media(block, where, fields)
        elif kind == "tool_result":
            fields.unknown_keys(block, ("type", "tool_use_id", "content", "is_error", "cache_control"), where)
            call_id = as_str(block.get("tool_use_id"), f"{where}.tool_use_id")
            output = _result_text(block.get("content"), where, fields)
            found = contents.answer(call_id, f"{where}.tool_use_id", output, error=block.get("is_error") is True)
        else:
            fields.refuse(where, f"{TARGET} takes text, images, documents and tool results here, not {kind!r}")
        if found is not None:
            parts.append(found)
    return parts


def _media(block: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    kind = block["type"]
    # A document's title, context and citations have no Gemini form: refused, not lost.
    fields.unknown_keys(block, ("type", "source", "cache_control"), path)
    source = as_dict(block.get("source"), f"{path}.source")
    form = source.get("type")
    if form not in _SOURCE_KEYS or (form == "text" and kind != "document"):
        fields.refuse(f"{path}.source", f"{TARGET} takes {kind}s as base64 data or a URI, not {form!r}")
        return None
    fields.unknown_keys(source, _SOURCE_KEYS[form], f"{path}.source")
    if form == "text":
        return {"text": as_str(source.get("data"), f"{path}.source.data")}
    if form == "url":
        return gw.media_part(as_str(source.get("url"), f"{path}.source.url"), f"{path}.source.url", fields, kind)
    media_type = as_str(source.get("media_type"), f"{path}.source.media_type")
    return {"inlineData": {"mimeType": media_type, "data": as_str(source.get("data"), f"{path}.source.data")}}


def _result_text(content: Any, path: str, fields: Fields) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for where, part in items(content, f"{path}.content"):
        if part.get("type") != "text":
            fields.refuse(where, f"a function response in {TARGET} holds text only, not {part.get('type')!r}")
            continue
        fields.unknown_keys(part, _TEXT_KEYS, where)
        texts.append(as_str(part.get("text"), f"{where}.text"))
    return "".join(texts)


def _assistant(
    blocks: Iterator[tuple[str, dict[str, Any]]], fields: Fields, contents: gw.Contents
) -> list[dict[str, Any]]:
    """A model turn; a thinking block's signature goes to the part after it (or, last in the
    turn, to the part before it when that has none)."""
    parts: list[dict[str, Any]] = []
    signature: str | None = None
    for where, block in blocks:
        kind = block.get("type")
        if kind == "thinking":
            found = block.get("signature")
            signature = as_str(found, f"{where}.signature") or None if found is not None else None
            continue
        if kind == "redacted_thinking":
            continue  # another provider's encrypted thinking: nothing Gemini can read
        if kind == "text":
            fields.unknown_keys(block, _TEXT_KEYS, where)
            part: dict[str, Any] = {"text": as_str(block.get("text"), f"{where}.text")}
            if signature:
                part["thoughtSignature"] = signature
        elif kind == "tool_use":
            fields.unknown_keys(block, ("type", "id", "name", "input", "cache_control"), where)
            part = contents.call(
                as_str(block.get("id"), f"{where}.id"),
                as_str(block.get("name"), f"{where}.name"),
                as_dict(block.get("input"), f"{where}.input"),
                signature,
            )
        else:
            fields.refuse(where, f"a model turn in {TARGET} holds text and tool calls, not {kind!r}")
            continue
        signature = None
        parts.append(part)
    if signature and parts and "thoughtSignature" not in parts[-1]:
        parts[-1]["thoughtSignature"] = signature
    return parts


def _tools(fields: Fields, out: dict[str, Any]) -> None:
    tools = fields.pop("tools")
    choice = fields.pop("tool_choice")
    declarations = []
    strict = False
    for path, tool in items(tools or [], "tools"):
        if tool.get("type") not in (None, "custom"):
            fields.refuse(path, f"{TARGET} takes function tools only, not Anthropic's {tool.get('type')!r} tool")
            continue
        fields.unknown_keys(tool, ("type", "name", "description", "input_schema", "cache_control", "strict"), path)
        schema = as_dict(tool.get("input_schema"), f"{path}.input_schema")
        declarations.append(
            gw.declaration(as_str(tool.get("name"), f"{path}.name"), tool.get("description"), schema, path)
        )
        strict = strict or tool.get("strict") is True
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    mode, names = ("VALIDATED" if strict else None), None
    if choice is not None:
        choice = as_dict(choice, "tool_choice")
        fields.unknown_keys(choice, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
        kind = choice.get("type")
        if isinstance(kind, str) and kind in _CHOICE_MODES:
            mode = _CHOICE_MODES[kind] or mode
        elif kind == "tool":
            mode, names = "ANY", [as_str(choice.get("name"), "tool_choice.name")]
        else:
            raise malformed("tool_choice.type", "auto, any, tool or none")
        if choice.get("disable_parallel_tool_use") is True and declarations:
            fields.refuse("tool_choice.disable_parallel_tool_use", f"{TARGET} has no way to keep the model to one call")
    if declarations and (config := gw.tool_config(mode, names)) is not None:
        out["toolConfig"] = config


def _thinking(fields: Fields, config: dict[str, Any], model: str) -> None:
    """`thinking` and `output_config` -> thinkingConfig, responseMimeType and responseJsonSchema."""
    thinking = fields.pop("thinking")
    output = fields.pop("output_config")
    include = True
    if thinking is not None:
        thinking = as_dict(thinking, "thinking")
        fields.unknown_keys(thinking, ("type", "budget_tokens", "display"), "thinking")
        include = thinking.get("display") != "omitted"
        kind = thinking.get("type")
        if kind == "enabled":
            budget = as_int(thinking.get("budget_tokens"), "thinking.budget_tokens")
            config["thinkingConfig"] = gw.thinking_for_budget(budget, model, include)
        elif kind == "adaptive":  # Gemini's dynamic thinking
            config["thinkingConfig"] = {"thinkingBudget": -1} if gw.budgeted(model) else {}
            if include:
                config["thinkingConfig"]["includeThoughts"] = True
        elif kind == "disabled":
            config["thinkingConfig"] = gw.thinking_for_effort("none", model)
        else:
            raise malformed("thinking.type", "enabled, adaptive or disabled")
    if output is None:
        return
    output = as_dict(output, "output_config")
    fields.unknown_keys(output, ("effort", "format"), "output_config")
    if (effort := output.get("effort")) is not None:
        if not isinstance(effort, str) or effort not in gw.THINKING_BUDGET:
            raise malformed("output_config.effort", "one of " + ", ".join(gw.THINKING_BUDGET))
        chosen = gw.thinking_for_effort(effort, model)  # explicit: it wins over a budget
        chosen["includeThoughts"] = include and thinking is not None and thinking.get("type") != "disabled"
        config["thinkingConfig"] = chosen
    if (form := output.get("format")) is not None:
        form = as_dict(form, "output_config.format")
        if form.get("type") != "json_schema":
            raise malformed("output_config.format.type", "json_schema")
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = as_dict(form.get("schema"), "output_config.format.schema")


# -- the answer -------------------------------------------------------------------------------------


def _blocks(candidate: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """A candidate's content blocks, thinking blocks carrying the thought signatures; and
    whether it called a function."""
    blocks: list[dict[str, Any]] = []
    thought: list[str] = []
    called = False
    for piece in gw.pieces(candidate):
        if piece.kind == "thought":
            thought.append(piece.text)
            if piece.signature:
                blocks.append({"type": "thinking", "thinking": "".join(thought), "signature": piece.signature})
                thought = []
            continue
        if piece.signature or thought:
            blocks.append({"type": "thinking", "thinking": "".join(thought), "signature": piece.signature or ""})
            thought = []
        if piece.kind == "call":
            called = True
            blocks.append({"type": "tool_use", "id": piece.id, "name": piece.name, "input": piece.args})
        elif piece.text:
            blocks.append({"type": "text", "text": piece.text})
    if thought:
        blocks.append({"type": "thinking", "thinking": "".join(thought), "signature": ""})
    return blocks, called


def _message(body: dict[str, Any], asked: str) -> dict[str, Any]:
    """The Anthropic message for a generateContent answer (KeyError and the like when malformed)."""
    candidates = body.get("candidates") or [{}]
    candidate = candidates[0]
    content, called = _blocks(candidate)
    reason = "refusal" if gw.blocked(body) else gw.stop_reason(candidate.get("finishReason") or "STOP", called)
    return {
        "id": gw.response_id(body, "msg_"),
        "type": "message",
        "role": "assistant",
        "model": asked,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": anthropic_usage(from_gemini(body.get("usageMetadata")) or Usage()),
    }


class _Events(Blocks):
    """Gemini SSE chunks in, Anthropic stream events out, for one stream (the first candidate)."""

    def __init__(self, asked: str) -> None:
        self.asked = asked
        self.started = False
        super().__init__()  # blocks: "text" or "thinking"
        self.called = False
        self.reason: str | None = None
        self.usage = Usage()
        self.done = False

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The events for one chunk (its usage is a running total: the last one counts)."""
        if isinstance(data.get("error"), dict):
            self.done = True
            return [stream_error("anthropic", str(data["error"].get("message") or "the provider's stream failed"))]
        self.usage = from_gemini(data.get("usageMetadata")) or self.usage
        out: list[bytes] = []
        if not self.started:
            self.started = True
            start = {
                "id": gw.response_id(data, "msg_"),
                "type": "message",
                "role": "assistant",
                "model": self.asked,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**anthropic_usage(self.usage), "output_tokens": 0},
            }
            out.append(event("message_start", {"message": start}))
        if gw.blocked(data):
            self.reason = "refusal"
            return out
        candidates = data.get("candidates") or ()
        candidate = next((c for c in candidates if c.get("index", 0) == 0), None)
        if candidate is None:
            return out
        for piece in gw.pieces(candidate):
            out += self._piece(piece)
        if (reason := candidate.get("finishReason")) is not None:
            self.reason = gw.stop_reason(reason, self.called)
        return out

    def _piece(self, piece: gw.Piece) -> list[bytes]:
        out: list[bytes] = []
        if piece.kind == "thought":
            out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if piece.text:
                out.append(self._delta({"type": "thinking_delta", "thinking": piece.text}))
            if piece.signature:
                out.append(self._delta({"type": "signature_delta", "signature": piece.signature}))
                out += self._close()
            return out
        if piece.signature:  # the signature of this part: a thinking block ahead of it holds it
            out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta({"type": "signature_delta", "signature": piece.signature}))
            out += self._close()
        if piece.kind == "call":
            self.called = True
            out += self._close()
            self.index += 1
            block = {"type": "tool_use", "id": piece.id, "name": piece.name, "input": {}}
            arguments = json.dumps(piece.args, ensure_ascii=False)
            out += [
                event("content_block_start", {"index": self.index, "content_block": block}),
                self._delta({"type": "input_json_delta", "partial_json": arguments}),
                event("content_block_stop", {"index": self.index}),
            ]
        elif piece.text:
            out += self._open("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": piece.text}))
        return out

    def close(self, marked: bool) -> list[bytes] | None:
        """Gemini's stream simply ends after the chunk that finishes: then the stop reason and the
        usage. A stream that ends before any finish is incomplete."""
        if self.reason is None:
            return None
        self.done = True
        out = self._close()
        delta = {"delta": {"stop_reason": self.reason, "stop_sequence": None}, "usage": anthropic_usage(self.usage)}
        out += [event("message_delta", delta), event("message_stop", {})]
        return out
