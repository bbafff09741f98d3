"""Counters in this process: the limits each gateway process enforces on its own (no Redis).

The same semantics as the Redis counters (metering/redis.py): fixed windows aligned on the
epoch, in milliseconds of the wall clock; a check and its charges happen with no await in
between, so on one event loop they are atomic without a lock. Counters of windows that have
ended are swept now and then, so memory follows the subjects active in the current windows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mcp_gateway.metering.limits import Counter, CounterUse, Rule, State

SWEEP_SECONDS = 60.0


class LocalCounters:
    """A process's counters: a window's start and count per window counter, held slots per concurrency counter."""

    remote = False

    def __init__(self) -> None:
        self._windows: dict[str, list[int]] = {}  # key -> [start ms, count, window ms]
        self._slots: dict[str, set[str]] = {}  # key -> call ids in flight
        self._sweep_at = time.monotonic() + SWEEP_SECONDS

    async def acquire(self, counters: Sequence[Counter], amounts: Sequence[int], call_id: str) -> list[State]:
        """Charge every counter, or none (see Backend.acquire)."""
        now = int(time.time() * 1000)
        if time.monotonic() >= self._sweep_at:
            self._sweep(now)
        states: list[State] = []
        used_before: list[int] = []
        for counter, amount in zip(counters, amounts, strict=True):
            rule = counter.rule
            if rule.window:
                span = rule.window * 1000
                start = now - now % span
                found = self._windows.get(counter.key)
                used = found[1] if found is not None and found[0] == start else 0
                reset = (start + span - now) / 1000
            else:
                start, reset = 0, 0.0
                used = len(self._slots.get(counter.key, ()))
            used_before.append(used)
            states.append(State(counter, 0, reset, start, used + amount > rule.limit))
        admitted = not any(s.refused for s in states)
        for state, used, amount in zip(states, used_before, amounts, strict=True):
            # What is left after this call: its charge counts only when it was admitted.
            state.remaining = max(0, state.counter.rule.limit - used - (amount if admitted else 0))
        if admitted:
            for state, amount in zip(states, amounts, strict=True):
                key = state.counter.key
                if state.counter.rule.window:
                    found = self._windows.get(key)
                    if found is not None and found[0] == state.start:
                        found[1] += amount
                    else:
                        self._windows[key] = [state.start, amount, state.counter.rule.window * 1000]
                else:
                    self._slots.setdefault(key, set()).add(call_id)
        return states

    async def release(self, states: Sequence[State], deltas: Sequence[int], call_id: str) -> None:
        """Free the call's slots; settle its tokens in the windows they were charged in."""
        for state, delta in zip(states, deltas, strict=True):
            key = state.counter.key
            if not state.counter.rule.window:
                slots = self._slots.get(key)
                if slots is not None:
                    slots.discard(call_id)
                    if not slots:
                        del self._slots[key]
            elif delta:
                found = self._windows.get(key)
                if found is not None and found[0] == state.start:
                    found[1] = max(0, found[1] + delta)

    async def usage(self, rules: Sequence[Rule]) -> list[CounterUse]:
        """See Backend.usage."""
        now = int(time.time() * 1000)
        by_name = {rule.name: rule for rule in rules}
        found: list[CounterUse] = []
        for key, (start, count, span) in self._windows.items():
            rule = by_name.get(key.split("|", 1)[0])
            if rule is not None and rule.window * 1000 == span and start + span > now and count:
                found.append(CounterUse(rule, key.split("|", 1)[1], count, (start + span - now) / 1000))
        for key, slots in self._slots.items():
            rule = by_name.get(key.split("|", 1)[0])
            if rule is not None and not rule.window and slots:
                found.append(CounterUse(rule, key.split("|", 1)[1], len(slots), 0.0))
        return found

    def _sweep(self, now: int) -> None:
        self._windows = {k: v for k, v in self._windows.items() if v[0] + v[2] > now}
        self._sweep_at = time.monotonic() + SWEEP_SECONDS

    async def aclose(self) -> None:
        """Nothing to close."""
