"""Reading an OpenAI chat completions request, whatever format it is translated to: its
messages by role, the tool calls of its assistant messages, the fields that change nothing at
their neutral values, and whether its stream asked for usage."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mcp_gateway.llm.translate.fields import OPENAI_ONLY, Fields, as_dict, as_str, items, malformed

# The keys of each role's messages that translations read.
MESSAGE_KEYS: dict[str, tuple[str, ...]] = {
    "system": ("role", "content"),
    "developer": ("role", "content"),
    "user": ("role", "content"),
    "tool": ("role", "content", "tool_call_id"),
    # `annotations` are citations of a past answer: its text carries them. Earlier reasoning
    # (`reasoning_content`, `thinking_blocks`) is the target's to use or leave.
    "assistant": ("role", "content", "tool_calls", "refusal", "reasoning_content", "thinking_blocks", "annotations"),
}


def openai_messages(
    messages: Any, fields: Fields, keys: Mapping[str, Iterable[str]] = MESSAGE_KEYS
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The messages as (path, role, message), each checked: a role not in `keys` is the client's
    400 (the deprecated `function` role is refused: nothing carries it), a key its role does not
    have (`keys[role]`) is refused."""
    for path, message in items(messages, "messages"):
        role = message.get("role")
        if not isinstance(role, str) or role not in keys:
            if role == "function":
                fields.refuse(path, "function messages (the deprecated functions API) have no equivalent; use tools")
                continue
            raise malformed(f"{path}.role", "system, developer, user, assistant or tool")
        fields.unknown_keys(message, keys[role], path)
        yield path, role, message


def tool_calls(message: dict[str, Any], path: str, fields: Fields) -> Iterator[tuple[str, dict[str, Any], str, dict]]:
    """An assistant message's function calls as (path, call, name, arguments as an object); other
    kinds of call are refused (`fields.target` has function tools only)."""
    for where, call in items(message.get("tool_calls") or [], f"{path}.tool_calls"):
        if call.get("type", "function") != "function":
            fields.refuse(where, f"{fields.target} has function tools only")
            continue
        function = as_dict(call.get("function"), f"{where}.function")
        arguments = as_str(function.get("arguments") or "{}", f"{where}.function.arguments")
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise malformed(f"{where}.function.arguments", "a JSON object")
        yield where, call, as_str(function.get("name"), f"{where}.function.name"), parsed


def function_tools(
    tools: Any, fields: Fields, keys: Iterable[str] = ()
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """The function tools of `tools` as (path, tool, its function, its name), each checked (the
    tool's other `keys` the caller's to read); other kinds of tool are refused
    (`fields.target` has function tools only)."""
    for path, tool in items(tools or [], "tools"):
        if tool.get("type") != "function":
            fields.refuse(path, f"{fields.target} takes function tools only, not {tool.get('type')!r}")
            continue
        fields.unknown_keys(tool, ("type", "function", *keys), path)
        function = as_dict(tool.get("function"), f"{path}.function")
        fields.unknown_keys(function, ("name", "description", "parameters", "strict"), f"{path}.function")
        yield path, tool, function, as_str(function.get("name"), f"{path}.function.name")


def image_url(part: dict[str, Any], path: str, fields: Fields, keys: Iterable[str] = ()) -> str:
    """The URL of an `image_url` part (its other `keys` the caller's to read); an image `detail`
    other than `auto` is refused (no other format has such a setting)."""
    fields.unknown_keys(part, ("type", "image_url", *keys), path)
    image = part.get("image_url")
    if isinstance(image, str):
        image = {"url": image}
    image = as_dict(image, f"{path}.image_url")
    fields.unknown_keys(image, ("url", "detail"), f"{path}.image_url")
    if image.get("detail") not in (None, "auto"):
        fields.refuse(f"{path}.image_url.detail", f"{fields.target} has no image detail setting")
    return as_str(image.get("url"), f"{path}.image_url.url")


def neutral_sampling(fields: Fields) -> None:
    """OpenAI's fields that formats without them (Anthropic's, Bedrock's) have no equivalent
    of: accepted at the values that change nothing (`n: 1`, `logprobs: false`...), refused
    otherwise; `seed` and the OpenAI-only fields refused whatever their value."""
    fields.neutral("n", 1)
    fields.neutral("logprobs", False)
    fields.neutral("top_logprobs", 0)
    fields.neutral("logit_bias", {})
    fields.neutral("frequency_penalty", 0)
    fields.neutral("presence_penalty", 0)
    fields.neutral("store", False)
    fields.neutral("metadata", {})
    fields.neutral("modalities", ["text"])
    fields.absent("seed", *OPENAI_ONLY)


def include_usage(client_body: Mapping[str, Any]) -> bool:
    """Whether the client's stream asked for a usage chunk (`stream_options.include_usage`)."""
    options = client_body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
