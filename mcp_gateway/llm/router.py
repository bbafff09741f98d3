"""Which deployment serves a request: model look-up, routing strategies, health and cool-down.

A model's deployments are ordered per request by its strategy:
- `priority`: as listed (fallback order);
- `weighted`: a random order drawn by `weight`;
- `least-latency`: by the moving average (EWMA) of time to first byte;
- `lowest-cost`: by price (input + output per million tokens);
- `least-busy`: by calls in flight.
A deployment that failed `COOL_AFTER` times in a row, or answered 429 with a `Retry-After`,
rests (is tried last) until its cool-down ends. Providers are built on first use, in a worker
thread (that reads the vault), one build per deployment however many calls arrive at once.

The models can change while calls run (`update`, from registrations): a deployment that stays
as it was keeps its target, so its health and pooled provider carry over; the targets of
removed or changed deployments retire, and their providers close once their last call (a
stream, say) has ended (`sweep`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import anyio
import anyio.to_thread

from mcp_gateway.config.models import DeploymentConfig, ModelConfig
from mcp_gateway.llm.providers import Provider, Resolve, build_provider
from mcp_gateway.llm.usage import Pricer, Usage, pricer

COOL_AFTER = 3  # consecutive failures
RETIRED_KEPT = 32  # providers replaced after a secret change, kept open for streams still reading
EWMA_WEIGHT = 0.2  # of the newest sample


class RetiredDeployment(Exception):
    """A deployment that is no longer served was asked for a provider."""


@dataclass(slots=True)
class Health:
    """What the router has seen of one deployment lately."""

    calls: int = 0
    errors: int = 0
    in_flight: int = 0
    consecutive_failures: int = 0
    cooling_until: float = 0.0  # monotonic
    latency: float | None = None  # EWMA of seconds to first byte
    last_error: str | None = None

    def cooling(self, now: float | None = None) -> bool:
        """Whether it rests now."""
        return (time.monotonic() if now is None else now) < self.cooling_until

    def succeeded(self, seconds_to_first_byte: float) -> None:
        """A call got an answer."""
        self.calls += 1
        self.consecutive_failures = 0
        self.cooling_until = 0.0
        sample = max(0.0, seconds_to_first_byte)
        self.latency = sample if self.latency is None else (1 - EWMA_WEIGHT) * self.latency + EWMA_WEIGHT * sample

    def failed(self, why: str, cooldown: float, retry_after: float | None = None) -> None:
        """A call failed in a way that says the deployment is unwell (not the request)."""
        self.calls += 1
        self.errors += 1
        self.consecutive_failures += 1
        self.last_error = why
        now = time.monotonic()
        if retry_after:
            self.cooling_until = max(self.cooling_until, now + retry_after)
        if self.consecutive_failures >= COOL_AFTER:
            self.cooling_until = max(self.cooling_until, now + cooldown)

    def public(self) -> dict[str, object]:
        """For `models list/show` and the admin API."""
        return {
            "calls": self.calls,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "cooling_for_seconds": round(max(0.0, self.cooling_until - time.monotonic()), 1),
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class Target:
    """One deployment of one model, as the router tracks it."""

    model: ModelConfig
    index: int
    deployment: DeploymentConfig
    health: Health = field(default_factory=Health)
    provider: Provider | None = None
    revision: int = -1  # of the secrets the provider was built from
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    retired: bool = False  # its deployment was removed or changed: no new provider is built for it

    def pricer(self, asked: str) -> Pricer | None:
        """Its price for a request that asked for `asked`."""
        return pricer(self.deployment.provider, self.deployment.model_for(asked), self.deployment.price)


class ModelRouter:
    """The configured models and their deployments' state."""

    def __init__(
        self,
        models: Iterable[ModelConfig],
        resolve: Resolve,
        user_agent: str,
        revision: Callable[[], int] = lambda: 0,
    ) -> None:
        """`revision` (blocking) is the secrets' revision: it moves whenever `resolve` may answer otherwise."""
        self.resolve = resolve
        self.user_agent = user_agent
        self.revision = revision
        self._retired: list[Provider] = []
        self._leaving: list[Target] = []  # retired targets whose provider may still serve a call
        self.models: list[ModelConfig] = []
        self.targets: dict[str, list[Target]] = {}
        self._exact: dict[str, ModelConfig] = {}
        self._globs: list[ModelConfig] = []
        self.update(models)

    def update(self, models: Iterable[ModelConfig]) -> bool:
        """Serve `models` from now on; True if anything changed. A deployment listed again unchanged
        under the same model name keeps its target (health, provider); the others retire, and
        `sweep` closes their providers once no call uses them."""
        models = list(models)
        unmatched = {name: list(targets) for name, targets in self.targets.items()}
        targets: dict[str, list[Target]] = {}
        for model in models:
            pool = unmatched.get(model.name, [])
            kept = []
            for index, deployment in enumerate(model.deployments):
                same = next((t for t in pool if t.deployment == deployment), None)
                if same is None:
                    kept.append(Target(model, index, deployment))
                else:
                    pool.remove(same)
                    same.model, same.index = model, index
                    kept.append(same)
            targets[model.name] = kept
        leaving = [t for pool in unmatched.values() for t in pool]
        changed = bool(leaving) or models != self.models
        # One swap, no await in between: a call sees the old models or the new ones, never a mix.
        self.models, self.targets = models, targets
        self._exact = {m.name: m for m in models if not m.is_glob}
        self._globs = [m for m in models if m.is_glob]
        for target in leaving:
            target.retired = True
            self._leaving.append(target)
        return changed

    async def sweep(self) -> None:
        """Close the providers of retired targets that no call uses any more."""
        still: list[Target] = []
        for target in self._leaving:
            if target.health.in_flight > 0 or target.lock.locked():  # (locked: its provider is being built)
                still.append(target)
            elif target.provider is not None:
                provider, target.provider = target.provider, None
                await provider.aclose()
        self._leaving = still

    def find(self, asked: str) -> ModelConfig | None:
        """The model serving `asked`: an exact name first, then the first glob that matches."""
        found = self._exact.get(asked)
        if found is not None:
            return found
        return next((m for m in self._globs if m.matches(asked)), None)

    def max_cost(self, model: ModelConfig, asked: str, prompt: int, output: int) -> Decimal | None:
        """The most a call to `model` (asked as `asked`) of `prompt` tokens answering at most
        `output` may cost, in USD: on the priciest of its deployments and of those of the models
        it may fall back to, with every prompt token priced at the dearer of plain input and
        cache write. None when no deployment has a price."""
        plain, written = Usage(input=prompt, output=output), Usage(input=prompt, output=output, cache_write=prompt)
        found: Decimal | None = None
        chain = [(model, asked)]
        for name in (*model.fallbacks, *model.context_window_fallbacks, *model.content_policy_fallbacks):
            other = self.find(name)
            if other is not None:
                chain.append((other, name))
        for config, name in chain:
            for target in self.targets.get(config.name, ()):
                price = target.pricer(name)
                if price is not None:
                    cost = max(price.cost(plain), price.cost(written))
                    found = cost if found is None or cost > found else found
        return found

    def names(self) -> list[str]:
        """The model names clients can ask for by name (globs are not names)."""
        return [m.name for m in self.models if not m.is_glob]

    def order(self, model: ModelConfig, asked: str) -> list[Target]:
        """This request's deployments, best first by the model's strategy; resting ones last."""
        targets = list(self.targets[model.name])
        strategy = model.strategy
        if strategy == "weighted":
            targets = _weighted_order(targets)
        elif strategy == "least-latency":
            # Never measured first (so each gets measured), then the fastest.
            targets.sort(key=lambda t: (t.health.latency is not None, t.health.latency or 0.0))
        elif strategy == "lowest-cost":
            targets.sort(key=lambda t: _price_key(t, asked))
        elif strategy == "least-busy":
            targets.sort(key=lambda t: t.health.in_flight)
        now = time.monotonic()
        return [t for t in targets if not t.health.cooling(now)] + [t for t in targets if t.health.cooling(now)]

    async def provider(self, target: Target) -> Provider:
        """The target's provider, built on first use off the event loop."""
        if target.provider is not None:
            return target.provider
        async with target.lock:
            if target.retired:
                # A call that chose it before its model changed: on to the next deployment.
                raise RetiredDeployment(
                    f"deployment {target.deployment.label(target.model.name)} was removed or changed"
                )
            if target.provider is None:
                target.revision, target.provider = await anyio.to_thread.run_sync(self._build, target.deployment)
        return target.provider

    def _build(self, deployment: DeploymentConfig) -> tuple[int, Provider]:
        # The revision first: a secret written after this read is seen at the next poll.
        revision = self.revision()
        return revision, build_provider(deployment, self.resolve, self.user_agent)

    async def secrets_changed(self, revision: int) -> None:
        """Forget providers built from secrets older than `revision`; they are rebuilt on their next call.
        Their pools close later (a stream may still be reading from one)."""
        for targets in self.targets.values():
            for target in targets:
                if target.provider is not None and target.revision != revision:
                    self._retired.append(target.provider)
                    target.provider = None
        while len(self._retired) > RETIRED_KEPT:
            await self._retired.pop(0).aclose()

    async def aclose(self) -> None:
        """Close every provider's pool."""
        for targets in [*self.targets.values(), self._leaving]:
            for target in targets:
                if target.provider is not None:
                    self._retired.append(target.provider)
                    target.provider = None
        retired, self._retired = self._retired, []
        for provider in retired:
            await provider.aclose()


def _weighted_order(targets: list[Target]) -> list[Target]:
    """A random order in which each deployment comes first in proportion to its weight."""
    pool = list(targets)
    out: list[Target] = []
    while pool:
        pick = random.choices(range(len(pool)), weights=[t.deployment.weight for t in pool])[0]
        out.append(pool.pop(pick))
    return out


def _price_key(target: Target, asked: str) -> float:
    found = target.pricer(asked)
    if found is None:
        return float("inf")  # unknown price: last
    return float(found.cost(Usage(input=1_000_000, output=1_000_000)))
