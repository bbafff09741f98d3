"""Server-sent events, read incrementally and written back.

Providers stream SSE (OpenAI, Anthropic, Gemini with `alt=sse`). A passed-through stream is
forwarded event by event, as the provider framed it, so the gateway can read usage from the
events and drop one it added (OpenAI's usage chunk) without re-encoding the others.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Event:
    """One SSE event: its bytes as received (blank line included), its `event:` name and `data:` text."""

    raw: bytes
    name: str
    data: str

    def json(self) -> Any:
        """`data` as JSON, or None when it is not JSON (`[DONE]`, a comment-only event)."""
        if not self.data or self.data[0] not in "{[":
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            return None


def _parse(block: bytes) -> tuple[str, str]:
    name = ""
    data: list[str] = []
    for line in block.decode("utf-8", errors="replace").splitlines():
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return name, "\n".join(data)


async def batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Event]]:
    """The events of an SSE byte stream, grouped by the read that completed them (so that what
    arrived together is written on together); a last event without its blank line is yielded too."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        batch: list[Event] = []
        while True:
            cut, size = _boundary(buffer)
            if cut < 0:
                break
            raw, buffer = buffer[: cut + size], buffer[cut + size :]
            name, data = _parse(raw[:cut])
            if name or data:
                batch.append(Event(raw, name, data))
        if batch:
            yield batch
    if buffer.strip():
        name, data = _parse(buffer)
        yield [Event(buffer + b"\n\n", name, data)]


async def flatten(groups: AsyncIterator[list[Event]]) -> AsyncIterator[Event]:
    """The events of `groups`, one by one."""
    async for batch in groups:
        for event in batch:
            yield event


def events(chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """The events of an SSE byte stream, one by one."""
    return flatten(batches(chunks))


def _boundary(buffer: bytes) -> tuple[int, int]:
    """Where the first event ends and how long its separator is; (-1, 0) when no event is complete."""
    best, size = -1, 0
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buffer.find(separator)
        if at >= 0 and (best < 0 or at < best):
            best, size = at, len(separator)
    return best, size


def encode(data: Any, name: str | None = None) -> bytes:
    """One SSE event carrying `data` as compact JSON (or as it is, when a string)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()
