"""What a model call used and cost: read from each wire format, priced, handed to a meter.

Every call produces one `UsageRecord`. Tokens come from the provider's own count (the last
chunk of an OpenAI stream, Anthropic's message_start and message_delta, Gemini's last chunk,
Bedrock's metadata event); a call that produced output but reported no usage gets an estimate,
marked `estimated`, never zero. Cost comes from the deployment's `price`, else the bundled
genai-prices data (no network at run time). The record it goes into, and the meter that
takes it, are metering's (mcp_gateway.metering).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from mcp_gateway.config.models import Price
from mcp_gateway.metering.records import Usage

__all__ = ["Usage"]  # re-exported: the token counts every wire format is read into

logger = logging.getLogger("mcp_gateway.models")

_MILLION = Decimal(1_000_000)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def from_openai(data: Any) -> Usage | None:
    """OpenAI chat/embeddings (`prompt_tokens`...) or Responses (`input_tokens`...) usage; None when absent."""
    if not isinstance(data, dict):
        return None
    if "prompt_tokens" in data:
        prompt = data.get("prompt_tokens_details") or {}
        completion = data.get("completion_tokens_details") or {}
        return Usage(
            input=_int(data.get("prompt_tokens")),
            output=_int(data.get("completion_tokens")),
            cache_read=_int(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
            reasoning=_int(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0,
        )
    if "input_tokens" in data:
        details = data.get("input_tokens_details") or {}
        out = data.get("output_tokens_details") or {}
        return Usage(
            input=_int(data.get("input_tokens")),
            output=_int(data.get("output_tokens")),
            cache_read=_int(details.get("cached_tokens")) if isinstance(details, dict) else 0,
            reasoning=_int(out.get("reasoning_tokens")) if isinstance(out, dict) else 0,
        )
    return None


def from_anthropic(data: Any, into: Usage | None = None) -> Usage | None:
    """Anthropic usage. Its `input_tokens` leaves out cache reads and writes: they are added here,
    so `input` means every prompt token, as for OpenAI. With `into`, the counts given replace
    those in it (stream events carry running totals) and absent ones stay."""
    if not isinstance(data, dict):
        return into
    usage = into if into is not None else Usage()
    if "cache_read_input_tokens" in data:
        usage.cache_read = _int(data.get("cache_read_input_tokens"))
    if "cache_creation_input_tokens" in data:
        usage.cache_write = _int(data.get("cache_creation_input_tokens"))
    if "input_tokens" in data:
        usage.input = _int(data.get("input_tokens")) + usage.cache_read + usage.cache_write
    if "output_tokens" in data:
        usage.output = _int(data.get("output_tokens"))
    details = data.get("output_tokens_details")
    if isinstance(details, dict) and "thinking_tokens" in details:
        usage.reasoning = _int(details.get("thinking_tokens"))  # part of output_tokens, counted apart
    return usage


def from_gemini(data: Any) -> Usage | None:
    """Gemini's `usageMetadata`; None when absent. `promptTokenCount` counts cached tokens too
    (`cachedContentTokenCount` says how many), as `input` does; tool-use prompt tokens are input
    as well. Thinking (`thoughtsTokenCount`) is billed as output but left out of
    `candidatesTokenCount`: it is added to `output` and counted apart as reasoning, as OpenAI
    counts reasoning within completion tokens. A stream's chunks carry running totals: each one
    replaces the last."""
    if not isinstance(data, dict):
        return None
    thoughts = _int(data.get("thoughtsTokenCount"))
    return Usage(
        input=_int(data.get("promptTokenCount")) + _int(data.get("toolUsePromptTokenCount")),
        output=_int(data.get("candidatesTokenCount")) + thoughts,
        cache_read=_int(data.get("cachedContentTokenCount")),
        reasoning=thoughts,
    )


def from_bedrock(data: Any) -> Usage | None:
    """Bedrock Converse `usage` (a whole answer's, or a stream's `metadata` event); None when
    absent. Like Anthropic's, its `inputTokens` leaves out cache reads and writes
    (`cacheReadInputTokens`, `cacheWriteInputTokens`): they are added, so `input` means every
    prompt token. Bedrock counts no reasoning tokens apart from `outputTokens`."""
    if not isinstance(data, dict):
        return None
    read, write = _int(data.get("cacheReadInputTokens")), _int(data.get("cacheWriteInputTokens"))
    return Usage(
        input=_int(data.get("inputTokens")) + read + write,
        output=_int(data.get("outputTokens")),
        cache_read=read,
        cache_write=write,
    )


def estimate_tokens(text_chars: int) -> int:
    """A token count for text of this many characters, when the provider reported none (about 4 a token)."""
    return (text_chars + 3) // 4


# -- cost ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    def cost(self, usage: Usage) -> Decimal:
        """The exact cost of `usage` in USD."""
        plain_input = max(0, usage.input - usage.cache_read - usage.cache_write)
        total = (
            plain_input * self.input
            + usage.cache_read * self.cache_read
            + usage.cache_write * self.cache_write
            + usage.output * self.output
        )
        return total / _MILLION


def rates_from_price(price: Price) -> Rates:
    """A deployment's configured price."""
    unit = Decimal(str(price.input))
    return Rates(
        input=unit,
        output=Decimal(str(price.output)),
        cache_read=Decimal(str(price.cache_read)) if price.cache_read is not None else unit,
        cache_write=Decimal(str(price.cache_write)) if price.cache_write is not None else unit,
    )


_GENAI_PROVIDER = {"openai": "openai", "azure": "azure", "anthropic": "anthropic", "gemini": "google",
                   "vertex": "google", "bedrock": "aws"}  # fmt: skip


_TOKEN_PRICES = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
# Priced per unit the gateway never reports (searches, audio, 1-hour cache writes): zero for
# every call it prices (the probes below confirm it, model by model).
_UNUSED_PRICES = frozenset(("web_searches_kcount", "storage_searches_kcount", "cache_write_1h_mtok",
                            "input_audio_mtok", "cache_audio_read_mtok", "output_audio_mtok"))  # fmt: skip
# Usages the fast path must price exactly as genai-prices does before it is trusted with a model.
_PROBES = (Usage(1000, 500), Usage(1000, 500, cache_read=300), Usage(1000, 500, cache_write=200),
           Usage(1000, 500, cache_read=300, cache_write=200), Usage(7, 0), Usage(0, 3))  # fmt: skip


class BundledPrice:
    """A model's price from genai-prices (tiers by prompt size included).

    genai-prices takes ~80 µs a call; most models have flat per-token prices, which are read
    out once into `Rates` (~2 µs) when they price a set of probe usages exactly as genai-prices
    does. Tiered and unusual prices go through genai-prices every time.
    """

    def __init__(self, model_price: Any) -> None:
        self._price = model_price
        self._rates = self._flat_rates()

    def cost(self, usage: Usage) -> Decimal:
        """The cost of `usage` in USD."""
        if self._rates is not None:
            return self._rates.cost(usage)
        return self._exact(usage)

    def _exact(self, usage: Usage) -> Decimal:
        from genai_prices import Usage as PriceUsage

        calc = self._price.calc_price(
            PriceUsage(
                input_tokens=usage.input,
                output_tokens=usage.output,
                cache_read_tokens=usage.cache_read or None,
                cache_write_tokens=usage.cache_write or None,
            )
        )
        return Decimal(calc["total_price"])

    def _flat_rates(self) -> Rates | None:
        fields = {k: v for k, v in vars(self._price).items() if v is not None and k not in _UNUSED_PRICES}
        values = [fields.get(name) for name in _TOKEN_PRICES]
        if set(fields) - set(_TOKEN_PRICES) or not all(isinstance(v, Decimal | None) for v in values):
            return None
        unit, output, read, write = values
        if unit is None:
            return None
        output = output if output is not None else Decimal(0)  # embeddings
        rates = Rates(unit, output, read if read is not None else unit, write if write is not None else unit)
        try:
            exact = all(rates.cost(u) == self._exact(u) for u in _PROBES)
        except Exception:  # a price genai-prices itself cannot apply to a probe: keep asking it
            return None
        return rates if exact else None


class Pricer(Protocol):
    """Turns usage into USD."""

    def cost(self, usage: Usage) -> Decimal:
        """The cost of `usage` in USD."""
        ...


@functools.lru_cache(maxsize=1024)
def bundled_price(provider: str, model: str) -> BundledPrice | None:
    """genai-prices' price of a provider's model, looked up once (names are matched fuzzily); None if unknown."""
    try:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price

        found = calc_price(
            PriceUsage(input_tokens=1, output_tokens=1), model, provider_id=_GENAI_PROVIDER.get(provider)
        )
    except Exception:  # an unknown model or provider: no bundled price
        return None
    return BundledPrice(found.model_price)


def pricer(provider: str, model: str, price: Price | None) -> Pricer | None:
    """The configured price, else the bundled one, else None."""
    return rates_from_price(price) if price is not None else bundled_price(provider, model)
