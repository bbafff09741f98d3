"""Translation between wire formats, for a client whose format is not its provider's.

A `Translator` carries one pair (client format, provider format) both ways: the request into
the provider's format, the answer and its stream events back into the client's. A request
field the provider's format cannot carry is a 400 naming the field (`LlmError` with `param`),
unless the model sets `drop_params`; nothing is dropped silently. Usage is read by the caller
from the provider's own events, before translation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse


class Translator(Protocol):
    """One (client format, provider format) pair, both ways."""

    def operation(self, client_operation: str) -> str | None:
        """The provider operation that serves a client operation; None when it cannot be translated."""
        ...

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The provider's request body for the client's `body` (client `operation`); LlmError when it cannot be."""
        ...

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The client's answer for the provider's whole answer `body`, to the client's request
        `client_body`, answering as model `asked`."""
        ...

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """The client's stream, framed, for the provider's events."""
        ...


_TRANSLATORS: dict[tuple[str, str], Translator] = {}


def register(client: str, provider: str, translator: Translator) -> None:
    """Make `translator` carry `client` format requests to `provider` format deployments. An
    OpenAI chat translator carries the Responses API too, through chat (see `responses`)."""
    _TRANSLATORS[(client, provider)] = ResponsesOverChat(translator, provider) if client == "openai" else translator


def find(client: str, provider: str) -> Translator | None:
    """The translator for a pair of formats, if there is one."""
    return _TRANSLATORS.get((client, provider))


# The translators there are, registered when the package is imported (last: they need the above).
from mcp_gateway.llm.translate.anthropic_bedrock import AnthropicToBedrock  # noqa: E402
from mcp_gateway.llm.translate.anthropic_gemini import AnthropicToGemini  # noqa: E402
from mcp_gateway.llm.translate.anthropic_openai import AnthropicToOpenAI  # noqa: E402
from mcp_gateway.llm.translate.openai_anthropic import OpenAIToAnthropic  # noqa: E402
from mcp_gateway.llm.translate.openai_bedrock import OpenAIToBedrock  # noqa: E402
from mcp_gateway.llm.translate.openai_gemini import OpenAIToGemini  # noqa: E402
from mcp_gateway.llm.translate.responses import ChatPassthrough, ResponsesOverChat  # noqa: E402

register("openai", "anthropic", OpenAIToAnthropic())
register("anthropic", "openai", AnthropicToOpenAI())
register("openai", "gemini", OpenAIToGemini())
register("anthropic", "gemini", AnthropicToGemini())
register("openai", "bedrock", OpenAIToBedrock())
register("anthropic", "bedrock", AnthropicToBedrock())
# Responses for an OpenAI-format deployment without a Responses API (`responses_api: false`).
register("openai", "openai", ChatPassthrough())

__all__ = ["Translator", "find", "register"]
