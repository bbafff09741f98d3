"""Reading an OpenAI chat completions request, whatever format it is translated to: its
messages by role, and the tool calls of its assistant messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mcp_gateway.llm.translate.fields import Fields, as_dict, as_str, items, malformed

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
