"""Driving one stream's translation: the provider's events in, the client's framed events out.

A `StreamState` turns each provider event into the client's events. The stream ends when the
state says it is done (the provider's last event came), or when the provider's events run out:
then the state closes the client's stream properly if it can (an OpenAI stream that finished
but left out `[DONE]`), else the client gets an error event in its own format, as it does for
an event that cannot be translated. A stream that merely stops never looks complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from mcp_gateway.llm import sse
from mcp_gateway.llm.errors import LlmError, anthropic_error, openai_error

# What a provider event of an unexpected shape raises while it is translated.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


class StreamState(Protocol):
    """One stream's translation state."""

    done: bool  # the provider's last event came and the client's stream is complete

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The client's events for one provider event (a JSON object)."""
        ...

    def close(self, marked: bool) -> list[bytes] | None:
        """The events that complete the client's stream when the provider's ended without its
        last event (`marked`: it sent OpenAI's `[DONE]`); None when it cannot be completed."""
        ...


async def relay(events: AsyncIterator[sse.Event], state: StreamState, wire: str) -> AsyncIterator[bytes]:
    """The client's stream (format `wire`) for the provider's `events`."""
    marked = False
    async for event in events:
        if event.data.strip() == "[DONE]":
            marked = True
            break
        data = event.json()
        if not isinstance(data, dict):
            continue
        try:
            out = state.feed(data)
        except MALFORMED as exc:
            yield stream_error(wire, f"the provider's stream could not be translated: {exc!r}")
            return
        for framed in out:
            yield framed
        if state.done:
            return
    ending = state.close(marked)
    if ending is None:
        yield stream_error(wire, "the provider's stream ended before its end")
        return
    for framed in ending:
        yield framed


def stream_error(wire: str, message: str) -> bytes:
    """An error event in a client's stream format, for a provider stream that cannot go on."""
    error = LlmError("bad_gateway", message)
    if wire == "anthropic":
        return sse.encode(anthropic_error(error), "error")
    return sse.encode(openai_error(error))
