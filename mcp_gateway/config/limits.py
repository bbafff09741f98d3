"""Rate limits: rules that cap requests, tokens or in-flight calls, per key, consumer, team, org,
model, API, tool or for everyone, and where their counters live (this process, or Redis).

A rule says what it counts (one quantity), for whom each counter is kept (`scope`: one counter
per consumer, per team, ... or one for every call, `global`), and optionally which calls it
applies to at all (`match`). "Each consumer 60 a minute" is `scope: consumer` with no `match`;
"team payments 600 a minute" is `scope: team, match: {team: payments}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from mcp_gateway.config.base import StrictModel

Scope = Literal["key", "consumer", "team", "org", "model", "api", "tool", "global"]
FailureMode = Literal["fail_closed", "fail_open"]

# Each quantity a rule may set: (what is counted, window in seconds; 0: no window).
QUANTITIES: dict[str, tuple[str, int]] = {
    "requests_per_second": ("requests", 1),
    "requests_per_minute": ("requests", 60),
    "requests_per_hour": ("requests", 3600),
    "requests_per_day": ("requests", 86400),
    "tokens_per_minute": ("tokens", 60),
    "tokens_per_day": ("tokens", 86400),
    "concurrent": ("concurrent", 0),
}
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def _names(value: Any) -> Any:
    """One name or glob, or a list of them."""
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_names)]


class LimitMatch(StrictModel):
    """Which calls a rule applies to: every criterion given must hold (names or globs, any of a list).

    A call without the named part never matches: a rule matching `model` applies to model calls
    only, one matching `api` or `tool` to tool calls only, one matching `consumer`, `team`, `org`
    or `key` only to calls whose caller has one (access control on).
    """

    key: Names = Field(default_factory=list, description="gateway key ids (or token subjects)")
    consumer: Names = Field(default_factory=list)
    team: Names = Field(default_factory=list)
    org: Names = Field(default_factory=list)
    model: Names = Field(default_factory=list, description="model names as clients ask for them")
    api: Names = Field(default_factory=list)
    tool: Names = Field(default_factory=list, description="tool names as the catalog names them")

    def criteria(self) -> list[tuple[str, tuple[str, ...]]]:
        """(field, patterns) for every criterion given."""
        return [(name, tuple(getattr(self, name))) for name in type(self).model_fields if getattr(self, name)]


class LimitRule(StrictModel):
    """One limit: a quantity, counted per `scope`, for the calls `match` selects."""

    name: str | None = Field(
        default=None, description="how refusals and RateLimit headers name it; default: <scope>-<quantity>"
    )
    scope: Scope = Field(description="one counter per key, consumer, team, org, model, API or tool; global: one")
    match: LimitMatch = Field(default_factory=LimitMatch)
    requests_per_second: int | None = Field(default=None, gt=0)
    requests_per_minute: int | None = Field(default=None, gt=0)
    requests_per_hour: int | None = Field(default=None, gt=0)
    requests_per_day: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0, description="model calls: input + output tokens")
    tokens_per_day: int | None = Field(default=None, gt=0, description="model calls: input + output tokens")
    concurrent: int | None = Field(default=None, gt=0, description="calls in flight at once")

    @model_validator(mode="after")
    def _one_quantity(self) -> LimitRule:
        given = [q for q in QUANTITIES if getattr(self, q) is not None]
        if len(given) != 1:
            raise ValueError(f"a limit rule sets exactly one of {', '.join(QUANTITIES)} (this one sets {len(given)})")
        if self.name is not None and not _RULE_NAME.match(self.name):
            raise ValueError("name must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
        if QUANTITIES[given[0]][0] == "tokens" and (self.scope in ("api", "tool") or self.match.api or self.match.tool):
            raise ValueError(f"{given[0]} counts model tokens: it cannot be scoped to or match APIs and tools")
        return self

    @property
    def quantity(self) -> str:
        """The quantity this rule sets (`requests_per_minute`...)."""
        return next(q for q in QUANTITIES if getattr(self, q) is not None)

    @property
    def limit(self) -> int:
        """The most the rule allows (requests or tokens per window, or calls in flight)."""
        value = getattr(self, self.quantity)
        assert isinstance(value, int)
        return value


def rules_only(value: Any) -> Any:
    """`limits:` (and `budgets:`) may be just the list of rules."""
    return {"rules": value} if isinstance(value, list) else value


def name_rules(rules: Sequence[Any], default: Callable[[Any], str], what: str) -> None:
    """Name each rule without a `name` by `default` (numbered by its place when that is taken);
    ValueError naming a name given twice."""
    taken: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name is None:
            name = default(rule)
            if name in taken or any(r.name == name for r in rules):
                name = f"{name}-{index + 1}"
            rule.name = name
        if rule.name in taken:
            raise ValueError(f"duplicate {what} name: {rule.name}")
        taken.add(rule.name)


class LimitsConfig(StrictModel):
    """`limits:` the rules, and the Redis that holds their counters when replicas share them."""

    rules: list[LimitRule] = Field(default_factory=list)
    redis_url: str | None = Field(
        default=None,
        repr=False,
        description="redis://[:password@]host:port/db (or rediss://): counters shared by every replica; "
        "default: each process counts on its own",
    )
    redis_failure: FailureMode = Field(
        default="fail_closed",
        description="when Redis cannot be reached: fail_closed refuses limited calls, fail_open lets them through "
        "(counted and logged)",
    )
    redis_timeout: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="seconds for connecting and for each Redis command; then the mode applies",
    )
    redis_prefix: str = Field(default="mcp-gateway:", description="prefix of every Redis key the limits use")
    concurrency_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        description="Redis: a replica renews its in-flight slots and budget reservations this often / 3; a dead "
        "replica's free after it",
    )
    default_output_tokens: int = Field(
        default=1024, ge=0, description="tokens reserved for the answer of a model call that sets no max_tokens"
    )

    @model_validator(mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return rules_only(value)

    @model_validator(mode="after")
    def _rule_names(self) -> LimitsConfig:
        name_rules(self.rules, lambda rule: f"{rule.scope}-{rule.quantity}", "limit rule")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        return self
