"""Budgets: spend caps in USD per day, week, month or in total, for tool and model calls alike.

A budget is scoped and matched as a rate limit is (config/limits.py): `scope` says whose spend
one cap holds (each consumer's, each team's..., or everyone's: `global`), `match` which calls
count at all. "Each consumer 20 USD a month" is `scope: consumer`; "team payments 500 USD a
month between them" is `scope: team, match: {team: payments}`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mcp_gateway.config.base import SECRET_REF, StrictModel
from mcp_gateway.config.costs import Usd
from mcp_gateway.config.limits import LimitMatch, name_rules, rules_only

BudgetScope = Literal["key", "consumer", "team", "org", "model", "api", "tool", "global"]
Period = Literal["day", "week", "month", "total"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BudgetRule(StrictModel):
    """One cap: `usd` per `period`, held per `scope`, for the calls `match` selects."""

    name: str | None = Field(
        default=None, description="how refusals, usage and alerts name it; default: <scope>-<period>"
    )
    scope: BudgetScope = Field(description="one cap per key, consumer, team, org, model, API or tool; global: one")
    match: LimitMatch = Field(default_factory=LimitMatch)
    usd: Usd = Field(description="the cap, in USD (a number or a decimal string; kept exact)")
    period: Period = Field(
        default="month",
        description="day, week (from Monday) or month, calendar periods in UTC; or total (never resets)",
    )
    alert_at: list[int] | None = Field(
        default=None, description="alert when spend reaches these percentages of the cap; default: budgets.alerts.at"
    )

    @model_validator(mode="after")
    def _check(self) -> BudgetRule:
        if self.usd <= 0:
            raise ValueError("usd must be more than 0")
        if self.name is not None and not _NAME.match(self.name):
            raise ValueError("name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
        return self

    _percents = field_validator("alert_at")(classmethod(lambda cls, value: _percents(value)))


def _percents(value: list[int] | None) -> list[int] | None:
    if value is not None and any(not 0 < p <= 1000 for p in value):
        raise ValueError("alert percentages are between 1 and 1000")
    return sorted(set(value)) if value is not None else None


class AlertsConfig(StrictModel):
    """Where alerts go when spend reaches a threshold: always a log line; a webhook when `webhook_url` is set."""

    at: list[int] = Field(default_factory=lambda: [50, 80, 100], description="percentages of each cap")
    webhook_url: str | None = Field(default=None, description="POSTed a JSON body per alert")
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        description="secret:NAME (or env:NAME): signs each body, X-Signature: sha256=<HMAC-SHA256 hex>",
    )
    attempts: int = Field(default=6, ge=1, le=20, description="tries per alert, with backoff between them")
    backoff_seconds: float = Field(default=1.0, gt=0, description="the first wait between tries; doubled each time")
    timeout: float = Field(default=10.0, gt=0, description="seconds for one POST")

    _at = field_validator("at")(classmethod(lambda cls, value: _percents(value)))

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        # A plain value here would sit in the config file; the vault or the environment hold it.
        if value is not None and not SECRET_REF.match(value):
            raise ValueError("webhook_secret must be a reference: secret:NAME (the vault) or env:NAME")
        return value


class BudgetsConfig(StrictModel):
    """`budgets:` the caps, how model calls are reserved for, and alerts. Their counters live where the
    rate limits' do: in this process, or in `limits.redis_url`."""

    rules: list[BudgetRule] = Field(default_factory=list)
    default_output_tokens: int | None = Field(
        default=None,
        gt=0,
        description="tokens a model call without max_tokens reserves for its answer; default: the model's "
        "default_max_tokens",
    )
    unpriced_models: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="a model call under a budget to a model without a price (genai-prices' data or a deployment's "
        "price): refuse (its cost cannot be reserved) or allow (it counts as costing nothing)",
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @model_validator(mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return rules_only(value)

    @model_validator(mode="after")
    def _names(self) -> BudgetsConfig:
        name_rules(self.rules, lambda rule: f"{rule.scope}-{rule.period}", "budget")
        return self

    def thresholds(self, rule: BudgetRule) -> list[int]:
        """The alert percentages of `rule`."""
        return rule.alert_at if rule.alert_at is not None else self.alerts.at
