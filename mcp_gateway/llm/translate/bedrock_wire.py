"""Bedrock Converse's side of the translations to it (from OpenAI chat and from Anthropic Messages).

Requests: `Turns` builds Converse `messages` (roles `user` and `assistant`, consecutive turns of
one role merged, as Converse wants them alternating; tool results first in their user turn, as
Anthropic's models on Bedrock want them). Images are `image` blocks with base64 `bytes` (PNG,
JPEG, GIF, WebP); PDFs and text files `document` blocks. An http(s) URL is refused: Converse
reads no URLs, and the gateway fetches none for it (SSRF). A `cache_control` mark becomes a
`cachePoint` block after what it marks. Tools are `toolSpec`s with the JSON Schema as it is;
structured output is `outputConfig.textFormat` (a JSON Schema, as a string). Sampling and limits
go in `inferenceConfig`; what Converse has no field for but Anthropic's models on Bedrock take
(`top_k`, `thinking`) in `additionalModelRequestFields`.

Answers: `output.message.content` holds `text`, `toolUse` and `reasoningContent` blocks (thinking
with its signature, or redacted); `stopReason` and `usage` (cache reads and writes apart) say
how it ended. A stream is ConverseStream's events, each `{"<event type>": {...}}` (see the
Bedrock provider): messageStart, contentBlockStart (tool uses only), contentBlockDelta,
contentBlockStop, messageStop with the stop reason, and metadata with the usage, last.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from mcp_gateway.llm.translate import mappings
from mcp_gateway.llm.translate.fields import Fields, as_dict, as_str, malformed
from mcp_gateway.llm.usage import Usage, from_bedrock

TARGET = "Bedrock Converse"

# Converse stopReason -> OpenAI finish_reason and Anthropic stop_reason, where they differ from
# Anthropic's own reasons (which Converse shares: end_turn, tool_use, max_tokens...).
_FILTERED = ("guardrail_intervened", "content_filtered")
_MALFORMED = ("malformed_model_output", "malformed_tool_use")
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}  # fmt: skip
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/html": "html",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
# A document's name: letters, digits, single spaces, hyphens, parentheses and square brackets.
_NAME_OUT = re.compile(r"[^A-Za-z0-9()\[\]-]+")
_TTLS = ("5m", "1h")


def finish_reason(stop: Any, called: bool = False) -> str | None:
    """OpenAI's finish_reason for a Converse stopReason (None while the answer goes on)."""
    if stop is None:
        return None
    if stop in _FILTERED:
        return "content_filter"
    finish = mappings.finish_reason("end_turn" if stop in _MALFORMED else stop)
    return "tool_calls" if called and finish == "stop" else finish


def stop_reason(stop: Any) -> str:
    """Anthropic's stop_reason for a Converse stopReason."""
    if stop in _FILTERED:
        return "refusal"
    if stop in _MALFORMED or stop not in mappings.FINISH_REASON:
        return "end_turn"
    return str(stop)


# -- requests -----------------------------------------------------------------------------------------


def image(media_type: str, data: str, path: str, fields: Fields) -> dict[str, Any] | None:
    """An image block for base64 `data`; refused (None) for a type Converse does not take."""
    form = IMAGE_FORMATS.get(media_type.lower())
    if form is None:
        fields.refuse(path, f"{TARGET} takes PNG, JPEG, GIF and WebP images, not {media_type}")
        return None
    return {"image": {"format": form, "source": {"bytes": data}}}


def document(media_type: str, source: dict[str, Any], name: str, path: str, fields: Fields) -> dict[str, Any] | None:
    """A document block (`source`: `{"bytes": base64}` or `{"text": ...}`), named as Converse
    allows; refused (None) for a type it does not take."""
    form = DOCUMENT_FORMATS.get(media_type.lower())
    if form is None:
        fields.refuse(path, f"{TARGET} takes PDF, text, CSV, HTML, Markdown and Office documents, not {media_type}")
        return None
    cleaned = " ".join(_NAME_OUT.sub(" ", name).split())[:200] or "document"
    return {"document": {"format": form, "name": cleaned, "source": source}}


def url_refused(url: str, path: str, fields: Fields, what: str = "image") -> None:
    """An http(s) URL where Converse wants the data; anything else is malformed."""
    if url.startswith(("http://", "https://")):
        fields.refuse(path, f"{TARGET} reads no {what} URLs (and the gateway fetches none for it): send base64 data")
        return
    raise malformed(path, f"a base64 data: URL for {TARGET}")


def cache_point(mark: Any, path: str) -> dict[str, Any]:
    """The cachePoint block for a `cache_control` mark (`{"type": "ephemeral", "ttl": "1h"}`)."""
    mark = as_dict(mark, path)
    if mark.get("type") != "ephemeral":
        raise malformed(f"{path}.type", "ephemeral")
    point: dict[str, Any] = {"type": "default"}
    if (ttl := mark.get("ttl")) is not None:
        if ttl not in _TTLS:
            raise malformed(f"{path}.ttl", "5m or 1h")
        point["ttl"] = ttl
    return {"cachePoint": point}


def marked(block: dict[str, Any] | None, part: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """`block`, and the cache point its client part's `cache_control` asks for after it."""
    if block is None:
        return []
    if part.get("cache_control") is None:
        return [block]
    return [block, cache_point(part["cache_control"], f"{path}.cache_control")]


def tool_spec(name: str, description: Any, schema: Any, strict: Any, path: str) -> dict[str, Any]:
    """A toolSpec; the JSON Schema as it is (an object with no properties when none is given)."""
    spec: dict[str, Any] = {"name": name}
    if description is not None:
        spec["description"] = as_str(description, f"{path}.description")
    spec["inputSchema"] = {"json": schema if schema is not None else {"type": "object", "properties": {}}}
    if strict is not None:
        if not isinstance(strict, bool):
            raise malformed(f"{path}.strict", "a boolean")
        spec["strict"] = strict
    return {"toolSpec": spec}


def output_format(schema: dict[str, Any], name: Any = None, description: Any = None) -> dict[str, Any]:
    """outputConfig.textFormat for structured output: the JSON Schema as a string, as Converse takes it."""
    spec: dict[str, Any] = {"schema": json.dumps(schema, ensure_ascii=False)}
    if isinstance(name, str) and name:
        spec["name"] = name
    if isinstance(description, str) and description:
        spec["description"] = description
    return {"type": "json_schema", "structure": {"jsonSchema": spec}}


def tool_config(tools: list[dict[str, Any]], choice: dict[str, Any] | None, history: bool, fields: Fields) -> Any:
    """toolConfig for the tools and choice given (`choice` None: Converse's default, auto; `{}`:
    no call at all). Converse has no way to forbid calls: with tools in the conversation's
    history (where it requires a toolConfig) that is refused; without, no tools are sent."""
    if choice == {}:
        if not history:
            return None
        fields.refuse("tool_choice", f"{TARGET} cannot forbid tool calls in a conversation that has used tools")
        choice = None
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    if choice is not None:
        config["toolChoice"] = choice
    return config


@dataclass
class Turns:
    """Converse `messages`, built turn by turn from a client's messages."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    tools_used: bool = False  # a tool use or result is in the conversation (Converse then needs a toolConfig)

    def add(self, role: str, blocks: list[dict[str, Any]]) -> None:
        """Blocks of a `user` or `assistant` turn (merged into the last turn when it has that role)."""
        if not blocks:
            return
        self.tools_used = self.tools_used or any("toolUse" in b or "toolResult" in b for b in blocks)
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["content"] += blocks
        else:
            self.turns.append({"role": role, "content": blocks})

    def finish(self) -> list[dict[str, Any]]:
        """The messages: in each user turn, tool results first (in their order)."""
        for turn in self.turns:
            if turn["role"] == "user":
                content = turn["content"]
                results = [b for b in content if "toolResult" in b]
                if results:
                    turn["content"] = results + [b for b in content if "toolResult" not in b]
        return self.turns


def result(call_id: str, content: list[dict[str, Any]], error: bool = False) -> dict[str, Any]:
    """A toolResult block (`status: error` for a failed call)."""
    block: dict[str, Any] = {"toolUseId": call_id, "content": content or [{"text": ""}]}
    if error:
        block["status"] = "error"
    return {"toolResult": block}


def tool_use(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A toolUse block of an assistant turn."""
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}


def reasoning(text: str, signature: str | None) -> dict[str, Any]:
    """A reasoningContent block of an assistant turn (earlier thinking, signed)."""
    block: dict[str, Any] = {"text": text}
    if signature:
        block["signature"] = signature
    return {"reasoningContent": {"reasoningText": block}}


def redacted(data: str) -> dict[str, Any]:
    """A redacted reasoningContent block (base64, as it came)."""
    return {"reasoningContent": {"redactedContent": data}}


def count_request(converse: dict[str, Any]) -> dict[str, Any]:
    """CountTokens' body for a Converse request: what counts as input (messages, system, tools,
    model fields), not how the answer is sampled."""
    keys = ("messages", "system", "toolConfig", "additionalModelRequestFields")
    return {"input": {"converse": {k: converse[k] for k in keys if k in converse}}}


# -- answers ------------------------------------------------------------------------------------------


def content(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's content blocks (KeyError and the like when malformed)."""
    blocks = body["output"]["message"]["content"]
    if not isinstance(blocks, list):
        raise TypeError("output.message.content is not a list")
    return blocks


def usage(body: dict[str, Any]) -> Usage:
    """A whole answer's usage (zeros when it has none)."""
    return from_bedrock(body.get("usage")) or Usage()


def new_id(prefix: str) -> str:
    """An id for an answer: Converse gives none."""
    return prefix + secrets.token_hex(12)


@dataclass
class StreamEnd:
    """How a ConverseStream ended: its stop reason (messageStop) and usage (metadata, last)."""

    stop: str | None = None
    usage: Usage = field(default_factory=Usage)
    done: bool = False

    def read(self, data: dict[str, Any]) -> bool:
        """Take messageStop and metadata; True for metadata, the stream's last event."""
        if isinstance(data.get("messageStop"), dict):
            self.stop = data["messageStop"].get("stopReason") or "end_turn"
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            self.usage = from_bedrock(metadata.get("usage")) or self.usage
            return True
        return False


def thinking_block(reasoning: dict[str, Any]) -> dict[str, Any]:
    """A reasoningContent block (a whole one, or a stream's signature or redacted delta, with
    the text so far) as Anthropic's thinking block, the shape clients send back."""
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    text = reasoning.get("reasoningText", reasoning)
    return {"type": "thinking", "thinking": text.get("text") or "", "signature": text.get("signature") or ""}


def tool_start(data: dict[str, Any]) -> tuple[int, str, str] | None:
    """(contentBlockIndex, toolUseId, name) of a contentBlockStart event that starts a tool use, else None."""
    event = data.get("contentBlockStart")
    if not isinstance(event, dict) or not isinstance(event["start"].get("toolUse"), dict):
        return None
    use = event["start"]["toolUse"]
    return int(event["contentBlockIndex"]), str(use["toolUseId"]), str(use["name"])


def stream_failure(data: dict[str, Any]) -> str | None:
    """The message of an exception the stream sent (`{"error": {...}}`), else None."""
    error = data.get("error")
    if not isinstance(error, dict):
        return None
    return str(error.get("message") or error.get("code") or "the provider's stream failed")


def delta_of(data: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """(contentBlockIndex, delta) of a contentBlockDelta event, else None."""
    event = data.get("contentBlockDelta")
    if not isinstance(event, dict):
        return None
    delta = event["delta"]
    if not isinstance(delta, dict):
        raise TypeError("contentBlockDelta.delta is not an object")
    return int(event["contentBlockIndex"]), delta
