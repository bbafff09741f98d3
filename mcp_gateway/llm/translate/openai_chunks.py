"""Writing an OpenAI chat completions stream, whatever it is translated from: its chunks, and
its end (the usage chunk when the client asked for one, then `[DONE]`)."""

from __future__ import annotations

import time
from typing import Any

from mcp_gateway.llm import sse
from mcp_gateway.llm.translate.mappings import openai_usage
from mcp_gateway.llm.usage import Usage


class ChatChunks:
    """The chunks of one stream, answering as model `asked`; `usage` is the provider's, as read
    so far (a translator keeps it up to date)."""

    def __init__(self, asked: str, include_usage: bool) -> None:
        self.asked = asked
        self.include_usage = include_usage
        self.id = "chatcmpl-gateway"
        self.created = int(time.time())
        self.usage = Usage()
        self.done = False  # the client's stream is complete

    def _frame(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> bytes:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.asked,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            data["usage"] = usage  # null on every chunk but the last, as OpenAI sends them
        return sse.encode(data)

    def chunk(self, delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
        """One chunk of choice `index`."""
        return self._frame([{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}], None)

    def ending(self) -> list[bytes]:
        """The end of the stream: the usage chunk (when asked for), then `[DONE]`."""
        self.done = True
        usage = [self._frame([], openai_usage(self.usage))] if self.include_usage else []
        return [*usage, sse.encode("[DONE]")]
