"""The OpenAI Responses API (`/v1/responses`) for deployments that do not serve it natively,
through chat completions.

OpenAI and Azure deployments get Responses requests as they are. Every other deployment is
reached through its OpenAI chat translator: `ResponsesOverChat` wraps one, so a Responses request
goes responses -> chat (`responses_request`) -> the provider's format, and the answer comes back
provider -> chat -> response object (`responses_answer`), its stream provider events -> chat
chunks -> Responses events (`responses_stream`). Whatever the chat translator carries (images,
tools, JSON output, reasoning) the Responses API carries too, and what it refuses it refuses,
naming the field as the client wrote it. An OpenAI-compatible server without `/responses`
(vLLM, Ollama...: a deployment with `responses_api: false`) gets chat as it is (`ChatPassthrough`).

Usage is read by the caller from the provider's own events, before any translation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.translate import Translator
from mcp_gateway.llm.translate.mappings import unreadable
from mcp_gateway.llm.translate.relay import MALFORMED, relay
from mcp_gateway.llm.translate.responses_answer import chat_view, response_object
from mcp_gateway.llm.translate.responses_request import to_chat
from mcp_gateway.llm.translate.responses_stream import ResponseEvents

# How messages name what a request is translated to, by provider wire format.
TARGETS = {
    "anthropic": "Anthropic Messages",
    "gemini": "Gemini",
    "bedrock": "Bedrock Converse",
    "openai": "chat completions",
}


class ResponsesOverChat:
    """An OpenAI chat translator that serves the Responses API too; every other operation is the
    wrapped translator's own (as is `responses`, should it translate that itself)."""

    def __init__(self, chat: Translator, provider: str) -> None:
        self.chat = chat
        self.target = TARGETS.get(provider, provider)
        self.own = chat.operation("responses") is None  # whether Responses are this wrapper's to translate

    def _mine(self, operation: str) -> bool:
        return operation == "responses" and self.own

    def operation(self, client_operation: str) -> str | None:
        """Responses are served by whatever serves chat."""
        return self.chat.operation("chat" if self._mine(client_operation) else client_operation)

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The provider's body: the Responses body read as chat, then translated as chat is."""
        if not self._mine(operation):
            return self.chat.request(operation, body, model, provider_model, stream)
        chat, paths = to_chat(body, model, self.target, stream)
        try:
            return self.chat.request("chat", chat, model, provider_model, stream)
        except LlmError as error:
            raise paths.renamed(error) from None

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The response object for the provider's answer (by way of a chat completion)."""
        if not self._mine(operation):
            return self.chat.response(operation, body, asked, client_body)
        completion = self.chat.response("chat", body, asked, chat_view(client_body))
        try:
            return response_object(completion, asked, client_body)
        except MALFORMED as exc:
            raise unreadable(exc) from None

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """Responses events for the provider's events (by way of chat chunks)."""
        if not self._mine(operation):
            return self.chat.stream(operation, events, asked, client_body)
        chunks = self.chat.stream("chat", events, asked, chat_view(client_body))
        return relay(sse.events(chunks), ResponseEvents(asked, client_body), "openai")


class ChatPassthrough:
    """OpenAI chat to an OpenAI-format deployment as it is, `model` replaced: how Responses reach
    an OpenAI-compatible server that has no Responses API."""

    def operation(self, client_operation: str) -> str | None:
        """Chat only: everything else an OpenAI-format deployment serves natively."""
        return "chat" if client_operation == "chat" else None

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """`body` with the deployment's model."""
        return {**body, "model": provider_model}

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The answer as it is."""
        return body

    async def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """The events as they are."""
        async for event in events:
            yield event.raw
