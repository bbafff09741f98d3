"""Usage read from a provider's stream as it passes: tokens from the events that carry them, the
size of the output for an estimate when none do, the usage chunk the gateway asked for dropped,
and events that quote a provider key scrubbed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from mcp_gateway.llm import sse
from mcp_gateway.llm.usage import Usage, from_anthropic, from_bedrock, from_gemini, from_openai
from mcp_gateway.upstream.scrub import Scrubber, scrubber


class UsageTap:
    """Reads usage (and the size of the output, for an estimate) from a provider's stream events."""

    def __init__(self, wire: str, drop_usage_chunk: bool, secrets: list[str], at_end: Callable[[], None]) -> None:
        self.wire = wire
        self.at_end = at_end
        self.drop_usage_chunk = drop_usage_chunk
        self.secrets = secrets
        self.usage: Usage | None = None
        self.output_chars = 0
        self.bytes = 0  # of the provider's events

    async def batches(self, batches: AsyncIterator[list[sse.Event]]) -> AsyncIterator[list[sse.Event]]:
        """`batches`, minus the usage chunk the client did not ask for; an error event the provider
        sends (or any that quotes the request) is scrubbed of the provider's keys."""
        clean = scrubber(self.secrets)
        async for batch in batches:
            kept: list[sse.Event] = []
            for event in batch:
                self.bytes += len(event.raw)
                data = event.json()
                if isinstance(data, dict) and self._read(data):
                    continue
                if clean and clean.present(event.data):
                    event = _scrubbed(event, data, clean)
                if _is_last(self.wire, event, data):
                    self.at_end()
                kept.append(event)
            if kept:
                yield kept

    def _read(self, data: dict[str, Any]) -> bool:
        """Take what `data` says; True when the event is to be dropped."""
        if self.wire == "anthropic":
            kind = data.get("type")
            if kind == "message_start" and isinstance(data.get("message"), dict):
                self.usage = from_anthropic(data["message"].get("usage"), self.usage)
            elif kind == "message_delta":
                self.usage = from_anthropic(data.get("usage"), self.usage)
            elif kind == "content_block_delta":
                self.output_chars += _anthropic_delta_chars(data)
            return False
        if self.wire == "gemini":
            # Each chunk's usageMetadata is a running total: the last one read is the call's.
            self.usage = from_gemini(data.get("usageMetadata")) or self.usage
            self.output_chars += _gemini_delta_chars(data)
            return False
        if self.wire == "bedrock":
            metadata = data.get("metadata")
            if isinstance(metadata, dict):
                self.usage = from_bedrock(metadata.get("usage")) or self.usage
            self.output_chars += _bedrock_delta_chars(data)
            return False
        response = data.get("response")
        found = from_openai(data.get("usage")) or (
            from_openai(response.get("usage")) if isinstance(response, dict) else None
        )
        self.output_chars += _openai_delta_chars(data)
        if found is not None:
            self.usage = found
            return self.drop_usage_chunk and data.get("choices") == []
        return False


_LAST_EVENTS = frozenset(("message_stop", "response.completed", "response.failed", "response.incomplete"))


def _is_last(wire: str, event: sse.Event, data: Any) -> bool:
    """Whether `event` ends the provider's stream (`[DONE]`, Anthropic's message_stop, a Responses
    API end event); the usage it will report has arrived by then."""
    if wire == "openai":
        return event.data == "[DONE]" or (isinstance(data, dict) and data.get("type") in _LAST_EVENTS)
    if wire == "bedrock":
        return event.name == "metadata"  # ConverseStream's last event, after messageStop
    return isinstance(data, dict) and data.get("type") in _LAST_EVENTS


def _scrubbed(event: sse.Event, data: Any, clean: Scrubber) -> sse.Event:
    """`event` re-framed with the scrubber's secrets replaced in its data."""
    scrubbed = clean.data(data) if data is not None else clean.text(event.data)
    text = scrubbed if isinstance(scrubbed, str) else json.dumps(scrubbed)
    return sse.Event(sse.encode(text, event.name or None), event.name, text)


def _openai_delta_chars(data: dict[str, Any]) -> int:
    total = 0
    for choice in data.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            content = delta.get("content")
            total += len(content) if isinstance(content, str) else 0
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    total += len(function["arguments"])
    delta = data.get("delta")
    if data.get("type", "").endswith(".delta") and isinstance(delta, str):
        total += len(delta)  # Responses API text deltas
    return total


def _anthropic_delta_chars(data: dict[str, Any]) -> int:
    delta = data.get("delta")
    if not isinstance(delta, dict):
        return 0
    return sum(len(delta[k]) for k in ("text", "partial_json", "thinking") if isinstance(delta.get(k), str))


def _gemini_delta_chars(data: dict[str, Any]) -> int:
    total = 0
    for candidate in data.get("candidates") or ():
        content = candidate.get("content") if isinstance(candidate, dict) else None
        for part in (content.get("parts") if isinstance(content, dict) else None) or ():
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                total += len(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                total += len(json.dumps(part["functionCall"].get("args") or {}))
    return total


def _bedrock_delta_chars(data: dict[str, Any]) -> int:
    event = data.get("contentBlockDelta")
    delta = event.get("delta") if isinstance(event, dict) else None
    if not isinstance(delta, dict):
        return 0
    tool = delta.get("toolUse")
    reasoning = delta.get("reasoningContent")
    pieces = (
        delta.get("text"),
        tool.get("input") if isinstance(tool, dict) else None,
        reasoning.get("text") if isinstance(reasoning, dict) else None,
    )
    return sum(len(p) for p in pieces if isinstance(p, str))
