"""The `RateLimit-Policy` and `RateLimit` response fields (draft-ietf-httpapi-ratelimit-headers-11).

Both are Structured Field Lists (RFC 9651) of items named by the policy, a String:

    RateLimit-Policy: "per-consumer";q=60;w=60, "inflight";q=4;qu="concurrent-requests"
    RateLimit: "per-consumer";r=0;t=17, "inflight";r=3

`q` is the quota, `w` the window in seconds, `qu` the quota unit (`requests` by default;
`concurrent-requests` for calls in flight), `r` what is left and `t` the seconds until the
window restarts. Token limits say `qu="tokens"`: the draft's registry has no unit for them yet,
and calling them requests would mislead a client. No partition key is sent: the policy name and
the caller's own identity say whose quota it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mcp_gateway.metering.limits import State

_UNITS = {"requests": "", "tokens": ';qu="tokens"', "concurrent": ';qu="concurrent-requests"'}


def _string(value: str) -> str:
    """An SF String (rule names are plain ASCII already; quotes and backslashes escaped anyway)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ratelimit_headers(states: Sequence[State]) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` for the counters a call was checked against."""
    policies, limits = [], []
    for state in states:
        rule = state.counter.rule
        name = _string(rule.name)
        window = f";w={rule.window}" if rule.window else ""
        policies.append(f"{name};q={rule.limit}{window}{_UNITS[rule.unit]}")
        reset = f";t={max(0, math.ceil(state.reset))}" if rule.window else ""
        limits.append(f"{name};r={max(0, state.remaining)}{reset}")
    return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(limits)}
