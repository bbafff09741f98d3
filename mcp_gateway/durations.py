"""Durations as people write them: `90` (seconds), `30s`, `30m`, `12h`, `90d`, `2w`.

One grammar for the CLI (`--expires-in 90d`) and the admin API (`"expires_in": "90d"`).
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXAMPLES = "e.g. 3600, 30m, 12h, 90d, 2w"


class DurationError(ValueError):
    """Not a duration."""


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number of seconds or a text like `90d`; DurationError when neither, or not positive."""
    if isinstance(value, bool):
        raise DurationError(f"not a duration: {value!r} ({EXAMPLES})")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value.strip().lower())
        if not match:
            raise DurationError(f"not a duration: {value!r} ({EXAMPLES})")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise DurationError(f"a duration must be positive: {value!r}")
    return seconds


def parse_moment(text: str, now: float) -> float:
    """An epoch time from `7d`/`12h` (that long before `now`), epoch seconds, or an ISO date or
    date-time (UTC unless it says); ValueError naming the forms otherwise."""
    import datetime as dt

    text = text.strip()
    try:
        return now - parse_duration(text) if text[-1:].isalpha() else float(text)
    except (DurationError, ValueError):
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (a duration ago like 7d or 12h, epoch seconds, or an ISO date like 2026-11-01)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
