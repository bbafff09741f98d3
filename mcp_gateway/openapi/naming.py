"""Tool and argument names that every common LLM API accepts.

Tool names match `^[A-Za-z0-9_-]{1,64}$`; argument (property) names match
`^[A-Za-z0-9_.-]{1,64}$`, the pattern Anthropic's API enforces on input schema keys.
Both are deterministic: the same spec gives the same names on every start.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 64
# A prefix keeps at most half the name, so the operation part stays recognisable.
MAX_PREFIX = MAX_NAME // 2
_TOOL_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_ARG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_UNDERSCORES = re.compile(r"_{2,}")
_PATH_PARAM = re.compile(r"\{([^}]*)\}")


def _shorten(name: str, limit: int) -> str:
    """Cut to `limit` characters, keeping names distinct with a short stable hash."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return name[: limit - 7].rstrip("_-") + "_" + digest


def _clean(raw: str) -> str:
    return _UNDERSCORES.sub("_", _TOOL_BAD.sub("_", raw.strip())).strip("_")


def clean_tool_name(raw: str) -> str:
    """Sanitise an operationId: `repos/get-content` -> `repos_get-content`."""
    return _clean(raw) or "operation"


def operation_name(operation_id: str | None, method: str, path: str) -> str:
    """The base tool name for an operation: its operationId, else method and path.

    An operationId with nothing usable left after sanitising (e.g. all non-ASCII) counts
    as absent: method and path say more than a generic name.
    """
    if operation_id and _clean(operation_id):
        return _clean(operation_id)
    # GET /pets/{petId}/photos -> get_pets_petId_photos
    path_words = _PATH_PARAM.sub(r"\1", path).replace("/", "_")
    return clean_tool_name(f"{method.lower()}_{path_words}")


def with_prefix(prefix: str | None, name: str) -> str:
    """Join an API prefix and a tool name, keeping within the length limit."""
    if not prefix:
        return _shorten(name, MAX_NAME)
    prefix = _shorten(clean_tool_name(prefix), MAX_PREFIX)
    return prefix + "_" + _shorten(name, MAX_NAME - len(prefix) - 1)


def unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`... the first not in `taken`; adds it to `taken`."""
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate = _shorten(name, MAX_NAME - len(suffix)) + suffix
        n += 1
    taken.add(candidate)
    return candidate


def argument_name(raw: str) -> str:
    """A property key for a parameter name: `filter[status]` -> `filter_status`."""
    name = _UNDERSCORES.sub("_", _ARG_BAD.sub("_", raw)).strip("_")
    return _shorten(name or "arg", MAX_NAME)
