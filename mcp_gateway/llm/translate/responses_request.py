"""An OpenAI Responses API request read as a chat completions request, for a deployment the
Responses API reaches through chat (see `responses`).

`input` (a string, or items) becomes `messages`: `instructions` a system message first; message
items by role, their `input_text`/`output_text` parts text, `input_image` image parts (a URL or
a base64 `data:` URL), `input_file` file parts, `refusal` refusal parts; a `function_call` item
a tool call of the assistant message it follows (its `call_id` the call's id), a
`function_call_output` item a tool message; a `reasoning` item opens an assistant turn, its
`encrypted_content` carrying back the thinking blocks a translated answer put there (see
`responses_answer`). `tools` of type function become chat tools; `tool_choice`, `text.format`
(`response_format`), `reasoning.effort` (`reasoning_effort`), `max_output_tokens`
(`max_completion_tokens`) and the sampling fields their chat forms; the chat translator then
carries them to the provider, or refuses what it cannot carry.

Refused with a 400 naming the field, unless the model sets `drop_params`: OpenAI's built-in
tools (web search, file search, code interpreter...) and their items, `store: true`,
`background: true`, `truncation: auto`, logprobs. Refused whatever `drop_params` says, since
answering without them would answer another question: `previous_response_id`, `conversation`,
stored `prompt` templates and `item_reference` items, which need state OpenAI keeps on its side.

A chat translator names the chat fields it refuses (`messages[2].content[0]`); `Paths` names
them back as the client wrote them (`input[1].content[0]`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.translate.fields import Fields, as_dict, as_int, as_list, as_str, items, malformed

# Chat fields the Responses API names otherwise (a longer prefix wins).
_RENAMED = {
    "messages": "input",
    "response_format": "text.format",
    "response_format.json_schema": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning.effort",
    "max_completion_tokens": "max_output_tokens",
    "tool_choice.function": "tool_choice",
    "tool_choice.allowed_tools": "tool_choice",
}
# Request fields that pass to chat under the same name.
_SAME = (
    "temperature",
    "top_p",
    "top_logprobs",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
)
# What needs a conversation, a response or a prompt that OpenAI stores on its side.
_STATEFUL = ("previous_response_id", "conversation", "prompt")
# `include` values that ask for nothing a translated answer could lack: the reasoning's
# `encrypted_content` is always there when there is any, the rest concern built-in tools.
_INCLUDABLE = frozenset(
    (
        "reasoning.encrypted_content",
        "message.input_image.image_url",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    )
)
_CHOICES = ("auto", "none", "required")
_SUMMARIES = ("auto", "concise", "detailed")
_BUILT_IN = "is a built-in tool of OpenAI's, run on OpenAI's side; a translated request takes function tools only"


class Paths:
    """Chat field paths -> the Responses paths they were made from, for errors."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def add(self, chat: str, responses: str) -> None:
        """`chat` (and whatever is inside it) was made from `responses`."""
        self.known[chat] = responses

    def rename(self, param: str) -> str:
        """`param` as the client named it: its longest known prefix replaced."""
        cut = param
        while True:
            found = self.known.get(cut) or _RENAMED.get(cut)
            if found is not None:
                return found + param[len(cut) :]
            at = max(cut.rfind("."), cut.rfind("["))
            if at <= 0:
                return param
            cut = cut[:at]

    def renamed(self, error: LlmError) -> LlmError:
        """`error` naming the client's field rather than the chat field it became."""
        if error.param is None or (param := self.rename(error.param)) == error.param:
            return error
        message = error.message.replace(f"`{error.param}`", f"`{param}`")
        return LlmError(
            error.kind, message, status=error.status, param=param, code=error.code, retry_after=error.retry_after
        )


def to_chat(body: Mapping[str, Any], model: ModelConfig, target: str, stream: bool) -> tuple[dict[str, Any], Paths]:
    """The chat completions body for a Responses body, and where each chat field came from."""
    fields = Fields(body, model, target)
    for name in _STATEFUL:
        if fields.pop(name) is not None:
            raise LlmError(
                "invalid_request",
                f"`{name}` needs state OpenAI keeps on its side, which {target} has not: "
                "send the whole conversation as `input` (and `store: false`)",
                param=name,
            )
    paths = Paths()
    chat: dict[str, Any] = {"model": fields.pop("model")}
    conversation = _Conversation(paths, fields)
    instructions = fields.pop("instructions")
    if instructions is not None:
        conversation.add({"role": "system", "content": as_str(instructions, "instructions")}, "instructions")
        paths.add("messages[0].content", "instructions")
    raw = fields.pop("input")
    if isinstance(raw, str):
        conversation.add({"role": "user", "content": raw}, "input")
        paths.add(f"messages[{len(conversation.messages) - 1}].content", "input")
    elif raw is None:
        raise malformed("input", "a string or an array of input items")
    else:
        for path, item in items(raw, "input"):
            conversation.item(item, path)
    chat["messages"] = conversation.finish()
    fields.pop("stream")
    options = fields.pop("stream_options")
    if options is not None:
        fields.unknown_keys(as_dict(options, "stream_options"), ("include_obfuscation",), "stream_options")
    if stream:
        # The usage chunk is where the Responses stream's usage comes from.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    if (limit := fields.pop("max_output_tokens")) is not None:
        chat["max_completion_tokens"] = as_int(limit, "max_output_tokens")
    for name in _SAME:
        if (value := fields.pop(name)) is not None:
            chat[name] = value
    _tools(fields, chat, paths)
    _tool_choice(fields, chat)
    _text(fields, chat)
    _reasoning(fields, chat)
    _include(fields)
    metadata = fields.pop("metadata")
    if metadata is not None:
        # Kept with the answer (it is echoed in the response object), never sent to the provider.
        for key, value in as_dict(metadata, "metadata").items():
            as_str(value, f"metadata.{key}")
    if (calls := fields.pop("max_tool_calls")) is not None:
        as_int(calls, "max_tool_calls")  # a cap on built-in tool calls: there are none
    fields.neutral("store", False)
    fields.neutral("background", False)
    fields.neutral("truncation", "disabled")
    fields.finish()
    return chat, paths


class _Conversation:
    """Chat messages built item by item. The items of one assistant turn (reasoning, a message,
    function calls) make one assistant message, as a chat turn holds them."""

    def __init__(self, paths: Paths, fields: Fields) -> None:
        self.paths = paths
        self.fields = fields
        self.messages: list[dict[str, Any]] = []
        self.turn: dict[str, Any] | None = None  # the assistant message items join, if any

    def add(self, message: dict[str, Any], path: str) -> str:
        """A message of its own, made from the item at `path`; its chat path."""
        self.turn = None
        where = f"messages[{len(self.messages)}]"
        self.messages.append(message)
        self.paths.add(where, path)
        return where

    def _assistant(self, path: str, fresh: bool) -> tuple[dict[str, Any], str]:
        """The assistant message an item joins (a new one when `fresh` or there is none), and its path."""
        if self.turn is None or fresh:
            message: dict[str, Any] = {"role": "assistant", "content": []}
            self.add(message, path)
            self.turn = message
        return self.turn, f"messages[{len(self.messages) - 1}]"

    def item(self, item: dict[str, Any], path: str) -> None:
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self._message(item, path)
        elif kind == "function_call":
            self._call(item, path)
        elif kind == "function_call_output":
            self._output(item, path)
        elif kind == "reasoning":
            self._reasoning(item, path)
        elif kind == "item_reference":
            raise LlmError(
                "invalid_request",
                f"`{path}` refers to an item OpenAI stored, which {self.fields.target} has not: send the item itself",
                param=path,
            )
        elif isinstance(kind, str):
            self.fields.refuse(path, f"`{kind}` items belong to OpenAI's built-in tools; only function calls translate")
        else:
            raise malformed(f"{path}.type", "message, function_call, function_call_output or reasoning")

    def _message(self, item: dict[str, Any], path: str) -> None:
        self.fields.unknown_keys(item, ("type", "role", "content", "id", "status", "phase"), path)
        role = item.get("role")
        content = item.get("content")
        if role == "assistant":
            # A message after one (or after calls) is a turn of its own; after reasoning, it joins it.
            fresh = self.turn is not None and (bool(self.turn["content"]) or "tool_calls" in self.turn)
            message, where = self._assistant(path, fresh=fresh)
            if isinstance(content, str):
                self.paths.add(f"{where}.content[{len(message['content'])}]", f"{path}.content")
                message["content"].append({"type": "text", "text": content})
            else:
                for part_path, part in items(content, f"{path}.content"):
                    chat_path = f"{where}.content[{len(message['content'])}]"
                    _append(message["content"], self._part(part, part_path, chat_path))
            return
        if role not in ("user", "system", "developer"):
            raise malformed(f"{path}.role", "user, assistant, system or developer")
        if isinstance(content, str):
            where = self.add({"role": role, "content": content}, path)
            self.paths.add(f"{where}.content", f"{path}.content")
            return
        parts: list[dict[str, Any]] = []
        where = self.add({"role": role, "content": parts}, path)
        for part_path, part in items(content, f"{path}.content"):
            _append(parts, self._part(part, part_path, f"{where}.content[{len(parts)}]"))

    def _part(self, part: dict[str, Any], path: str, chat: str) -> dict[str, Any] | None:
        """A content part as chat writes it (`chat`: its chat path); None when it was dropped."""
        self.paths.add(chat, path)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            self.fields.unknown_keys(part, ("type", "text", "annotations", "logprobs"), path)
            return {"type": "text", "text": as_str(part.get("text"), f"{path}.text")}
        if kind == "refusal":
            self.fields.unknown_keys(part, ("type", "refusal"), path)
            return {"type": "refusal", "refusal": as_str(part.get("refusal"), f"{path}.refusal")}
        if kind == "input_image":
            self.fields.unknown_keys(part, ("type", "image_url", "file_id", "detail"), path)
            if part.get("file_id") is not None:
                self.fields.refuse(f"{path}.file_id", "files uploaded to OpenAI cannot be read: send image_url")
                if part.get("image_url") is None:
                    return None
            url = as_str(part.get("image_url"), f"{path}.image_url")
            self.paths.add(f"{chat}.image_url.url", f"{path}.image_url")
            self.paths.add(f"{chat}.image_url.detail", f"{path}.detail")
            image = {"url": url} | ({"detail": part["detail"]} if part.get("detail") is not None else {})
            return {"type": "image_url", "image_url": image}
        if kind == "input_file":
            self.fields.unknown_keys(part, ("type", "file_data", "file_id", "filename", "file_url"), path)
            if part.get("file_url") is not None:
                self.fields.refuse(f"{path}.file_url", "the gateway fetches no file URLs: send file_data (base64)")
            file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
            if "file_data" not in file and "file_id" not in file:
                return None
            self.paths.add(f"{chat}.file", path)
            return {"type": "file", "file": file}
        if kind == "input_audio":
            self.fields.unknown_keys(part, ("type", "input_audio"), path)
            return {"type": "input_audio", "input_audio": part.get("input_audio")}
        if isinstance(kind, str):
            self.fields.refuse(path, f"`{kind}` content has no chat form")
            return None
        raise malformed(f"{path}.type", "input_text, input_image, input_file or output_text")

    def _call(self, item: dict[str, Any], path: str) -> None:
        self.fields.unknown_keys(item, ("type", "call_id", "name", "arguments", "id", "status", "extra_content"), path)
        message, where = self._assistant(path, fresh=False)
        calls = message.setdefault("tool_calls", [])
        chat = f"{where}.tool_calls[{len(calls)}]"
        self.paths.add(chat, path)
        self.paths.add(f"{chat}.id", f"{path}.call_id")
        self.paths.add(f"{chat}.function", path)
        function = {"name": as_str(item.get("name"), f"{path}.name"),
                    "arguments": as_str(item.get("arguments"), f"{path}.arguments")}  # fmt: skip
        call: dict[str, Any] = {"id": as_str(item.get("call_id"), f"{path}.call_id"), "type": "function",
                                "function": function}  # fmt: skip
        if item.get("extra_content") is not None:
            call["extra_content"] = item["extra_content"]  # Gemini's thought signature (see responses_answer)
        calls.append(call)

    def _output(self, item: dict[str, Any], path: str) -> None:
        self.fields.unknown_keys(item, ("type", "call_id", "output", "id", "status"), path)
        call_id = as_str(item.get("call_id"), f"{path}.call_id")
        output = item.get("output")
        message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id}
        where = self.add(message, path)
        self.paths.add(f"{where}.tool_call_id", f"{path}.call_id")
        self.paths.add(f"{where}.content", f"{path}.output")
        if isinstance(output, str):
            message["content"] = output
            return
        parts: list[dict[str, Any]] = []
        for part_path, part in items(output, f"{path}.output"):
            _append(parts, self._part(part, part_path, f"{where}.content[{len(parts)}]"))
        message["content"] = parts

    def _reasoning(self, item: dict[str, Any], path: str) -> None:
        """Earlier reasoning opens its turn. Its summary is the provider's to use or leave (none
        takes another model's); thinking blocks a translated answer carried in
        `encrypted_content` go back with the turn (Anthropic wants them in a tool loop)."""
        self.fields.unknown_keys(item, ("type", "id", "summary", "content", "encrypted_content", "status"), path)
        message, where = self._assistant(path, fresh=True)
        as_list(item.get("summary") or [], f"{path}.summary")
        carried = item.get("encrypted_content")
        if carried is None:
            return
        try:
            blocks = json.loads(as_str(carried, f"{path}.encrypted_content")).get("thinking_blocks")
        except (ValueError, AttributeError):
            return  # OpenAI's own encrypted reasoning: no other provider can read it
        if isinstance(blocks, list):
            message["thinking_blocks"] = blocks
            self.paths.add(f"{where}.thinking_blocks", f"{path}.encrypted_content")

    def finish(self) -> list[dict[str, Any]]:
        """The messages; an assistant message's content as a string when it is one text part."""
        for message in self.messages:
            content = message.get("content")
            if message["role"] != "assistant" or not isinstance(content, list):
                continue
            if not content:
                message["content"] = None
            elif len(content) == 1 and content[0]["type"] == "text":
                message["content"] = content[0]["text"]
        return self.messages


def _append(parts: list[dict[str, Any]], part: dict[str, Any] | None) -> None:
    if part is not None:
        parts.append(part)


def _tools(fields: Fields, chat: dict[str, Any], paths: Paths) -> None:
    tools = fields.pop("tools")
    if tools is None:
        return
    translated = []
    for path, tool in items(tools, "tools"):
        kind = tool.get("type")
        if kind != "function":
            fields.refuse(path, f"`{kind}` {_BUILT_IN}")
            continue
        fields.unknown_keys(tool, ("type", "name", "description", "parameters", "strict"), path)
        function = {"name": as_str(tool.get("name"), f"{path}.name")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        paths.add(f"tools[{len(translated)}]", path)
        paths.add(f"tools[{len(translated)}].function", path)
        translated.append({"type": "function", "function": function})
    if translated:
        chat["tools"] = translated


def _tool_choice(fields: Fields, chat: dict[str, Any]) -> None:
    choice = fields.pop("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str) and choice in _CHOICES:
        chat["tool_choice"] = choice
        return
    if not isinstance(choice, dict):
        raise malformed("tool_choice", "auto, none, required or an object")
    kind = choice.get("type")
    if kind == "function":
        fields.unknown_keys(choice, ("type", "name"), "tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": as_str(choice.get("name"), "tool_choice.name")}}
    elif kind == "allowed_tools":
        fields.unknown_keys(choice, ("type", "mode", "tools"), "tool_choice")
        allowed = []
        for path, tool in items(choice.get("tools"), "tool_choice.tools"):
            if tool.get("type") != "function":
                fields.refuse(path, f"`{tool.get('type')}` {_BUILT_IN}")
                continue
            allowed.append({"type": "function", "function": {"name": as_str(tool.get("name"), f"{path}.name")}})
        mode = choice.get("mode")
        if mode not in ("auto", "required"):
            raise malformed("tool_choice.mode", "auto or required")
        chat["tool_choice"] = {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}}
    else:
        fields.refuse("tool_choice", f"`{kind}` {_BUILT_IN}")


def _text(fields: Fields, chat: dict[str, Any]) -> None:
    text = fields.pop("text")
    if text is None:
        return
    text = as_dict(text, "text")
    fields.unknown_keys(text, ("format", "verbosity"), "text")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    form = text.get("format")
    if form is None:
        return
    form = as_dict(form, "text.format")
    kind = form.get("type")
    if kind == "text":
        fields.unknown_keys(form, ("type",), "text.format")
    elif kind == "json_object":
        fields.unknown_keys(form, ("type",), "text.format")
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        fields.unknown_keys(form, ("type", "name", "schema", "description", "strict"), "text.format")
        spec: dict[str, Any] = {"schema": as_dict(form.get("schema"), "text.format.schema")}
        if form.get("name") is not None:
            spec["name"] = as_str(form["name"], "text.format.name")
        for key in ("description", "strict"):
            if form.get(key) is not None:
                spec[key] = form[key]
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    else:
        raise malformed("text.format.type", "text, json_object or json_schema")


def _reasoning(fields: Fields, chat: dict[str, Any]) -> None:
    """`reasoning.effort` is chat's `reasoning_effort`. The summary wanted changes nothing: what a
    provider says of its thinking comes back as the reasoning item's summary."""
    reasoning = fields.pop("reasoning")
    if reasoning is None:
        return
    reasoning = as_dict(reasoning, "reasoning")
    fields.unknown_keys(reasoning, ("effort", "summary", "generate_summary"), "reasoning")
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    for key in ("summary", "generate_summary"):
        if reasoning.get(key) not in (None, *_SUMMARIES):
            raise malformed(f"reasoning.{key}", "auto, concise or detailed")


def _include(fields: Fields) -> None:
    include = fields.pop("include")
    if include is None:
        return
    for i, value in enumerate(as_list(include, "include")):
        if as_str(value, f"include[{i}]") not in _INCLUDABLE:
            fields.refuse(f"include[{i}]", f"a translated answer has no `{value}`")
