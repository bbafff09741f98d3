"""Rate limits: which rules apply to a call, one atomic check of all of them, and a refusal that
says which limit and when to retry.

Windows are fixed and aligned on the epoch, on the counters' clock (Redis's when the counters
are in Redis, so every replica agrees on where a window starts): a minute is a clock minute, a
day a UTC day. A window's counter is one number, changed atomically, so N per window means
exactly N across any number of replicas; the price is that a client may spend one window's
quota at its end and the next one's at its start (up to 2N within a window's length). A rule
per second next to one per minute bounds that burst. Token rules reserve an estimate when the
call is admitted and settle it to what the call used in the window the reservation went to.
Concurrency rules hold a slot per call in flight, freed when the call ends (in Redis, a lease
that a replica renews, so a dead replica's slots free themselves).

All the rules that apply to a call are checked and applied as one: either every counter
admits the call and all are charged, or none is.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import anyio

from mcp_gateway.auth.principal import Principal
from mcp_gateway.config.limits import QUANTITIES, LimitRule, LimitsConfig
from mcp_gateway.metering.hooks import NOBODY, Observer

if TYPE_CHECKING:  # the Redis module imports this one; only its type is needed here
    from mcp_gateway.metering.redis import RedisLink

logger = logging.getLogger("mcp_gateway.limits")

Unit = Literal["requests", "tokens", "concurrent"]
MAX_CACHED_SUBJECTS = 10_000
UNCHECKED_REPORT_SECONDS = 10.0
_WINDOW_WORDS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


@dataclass(frozen=True, slots=True)
class Subject:
    """What a call is counted as: who makes it and what it calls."""

    consumer: str | None = None
    team: str | None = None
    org: str | None = None
    key: str | None = None
    model: str | None = None
    api: str | None = None
    tool: str | None = None


def subject_of(
    principal: Principal | None, *, model: str | None = None, api: str | None = None, tool: str | None = None
) -> Subject:
    """The subject of a call by `principal` (None: access control is off) to a model or a tool."""
    if principal is None:
        return Subject(model=model, api=api, tool=tool)
    return Subject(
        principal.consumer, principal.team, principal.org, principal.credential_id, model=model, api=api, tool=tool
    )


Criteria = tuple[tuple[str, tuple[str, ...]], ...]  # (Subject field, name globs), all of which must match


def scope_value(scope: str, criteria: Criteria, subject: Subject) -> str | None:
    """What a rule scoped and matched so keeps `subject`'s counter under ("*" for global); None when
    the rule does not apply to it (a criterion fails, or the subject lacks the scope's part)."""
    for field, patterns in criteria:
        value = getattr(subject, field)
        if value is None or not any(fnmatch.fnmatchcase(value, p) for p in patterns):
            return None
    if scope == "global":
        return "*"
    value = getattr(subject, scope)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Rule:
    """A configured rule, ready to match calls."""

    name: str
    scope: str
    unit: Unit
    limit: int
    window: int  # seconds; 0 for concurrency
    criteria: Criteria

    @classmethod
    def of(cls, config: LimitRule) -> Rule:
        """Compile a configured rule."""
        unit, window = QUANTITIES[config.quantity]
        assert config.name is not None  # LimitsConfig names every rule
        return cls(config.name, config.scope, unit, config.limit, window, tuple(config.match.criteria()))  # type: ignore[arg-type]

    def counted_as(self, subject: Subject) -> str | None:
        """The value this rule keeps `subject`'s counter under; None when the rule does not apply."""
        if self.unit == "tokens" and subject.model is None:
            return None
        return scope_value(self.scope, self.criteria, subject)

    def describe(self) -> str:
        """`60 requests per minute`, `100000 tokens per day`, `4 calls in flight`."""
        if self.unit == "concurrent":
            return f"{self.limit} calls in flight"
        return f"{self.limit} {self.unit} per {_WINDOW_WORDS[self.window]}"


@dataclass(frozen=True, slots=True)
class Counter:
    """One rule's counter for one subject."""

    rule: Rule
    value: str  # what the scope names: the consumer, team, model... ("*" for global)

    @property
    def key(self) -> str:
        """The counter's identity in the backend."""
        return f"{self.rule.name}|{self.value}"

    def whose(self) -> str:
        """`consumer alice`, `everyone`."""
        return "everyone" if self.rule.scope == "global" else f"{self.rule.scope} {self.value}"


@dataclass(slots=True)
class State:
    """A counter as one check left it."""

    counter: Counter
    remaining: int  # what the rule still allows in its window (or slots free)
    reset: float  # seconds until the window restarts; 0 for concurrency
    start: int  # the window's start (ms on the backend's clock); 0 for concurrency
    refused: bool  # this counter is why the call was refused


@dataclass(frozen=True, slots=True)
class CounterUse:
    """How much of one rule's current window (or of its slots) one subject has used."""

    rule: Rule
    value: str
    used: int
    reset: float  # seconds until the window ends; 0 for concurrency

    def public(self) -> dict[str, object]:
        """As JSON, for the admin API and the console."""
        rule = self.rule
        return {
            "limit": rule.name,
            "scope": rule.scope,
            "subject": self.value,
            "rule": rule.describe(),
            "used": self.used,
            "of": rule.limit,
            "remaining": max(0, rule.limit - self.used),
            "resets_in_seconds": round(self.reset, 3) if rule.window else None,
        }


class Backend(Protocol):
    """Where counters live; `acquire` checks and charges every counter of a call atomically."""

    remote: bool  # over the network (its calls may suspend, fail and time out)

    async def acquire(self, counters: Sequence[Counter], amounts: Sequence[int], call_id: str) -> list[State]:
        """Charge `amounts` to `counters` if every one admits them (then no state is `refused`), else none.
        Raises BackendDown when the counters cannot be reached."""
        ...

    async def release(self, states: Sequence[State], deltas: Sequence[int], call_id: str) -> None:
        """The call ended: free its concurrency slots, add `deltas` to its token counters (in the
        window each was charged in)."""
        ...

    async def usage(self, rules: Sequence[Rule]) -> list[CounterUse]:
        """The counters of `rules` with something counted in their current window (or slots held),
        for listings (never on a call's path). Raises BackendDown when they cannot be reached."""
        ...

    async def aclose(self) -> None:
        """Let go of connections and background work."""
        ...


class BackendDown(Exception):
    """The counters cannot be reached; the message is safe to log (no URL, no password)."""


class LimitExceeded(Exception):
    """A call refused by one or more limits. The message names them and when to retry."""

    def __init__(self, states: list[State], tokens: int | None) -> None:
        self.states = states
        refused = [s for s in states if s.refused]

        def never(state: State) -> bool:  # a token rule the call cannot fit even in an empty window
            return state.counter.rule.unit == "tokens" and tokens is not None and tokens > state.counter.rule.limit

        waits = [1 if s.counter.rule.unit == "concurrent" else max(1, math.ceil(s.reset)) for s in refused]
        # A call that can never fit gets no time to retry at.
        self.retry_after: int | None = None if any(never(s) for s in refused) else max(waits)
        parts = []
        for state in refused:
            rule = state.counter.rule
            if never(state):
                parts.append(
                    f"limit {rule.name!r} ({rule.describe()} for {state.counter.whose()}) can never admit this "
                    f"request: it reserves about {tokens} tokens (prompt and max_tokens); ask for fewer"
                )
            else:
                parts.append(f"limit {rule.name!r} reached ({rule.describe()} for {state.counter.whose()})")
        tail = f"; retry after {self.retry_after} s" if self.retry_after is not None else ""
        super().__init__("Rate limit: " + "; ".join(parts) + tail)
        self.message = str(self)


class LimitsUnavailable(Exception):
    """The limits cannot be checked (Redis unreachable) and the configured mode refuses the call."""

    def __init__(self) -> None:
        super().__init__(
            "Rate limits cannot be checked right now (the limits store is unreachable), and this gateway refuses "
            "limited calls until it is back (limits.redis_failure: fail_closed); retry shortly"
        )
        self.message = str(self)
        self.retry_after = 1


class Unchecked:
    """Calls that counters out of reach (Redis) could not check: counted, and logged at most one
    line per `UNCHECKED_REPORT_SECONDS` with how many there were since the last line."""

    def __init__(self, what: str, config: LimitsConfig) -> None:
        self.what = what  # "limits", "budgets": the log lines' prefix
        self.mode = config.redis_failure
        self.count = 0
        self._unreported = 0
        self._reported_at = -math.inf

    def note(self, why: str) -> None:
        """Count one call; log, unless a line went out less than a report interval ago."""
        self.count += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._reported_at >= UNCHECKED_REPORT_SECONDS:
            done = "let through unchecked" if self.mode == "fail_open" else "refused"
            logging.getLogger(f"mcp_gateway.{self.what}").warning(
                "%s: %s; %d call(s) %s since the last report (limits.redis_failure: %s)",
                self.what, why, self._unreported, done, self.mode,
            )  # fmt: skip
            self._unreported = 0
            self._reported_at = now


class Admission:
    """An admitted call's hold on its counters, until `release`."""

    __slots__ = ("_backend", "_released", "_timeout", "call_id", "reserved", "states", "used")

    def __init__(self, backend: Backend, states: list[State], call_id: str, reserved: int, timeout: float) -> None:
        self._backend = backend
        self.states = states
        self.call_id = call_id
        self.reserved = reserved  # tokens reserved on each token counter
        self.used = 0  # tokens the call has used, as its usage records say
        self._released = False
        self._timeout = timeout

    def use_tokens(self, tokens: int) -> None:
        """Count tokens the call used (each usage record of it)."""
        self.used += tokens

    @property
    def holds(self) -> bool:
        """Whether `release` has anything to do (slots to free, tokens to settle)."""
        return any(s.counter.rule.unit != "requests" for s in self.states)

    async def release(self) -> None:
        """The call ended (done, failed or cancelled): free its slots and settle its tokens. Once;
        shielded from cancellation and bounded in time, so a cancelled call still lets go."""
        if self._released:
            return
        self._released = True
        if not self.holds:
            return
        deltas = [self.used - self.reserved if s.counter.rule.unit == "tokens" else 0 for s in self.states]
        if not self._backend.remote:  # never suspends, so a cancellation cannot cut it short
            await self._backend.release(self.states, deltas, self.call_id)
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
            try:
                await self._backend.release(self.states, deltas, self.call_id)
            except BackendDown as exc:  # Redis: the slot's lease frees it, the token counter's window ends
                logger.debug("limits: could not release a call's counters: %s", exc)


class Limiter:
    """The configured rules over a backend: `admit` each call, `release` what it holds after."""

    def __init__(self, config: LimitsConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.rules = [Rule.of(r) for r in config.rules]
        self.fail_open = config.redis_failure == "fail_open"
        self.timeout = config.redis_timeout * 2  # a command's timeout plus connecting
        self.skipped = Unchecked("limits", config)
        self._plans: dict[tuple[Subject, bool], tuple[Counter, ...]] = {}
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(4)  # call ids unique across replicas sharing Redis
        self.observer: Observer = NOBODY  # told of each refusal (metrics)

    def counters(self, subject: Subject, tokens: bool) -> tuple[Counter, ...]:
        """The counters a call by `subject` is checked against (token rules only with `tokens`)."""
        key = (subject, tokens)
        plan = self._plans.get(key)
        if plan is None:
            found = []
            for rule in self.rules:
                if rule.unit == "tokens" and not tokens:
                    continue
                value = rule.counted_as(subject)
                if value is not None:
                    found.append(Counter(rule, value))
            plan = tuple(found)
            if len(self._plans) >= MAX_CACHED_SUBJECTS:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    async def admit(self, subject: Subject, tokens: int | None = None) -> Admission | None:
        """Check and charge every rule that applies to a call; `tokens` is a model call's estimate
        (None: token rules do not apply). None when no rule applies (or fail_open let it through).

        Raises LimitExceeded when a limit refuses the call, LimitsUnavailable when the limits
        cannot be checked and the mode is fail_closed."""
        plan = self.counters(subject, tokens is not None)
        if not plan:
            return None
        amounts = [(tokens or 0) if c.rule.unit == "tokens" else 1 for c in plan]
        call_id = f"{self._id_prefix}-{next(self._ids)}"
        try:
            states = await self.backend.acquire(plan, amounts, call_id)
        except BackendDown as exc:
            self.skipped.note(str(exc))
            if not self.fail_open:
                self.observer.refused("limit", "unavailable", "", call_kind(subject))
                raise LimitsUnavailable() from None
            return None
        if any(s.refused for s in states):
            rule = next(s.counter.rule.name for s in states if s.refused)
            self.observer.refused("limit", "exceeded", rule, call_kind(subject))
            raise LimitExceeded(states, tokens)
        return Admission(self.backend, states, call_id, tokens or 0, self.timeout)

    @property
    def unchecked(self) -> int:
        """Calls the limits could not check: let through (fail_open) or refused (fail_closed)."""
        return self.skipped.count

    async def usage(self) -> list[CounterUse]:
        """What each subject has used of each rule now, by rule and subject (for GET
        /admin/limits/usage and the console). Raises BackendDown when the counters cannot be reached."""
        found = await self.backend.usage(self.rules)
        return sorted(found, key=lambda u: (u.rule.name, u.value))

    def set_rules(self, rules: Sequence[LimitRule]) -> None:
        """Apply `rules` from the next call on (the config file's and those added at run time).
        A counter keeps its count across the change while its rule keeps its name and window."""
        self.rules = [Rule.of(r) for r in rules]
        self._plans = {}

    async def aclose(self) -> None:
        """Close the backend."""
        await self.backend.aclose()


def call_kind(subject: Subject) -> str:
    """`model` or `tool`: what `subject` calls."""
    return "model" if subject.model is not None else "tool"


def limiter_for(config: LimitsConfig, link: RedisLink | None = None) -> Limiter:
    """The limiter `config` asks for: counters in Redis with `redis_url`, else in this process.
    Without rules it checks nothing (a dictionary lookup per call) until rules are added at run time."""
    if config.redis_url:
        from mcp_gateway.metering.redis import RedisCounters

        return Limiter(config, RedisCounters(config, link))
    from mcp_gateway.metering.counters import LocalCounters

    return Limiter(config, LocalCounters())
