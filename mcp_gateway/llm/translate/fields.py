"""The fields of a client's request as a translator consumes them: each one translated, refused
with a 400 naming it, or (when the model sets `drop_params`) dropped with a debug log line.

A translator takes the fields it understands; whatever is left at the end is refused too, so a
field the gateway does not know is never dropped silently. A field given as `null` counts as
absent, as both formats treat it. A request of the wrong shape (a string where an object must
be) is the client's 400 whatever `drop_params` says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm.errors import LlmError

logger = logging.getLogger("mcp_gateway.models")

# Request fields of OpenAI chat that no other format has, refused whatever the target.
OPENAI_ONLY = (
    "audio",
    "prediction",
    "web_search_options",
    "verbosity",
    "moderation",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "functions",
    "function_call",
)
# Request fields of Anthropic Messages that no other format has (Anthropic's server-side features).
ANTHROPIC_ONLY = (
    "container",
    "mcp_servers",
    "context_management",
    "inference_geo",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
)


class Fields:
    """One request's fields, consumed by a translator into `target` (a format's name, for messages)."""

    def __init__(self, body: Mapping[str, Any], model: ModelConfig, target: str) -> None:
        self._left = {k: v for k, v in body.items() if v is not None}
        self.drop = model.drop_params
        self.model = model.name
        self.target = target

    def pop(self, name: str) -> Any:
        """A field's value (None when absent), taken: it is translated by the caller."""
        return self._left.pop(name, None)

    def refuse(self, param: str, why: str) -> None:
        """A field the target cannot carry: a 400 naming it, or dropped under `drop_params`."""
        if self.drop:
            logger.debug("model %s: dropped %s, which %s cannot carry (%s)", self.model, param, self.target, why)
            return
        raise LlmError(
            "invalid_request",
            f"`{param}` cannot be translated to {self.target}: {why}. "
            "The model's `drop_params` setting drops such fields instead.",
            param=param,
        )

    def neutral(self, name: str, *harmless: Any) -> None:
        """A field the target has no equivalent of: accepted when absent or one of the `harmless`
        values (those that change nothing), refused otherwise."""
        value = self.pop(name)
        if value is not None and not any(
            value == h and isinstance(value, bool) == isinstance(h, bool) for h in harmless
        ):
            self.refuse(name, f"{self.target} has no equivalent")

    def absent(self, *names: str) -> None:
        """Fields the target has no equivalent of for any value: refused when given."""
        for name in names:
            self.neutral(name)

    def unknown_keys(self, value: Mapping[str, Any], known: Iterable[str], path: str) -> None:
        """Refuse the keys of a nested object (a message, a content block) that are not `known`."""
        known = set(known)
        for key, item in value.items():
            if key not in known and item is not None:
                self.refuse(f"{path}.{key}", f"{self.target} has no equivalent")

    def finish(self) -> None:
        """Refuse every field no translator step took."""
        for name in list(self._left):
            del self._left[name]
            self.refuse(name, "the gateway does not know this field")


def request_fields(body: Mapping[str, Any], model: ModelConfig, target: str) -> Fields:
    """A request's fields, for a translation into `target`, with `model` and `stream` taken: the
    translator writes those in the target's own way (the provider's model id, its URL)."""
    fields = Fields(body, model, target)
    fields.pop("model")
    fields.pop("stream")
    return fields


def malformed(param: str, what: str) -> LlmError:
    """A request of the wrong shape: the client's 400, whatever `drop_params` says."""
    return LlmError("invalid_request", f"`{param}` must be {what}", param=param)


def as_dict(value: Any, param: str) -> dict[str, Any]:
    """`value` when it is an object, else the client's 400."""
    if not isinstance(value, dict):
        raise malformed(param, "an object")
    return value


def as_list(value: Any, param: str) -> list[Any]:
    """`value` when it is an array, else the client's 400."""
    if not isinstance(value, list):
        raise malformed(param, "an array")
    return value


def as_str(value: Any, param: str) -> str:
    """`value` when it is a string, else the client's 400."""
    if not isinstance(value, str):
        raise malformed(param, "a string")
    return value


def as_int(value: Any, param: str) -> int:
    """`value` when it is an integer, else the client's 400."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise malformed(param, "an integer")
    return value


def items(value: Any, param: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects of an array, each with its own path (`param[i]`); the client's 400 for
    anything else."""
    for i, item in enumerate(as_list(value, param)):
        yield f"{param}[{i}]", as_dict(item, f"{param}[{i}]")


# A reader of one kind of content part: (part, its path, fields) -> the target's block, or None
# when the part was refused (and dropped under `drop_params`).
PartReader = Callable[[dict[str, Any], str, Fields], Any]


def content_parts(content: Any, path: str, fields: Fields, readers: Mapping[str, PartReader], what: str) -> list[Any]:
    """A message's `content` (a string, null, or typed parts, in OpenAI's format and Anthropic's
    alike) read by the reader of each part's `type`; a string is one `text` part. A kind with
    no reader is refused: the target takes `what` there."""
    if content is None:
        return []
    parts = [("", {"type": "text", "text": content})] if isinstance(content, str) else items(content, path)
    out = []
    for where, part in parts:
        reader = readers.get(part.get("type"))  # type: ignore[arg-type]
        if reader is None:
            fields.refuse(where, f"{fields.target} takes {what} here, not {part.get('type')!r}")
        elif (found := reader(part, where, fields)) is not None:
            out.append(found)
    return out
