"""Gemini's side of the translations to it (from OpenAI chat and from Anthropic Messages).

Requests: `Contents` builds Gemini's `contents` (roles `user` and `model`, consecutive turns of
one role merged, function responses named after the calls they answer and put in the order of
those calls, since Gemini matches them by name and position); media become `inlineData` (base64)
or `fileData` (a `gs://` or Gemini Files API URI: Gemini reads those itself). An http(s) URL is
refused: Gemini does not fetch URLs, and the gateway must not fetch them for it (SSRF).
Tool schemas go as `parametersJsonSchema` and structured output as `responseJsonSchema`, both
full JSON Schema, so no schema is rewritten or cut down. Reasoning: Gemini 1.x and 2.x models
take a thinking budget in tokens, later ones a thinking level (`thinking_config`).

Answers: `pieces` reads a candidate's parts as text, thoughts and function calls, with the
thought signature each carries (Gemini 3 refuses a function call sent back without its
signature). A call without an id (Gemini gives none in most API versions) gets a new one;
function responses find their call by its name and position, never by that id.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mcp_gateway.llm.translate.fields import Fields, as_dict, as_str, malformed
from mcp_gateway.llm.translate.mappings import effort_for_budget, split_data_url

TARGET = "Gemini"

# Gemini finishReason -> OpenAI finish_reason (a STOP after function calls is `tool_calls`).
FINISH_REASON: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# Gemini finishReason -> Anthropic stop_reason.
STOP_REASON: dict[str, str] = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    **{reason: "refusal" for reason, finish in FINISH_REASON.items() if finish == "content_filter"},
}

# reasoning_effort -> Gemini 2.x thinkingBudget (the largest fits every 2.5 model but Pro's 32768)
# and -> Gemini 3's thinkingLevel.
THINKING_BUDGET: dict[str, int] = {
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
THINKING_LEVEL: dict[str, str] = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
_BUDGETED = re.compile(r"^(?:models/)?gemini-[12](?:[.-]|$)")
# Where Gemini reads files itself: Cloud Storage and its own Files API.
_FILE_URIS = ("gs://", "https://generativelanguage.googleapis.com/")
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def budgeted(model: str) -> bool:
    """Whether a Gemini model takes a thinking budget (1.x, 2.x) rather than a thinking level (3 on)."""
    return _BUDGETED.match(model) is not None


def thinking_for_effort(effort: str, model: str) -> dict[str, Any]:
    """thinkingConfig for an effort (`none` .. `max`). Models that think by levels cannot stop
    thinking: `none` is their least, `minimal`."""
    if effort == "none":
        return {"thinkingBudget": 0} if budgeted(model) else {"thinkingLevel": "minimal"}
    if budgeted(model):
        return {"thinkingBudget": THINKING_BUDGET[effort], "includeThoughts": True}
    return {"thinkingLevel": THINKING_LEVEL[effort], "includeThoughts": True}


def thinking_for_budget(budget: int, model: str, include: bool = True) -> dict[str, Any]:
    """thinkingConfig for a token budget: as it is, or the level whose effort it matches."""
    config: dict[str, Any] = (
        {"thinkingBudget": budget} if budgeted(model) else {"thinkingLevel": effort_for_budget(budget)}
    )
    if include:
        config["includeThoughts"] = True
    return config


def efforts() -> str:
    """The efforts there are, for messages."""
    return "none, " + ", ".join(THINKING_BUDGET)


# -- requests -----------------------------------------------------------------------------------------


def media_part(url: str, path: str, fields: Fields, what: str = "image") -> dict[str, Any] | None:
    """A `data:` URL as inlineData, a gs:// or Files API URI as fileData; None (refused) for
    anything else."""
    inline = split_data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if url.startswith(_FILE_URIS):
        data: dict[str, Any] = {"fileUri": url}
        guessed = mimetypes.guess_type(url)[0]
        if guessed:
            data["mimeType"] = guessed
        return {"fileData": data}
    if url.startswith(("http://", "https://")):
        fields.refuse(
            path,
            f"{TARGET} reads no {what} URLs but gs:// and its Files API (and the gateway fetches none for it): "
            "send the data as base64",
        )
        return None
    raise malformed(path, f"a base64 data: URL, a gs:// URI or a Gemini Files API URI for {TARGET}")


def declaration(name: str, description: Any, schema: Any, path: str) -> dict[str, Any]:
    """A functionDeclaration; the schema as full JSON Schema (`parametersJsonSchema`)."""
    spec: dict[str, Any] = {"name": name}
    if description is not None:
        spec["description"] = as_str(description, f"{path}.description")
    if schema is not None:
        spec["parametersJsonSchema"] = as_dict(schema, f"{path}.parameters")
    return spec


def tool_config(mode: str | None, names: list[str] | None = None) -> dict[str, Any] | None:
    """toolConfig for a mode (None: Gemini's default, AUTO)."""
    if mode is None:
        return None
    config: dict[str, Any] = {"mode": mode}
    if names:
        config["allowedFunctionNames"] = names
    return {"functionCallingConfig": config}


@dataclass
class Contents:
    """Gemini `contents`, built turn by turn from a client's messages."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # call id -> function name
    order: dict[str, int] = field(default_factory=dict)  # call id -> its number in the conversation
    _answers: dict[int, str] = field(default_factory=dict)  # id() of a functionResponse part -> call id

    def add(self, role: str, parts: list[dict[str, Any]]) -> None:
        """Parts of a `user` or `model` turn (merged into the last turn when it has that role)."""
        if not parts:
            return
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["parts"] += parts
        else:
            self.turns.append({"role": role, "parts": parts})

    def call(self, call_id: str, name: str, arguments: dict[str, Any], signature: str | None) -> dict[str, Any]:
        """A functionCall part (the id is remembered for the response; Gemini gets none)."""
        self.order[call_id] = len(self.order)  # calls are numbered as they come: answers sort by it
        self.names[call_id] = name
        part: dict[str, Any] = {"functionCall": {"name": name, "args": arguments}}
        if signature:
            part["thoughtSignature"] = signature
        return part

    def answer(self, call_id: str, path: str, output: str, error: bool = False) -> dict[str, Any]:
        """A functionResponse part for the call `call_id` (Gemini's `output` or `error` key)."""
        name = self.names.get(call_id)
        if name is None:
            raise malformed(path, "the id of a tool call made earlier in the conversation")
        part = {"functionResponse": {"name": name, "response": {"error" if error else "output": output}}}
        self._answers[id(part)] = call_id
        return part

    def finish(self) -> list[dict[str, Any]]:
        """The contents: in each user turn, function responses first, in the order of their calls."""
        for turn in self.turns:
            parts = turn["parts"]
            answers = [p for p in parts if "functionResponse" in p]
            if answers:
                answers.sort(key=lambda p: self.order.get(self._answers.get(id(p), ""), 0))
                turn["parts"] = answers + [p for p in parts if "functionResponse" not in p]
        return self.turns


# -- answers ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Piece:
    """One part of a Gemini answer: `text`, `thought` or `call` (name, args, id), and the thought
    signature that came with it."""

    kind: str
    text: str = ""
    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    signature: str | None = None


def new_call_id() -> str:
    """An id for a function call Gemini gave none."""
    return "call_" + secrets.token_hex(12)


def pieces(candidate: dict[str, Any]) -> Iterator[Piece]:
    """The parts of a candidate worth translating; parts of kinds never asked for (code execution,
    generated media) are left out. KeyError and the like when a part is malformed."""
    content = candidate.get("content") or {}
    for part in content.get("parts") or ():
        signature = part.get("thoughtSignature") or None
        call = part.get("functionCall")
        if call is not None:
            args = call.get("args") or {}
            if not isinstance(args, dict):
                raise TypeError("functionCall.args is not an object")
            yield Piece("call", name=call["name"], args=args, id=call.get("id") or new_call_id(), signature=signature)
        elif isinstance(part.get("text"), str):
            yield Piece("thought" if part.get("thought") else "text", text=part["text"], signature=signature)
        elif signature:
            yield Piece("text", signature=signature)  # a signature on a part of its own


def finish_reason(reason: Any, called: bool) -> str | None:
    """OpenAI's finish_reason for a Gemini finishReason (None while the candidate goes on)."""
    if reason is None:
        return None
    finish = FINISH_REASON.get(reason, "stop")
    return "tool_calls" if called and finish == "stop" else finish


def stop_reason(reason: Any, called: bool) -> str:
    """Anthropic's stop_reason for a Gemini finishReason."""
    stop = STOP_REASON.get(reason, "end_turn")
    return "tool_use" if called and stop == "end_turn" else stop


def blocked(body: dict[str, Any]) -> bool:
    """Whether Gemini refused the prompt itself (no candidates, a block reason)."""
    feedback = body.get("promptFeedback") or {}
    return not body.get("candidates") and bool(feedback.get("blockReason"))


def response_id(body: dict[str, Any], prefix: str) -> str:
    """The answer's id: Gemini's responseId with the client format's prefix."""
    found = body.get("responseId")
    return f"{prefix}{found}" if isinstance(found, str) and found else f"{prefix}gateway"
