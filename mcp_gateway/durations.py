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
