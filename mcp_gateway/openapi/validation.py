"""Argument validators: tool input schemas compiled (by jsonschema-rs) into one check per call.

String formats are checked (`date-time`, `uuid`, `email`, `uri`, `ipv4`...: a value that is not
one is a value the spec says the API does not take); unknown formats are annotations.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs

from mcp_gateway.definitions import BINARY_VALUE, ArgumentValidator

# jsonschema-rs 0.61 reads the "xn--" prefix of an A-label case-sensitively, refusing host names
# such as `a.XN--E1A4C` that RFC 5890 (2.3.1) allows in any case: check the lower-case spelling
# (host names and the domains of addresses are case-insensitive).
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HOSTNAME = jsonschema_rs.Draft202012Validator({"format": "hostname"}, validate_formats=True)
_EMAIL = jsonschema_rs.Draft202012Validator({"format": "email"}, validate_formats=True)
_FORMATS = {
    "hostname": lambda text: _HOSTNAME.is_valid(text.translate(_LOWER)),
    "email": lambda text: _EMAIL.is_valid(text.translate(_LOWER)),
    # ECMA-262 with or without the `u` flag? Readings differ (`a{`), so a check could refuse a
    # regex the API takes: an annotation only.
    "regex": lambda _text: True,
}


def _compile(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, formats=_FORMATS)


def compile_validator(schema: dict[str, Any]) -> ArgumentValidator:
    """A fast validator for tool arguments that reports every bad field, formats included.

    Patterns the Rust regex engine cannot compile (some specs use ECMA or Python-only
    syntax) are left out of the validator, one by one; the published schema keeps them, as it
    keeps the `\\b` that the validator's copy spells as ECMA reads it.
    Raises ValueError when the schema cannot be compiled even so.
    """
    text = json.dumps(schema, default=str)
    published: dict[str, str] = {}  # pattern in the validator -> pattern in the schema (for messages)
    if "\\\\b" in text or "\\\\B" in text:

        def ecma(pattern: str) -> str:
            spelled = _ecma_boundaries(pattern)
            published[spelled] = pattern
            return spelled

        schema = _map_patterns(schema, ecma)
    try:
        if _HUGE_REPEAT.search(text):
            raise ValueError("a pattern the Rust engine would take long to refuse")  # (skip the slow attempt)
        validator = _compile(schema)
    except ValueError:  # jsonschema_rs.ValidationError is a ValueError
        validator = _compile(_without_bad_patterns(schema))

    def validate(arguments: Mapping[str, Any]) -> list[str]:
        if validator.is_valid(arguments):
            return []
        errors = []
        for error in validator.iter_errors(arguments):
            where = "/".join(str(p) for p in error.instance_path)
            message = _message(error, published)
            errors.append(f"{where}: {message}" if where else message)
        return errors

    return validate


_QUOTE_MAX = 80
_MESSAGE_MAX = 600


def _quoted(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(value) <= _QUOTE_MAX else json.dumps(value[:_QUOTE_MAX], ensure_ascii=False)[:-1] + '…"'


def _message(error: jsonschema_rs.ValidationError, published: Mapping[str, str]) -> str:
    """The error's message, quoting at most the start of a long value (a file's base64 can be
    megabytes), and a pattern as the schema spells it (`published`: the validator's -> the schema's)."""
    value = error.instance
    kind = error.kind
    message = error.message
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Pattern):
        if kind.pattern == BINARY_VALUE:
            return f"{_quoted(value)} is neither base64 text nor a data: URL (data:<mime>;base64,<data>)"
        if kind.pattern in published:
            message = message.replace(kind.pattern, published[kind.pattern])
    if isinstance(value, str) and len(value) > _QUOTE_MAX:
        message = message.replace(json.dumps(value, ensure_ascii=False), _quoted(value), 1)
    return message if len(message) <= _MESSAGE_MAX else message[: _MESSAGE_MAX - 1] + "…"


class LazyValidator:
    """`compile_validator(schema)`, compiled on the first call instead of at ingest.

    Compiled validators hold their whole schema, `$defs` included, in native memory: for
    an API of 20,000 operations that is gigabytes and most of the ingest time, spent on
    tools most sessions never call. A schema that cannot be compiled (not expected: the
    converter emits valid 2020-12, which bench/ingest_corpus.py checks on every public spec)
    makes each call of that tool fail with a message, never the gateway.
    """

    __slots__ = ("_schema", "_validate")

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema
        self._validate: ArgumentValidator | None = None

    def __call__(self, arguments: Mapping[str, Any]) -> list[str]:
        if self._validate is None:
            try:
                self._validate = compile_validator(self._schema)
            except ValueError as exc:
                message = f"the tool's argument schema cannot be compiled: {exc}"
                self._validate = lambda _arguments: [message]
        return self._validate(arguments)

    def __reduce__(self) -> tuple[type[LazyValidator], tuple[dict[str, Any]]]:
        """Copied (pickled) as its schema: a compiled validator is native memory, made again on use."""
        return (LazyValidator, (self._schema,))


# A counted repetition of 100,000 or more (`^.{1,2097152}` in seldon.local/engine.json): the Rust
# engine spends 0.15 s building it before refusing it (too large), once per occurrence.
_HUGE_REPEAT = re.compile(r"\{(?:\d{6,},?\d*|\d*,\d{6,})\}")


@functools.lru_cache(maxsize=4096)
def _regex_ok(pattern: str) -> bool:
    if _HUGE_REPEAT.search(pattern):
        return False
    try:
        jsonschema_rs.Draft202012Validator({"pattern": pattern})
    except ValueError:
        return False
    return True


def _without_bad_patterns(schema: Any) -> Any:
    """A copy of a schema without the `pattern`s / `patternProperties` entries the Rust engine rejects."""
    return _map_patterns(schema, lambda pattern: pattern if _regex_ok(pattern) else None)


# ECMA-262's \b and \B (outside a class: there \b is a backspace) as lookarounds on ASCII word
# characters: jsonschema-rs 0.61 reads ECMA's \d and \w as ASCII but leaves \b to the Rust engine,
# which reads it over Unicode words, so that `\b[a-f0-9]{12}\b` refused "...5056é" that ECMA takes.
_BOUNDARY = re.compile(r"(\\[bB])|(\\.|\[(?:\\.|[^\]\\])*\])", re.DOTALL)
_WORD = "[A-Za-z0-9_]"
_ECMA_BOUNDARIES = {
    "\\b": f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))",
    "\\B": f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))",
}


def _ecma_boundaries(pattern: str) -> str:
    return _BOUNDARY.sub(lambda m: _ECMA_BOUNDARIES[m[1]] if m[1] else m[0], pattern)


def _map_patterns(node: Any, change: Callable[[str], str | None], key: str | None = None) -> Any:
    """A copy of a schema whose `pattern`s and `patternProperties` names are `change(pattern)`,
    those for which it returns None left out.

    `key` is the keyword `node` is the value of: data under `enum`, `const`, `default`
    and `examples` is left alone, and only real `properties` may be named "pattern".
    """
    if key in ("enum", "const", "default", "examples"):
        return node
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if key != "properties" and k == "pattern" and isinstance(v, str):
                v = change(v)
                if v is None:
                    continue
            elif key != "properties" and k == "patternProperties" and isinstance(v, dict):
                v = {new: sub for p, sub in v.items() if (new := change(p)) is not None}
            out[k] = _map_patterns(v, change, None if key == "properties" else k)
        return out
    if isinstance(node, list):
        return [_map_patterns(v, change) for v in node]
    return node
