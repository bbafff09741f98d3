"""Costs from genai-prices' bundled data: the flat-rate fast path prices exactly as genai-prices does."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from genai_prices import data_snapshot

from mcp_gateway.llm.usage import BundledPrice, Usage, bundled_price, pricer

_OURS = {"openai": "openai", "azure": "azure", "anthropic": "anthropic", "google": "gemini", "aws": "bedrock"}


def _bundled() -> list[tuple[str, str, BundledPrice]]:
    found = []
    for provider in data_snapshot.get_snapshot().providers:
        if provider.id not in _OURS:
            continue
        for model in provider.models:
            price = bundled_price(_OURS[provider.id], model.id)
            if price is not None:
                found.append((_OURS[provider.id], model.id, price))
    return found


BUNDLED = _bundled()


def _usage(rng: random.Random) -> Usage:
    prompt = rng.choice((0, 1, rng.randrange(1, 5000), rng.randrange(100_000, 400_000)))
    read = rng.randrange(0, prompt + 1) if prompt and rng.random() < 0.5 else 0
    write = rng.randrange(0, prompt - read + 1) if prompt - read and rng.random() < 0.3 else 0
    return Usage(prompt, rng.randrange(0, 20_000), cache_read=read, cache_write=write)


def test_most_models_of_the_gateways_providers_take_the_fast_path() -> None:
    flat = [model for _, model, price in BUNDLED if price._rates is not None]
    assert len(BUNDLED) > 200
    assert len(flat) > len(BUNDLED) / 3, f"only {len(flat)} of {len(BUNDLED)} models priced at flat rates"
    assert bundled_price("openai", "gpt-4o-mini")._rates is not None


@pytest.mark.parametrize("seed", range(3))
def test_every_bundled_price_equals_genai_prices(seed: int) -> None:
    """Whichever path a model takes, its cost is genai-prices' to the last digit."""
    rng = random.Random(seed)
    for provider, model, price in BUNDLED:
        for _ in range(5):
            usage = _usage(rng)
            try:
                expected = price._exact(usage)
            except Exception:  # a usage genai-prices refuses for this model (e.g. cache tokens it cannot price)
                continue
            assert price.cost(usage) == expected, (provider, model, usage)


def test_a_configured_price_wins_over_the_bundled_one() -> None:
    from mcp_gateway.config.models import Price

    rates = pricer("openai", "gpt-4o-mini", Price(input=1, output=2))
    assert rates is not None
    assert rates.cost(Usage(1_000_000, 1_000_000)) == Decimal(3)
