"""OpenAPI Schema Objects -> JSON Schema 2020-12, with only the `$defs` a tool uses.

Referenced component schemas become `$defs` entries named once per API, so a
tool's schema carries just the definitions it reaches (transitively) and
recursive schemas stay recursive. Each definition is converted once per
direction ("in" drops `readOnly` properties, "out" drops `writeOnly` ones) and
cached for the whole spec: ingesting a large API never converts a schema twice.

Result schemas bind nothing (the tool's output schema admits any object), so one
that would be too large for a tools/list entry becomes an "outline": its shape, and
only as many levels of `$defs` as fit (`defs_within`, `outline_defs`). Argument
schemas are never cut. Descriptions inside schemas are trimmed; regexes that not
every client can compile are left out (with an issue).
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_gateway.definitions import Issue
from mcp_gateway.openapi.load import Resolver, Target, display_name, pointer_join

# "in": argument schemas (no readOnly properties). "out": result schemas (no writeOnly
# properties). "outline": result schemas cut to their shape, for results whose full
# schema is over the API's output_schema_max_bytes (see `outline_defs`).
Direction = Literal["in", "out", "outline"]

# Keywords whose value is a schema / a map of schemas / a list of schemas.
_SCHEMA_VALUED = ("items", "not", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
                  "propertyNames", "if", "then", "else", "contentSchema", "additionalItems")  # fmt: skip
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
# Keywords carried over as they are (validation and useful annotations).
_PLAIN = frozenset((
    "type", "enum", "const", "default", "description", "format", "multipleOf", "maximum", "minimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
    "maxProperties", "minProperties", "required", "dependentRequired", "contentMediaType", "contentEncoding",
    "examples", "deprecated",
))  # fmt: skip
_JSON_TYPES = frozenset(("object", "array", "string", "number", "integer", "boolean", "null"))
_DEF_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


# Keywords that would still reject null after adding "null" to `type`.
_NULL_BLOCKERS = ("allOf", "anyOf", "oneOf", "not", "$ref", "const")
# Annotations kept beside the `anyOf` when a nullable schema is wrapped.
_ANNOTATIONS = ("description", "default", "examples", "deprecated")
_INVALID = object()
_NON_NEGATIVE_INTS = frozenset(("maxLength", "minLength", "maxItems", "minItems", "maxContains", "minContains",
                                "maxProperties", "minProperties"))  # fmt: skip
_NUMBERS = frozenset(("maximum", "minimum"))
_STRINGS = frozenset(("description", "format", "pattern", "contentMediaType", "contentEncoding"))
_BOOLEANS = frozenset(("uniqueItems", "deprecated"))
# What an "outline" result schema leaves out: annotations, `required` and value constraints,
# keeping types, properties, items, enums, formats and composition. Result schemas never
# bind (they admit any object), so this only shortens the documentation.
_OUTLINE_DROPS = frozenset((
    "description", "examples", "default", "deprecated", "required", "pattern", "minLength", "maxLength", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "uniqueItems",
    "minContains", "maxContains", "minProperties", "maxProperties", "dependentRequired",
))  # fmt: skip
# The range of each numeric format of the OpenAPI Format Registry that has one: a value outside
# it does not fit the API's type (the format is the spec's promise), so argument schemas say it
# (int64 reaches past JavaScript's safe integers, which JSON Schema does not mind).
_FLOAT32_MAX = 3.4028234663852886e38
_FORMAT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1), "float": (-_FLOAT32_MAX, _FLOAT32_MAX),
}  # fmt: skip
# ECMA-262 has no inline flags, comments, atomic groups or named groups in Python's (?P<...>)
# spelling, nor the \A \Z \z anchors: regexes using them break JavaScript clients (ajv).
_NOT_ECMA = re.compile(r"(?<!\\)\(\?(?![:=!]|<[=!]|<[A-Za-z_$][\w$]*>)|\\[AZzG]")


@functools.lru_cache(maxsize=4096)
def portable_pattern(pattern: str) -> bool:
    """Whether a `pattern` reads the same in the regex engines clients check schemas with.

    JSON Schema patterns are ECMA-262; Python clients (jsonschema's `format: regex`
    check of schemas, used by the MCP Python SDK before it validates a result) compile
    them with `re`. Specs often use engine-specific syntax such as `\\p{L}` (Java, .NET,
    ECMA with the u flag) that `re` rejects, making the whole schema invalid there.
    """
    if _NOT_ECMA.search(pattern):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and similar FutureWarnings
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return False
    return True


_WS = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def trim_text(text: str, limit: int) -> str:
    """Trim to `limit` characters at a word boundary, marking the cut with an ellipsis."""
    text = _BLANK_LINES.sub("\n\n", _WS.sub(" ", text.replace("\r\n", "\n"))).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-\n") + "…"


def json_size(value: Any) -> int:
    """The length of `value` as compact JSON (characters: bytes for ASCII text)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain_value(key: str, value: Any) -> Any:
    """`value` if it is valid for `key` in JSON Schema 2020-12 (duplicates removed), else `_INVALID`.

    Specs get these wrong often enough (`required: true` on a property, `minimum: "0"`,
    a description that YAML read as a number) that passing them on would make the whole
    tool list unusable for clients that check schemas.
    """
    if key in ("required", "type"):
        if key == "type" and isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(dict.fromkeys(value))
        return _INVALID
    if key in ("enum", "examples"):
        return value if isinstance(value, list) else _INVALID
    if key in _STRINGS:
        return value if isinstance(value, str) else _INVALID
    if key in _NON_NEGATIVE_INTS:
        ok = _is_number(value) and value >= 0 and float(value).is_integer()
        return int(value) if ok else _INVALID
    if key in _NUMBERS:
        return value if _is_number(value) else _INVALID
    if key == "multipleOf":
        return value if _is_number(value) and value > 0 else _INVALID
    if key in _BOOLEANS:
        return value if isinstance(value, bool) else _INVALID
    if key == "dependentRequired":
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )
        return {k: list(dict.fromkeys(v)) for k, v in value.items()} if ok else _INVALID
    return value  # default, const: any JSON value


def _argument_format(out: dict[str, Any]) -> None:
    """What an argument schema's `format` asserts, in place (argument validation checks formats).

    Beside an `enum` or `const`, which say exactly which values are meant, a format can only
    contradict them (`format: date-time, enum: [now]`): it is left out. A number whose format
    has a range (`int32`...) is bounded by it, intersected with the bounds the schema already
    has: two keywords at most, and none the schema already implies.
    """
    if "enum" in out or "const" in out:
        out.pop("format", None)
        return
    bounds = _FORMAT_RANGES.get(out.get("format"))
    kinds = out.get("type", "number")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds}
    if bounds is None or not kinds & {"integer", "number"}:
        return
    for value, bound, exclusive, sign in ((bounds[0], "minimum", "exclusiveMinimum", 1),
                                          (bounds[1], "maximum", "exclusiveMaximum", -1)):  # fmt: skip
        if any(_is_number(out.get(k)) and sign * out[k] >= sign * value for k in (bound, exclusive)):
            continue  # the schema's own bound is as tight (an exclusive one at the format's limit: tighter)
        out[bound] = value
        out.pop(exclusive, None)  # looser than the format's bound, so implied by it


def _wrap_or_null(out: dict[str, Any]) -> None:
    """Turn `out` in place into `{anyOf: [<out>, {type: null}]}`, keeping annotations outside."""
    inner = {k: out.pop(k) for k in list(out) if k not in _ANNOTATIONS}
    if list(inner) == ["anyOf"] and isinstance(inner["anyOf"], list):
        # `anyOf: [{anyOf: [A, B]}, null]` is `anyOf: [A, B, null]`, a level shorter (common: a
        # nullable 3.0 schema whose `anyOf` lists an id or the object it names).
        out["anyOf"] = [*inner["anyOf"], {"type": "null"}]
        return
    out["anyOf"] = [inner, {"type": "null"}]


def _or_null(schema: Any) -> Any:
    """A converted schema that also admits null."""
    if not isinstance(schema, dict):
        return schema if schema is True else {"type": "null"}
    out = dict(schema)
    _wrap_or_null(out)
    return out


def _def_name_base(pointer: str, uri: str, root_uri: str) -> str:
    last = pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~") if pointer else ""
    if not last:
        last = display_name(uri).rsplit("/", 1)[-1].split(".")[0] if uri != root_uri else "Root"
    return _DEF_NAME_BAD.sub("_", last).strip("_") or "Schema"


@dataclass
class SchemaConverter:
    """Converts the schemas of one spec; holds the per-spec definition cache."""

    resolver: Resolver
    version: str  # "3.0" or "3.1" (2.0 documents are converted to 3.0 first)
    issues: list[Issue] = field(default_factory=list)
    # Descriptions inside schemas are trimmed to this many characters (0 drops them).
    description_max_chars: int | None = None
    # (uri, pointer) -> $defs name, shared by both directions.
    _names: dict[tuple[str, str], str] = field(default_factory=dict)
    _taken: set[str] = field(default_factory=set)
    # (uri, pointer, direction) -> converted definition body and the def keys it references.
    _defs: dict[tuple[str, str, str], tuple[Any, frozenset[tuple[str, str]]]] = field(default_factory=dict)
    _in_progress: set[tuple[str, str, str]] = field(default_factory=set)
    # (uri, pointer, direction) -> compact JSON size of the `$defs` entry (name and body).
    _sizes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _descriptions: dict[str, str | None] = field(default_factory=dict)

    def convert(self, schema: Any, uri: str, pointer: str, direction: Direction) -> tuple[Any, set[tuple[str, str]]]:
        """Convert one schema found at `uri#pointer`; returns it and the def keys it references."""
        refs: set[tuple[str, str]] = set()
        return self._convert(schema, uri, pointer, direction, refs), refs

    def defs_for(self, refs: set[tuple[str, str]], direction: Direction) -> dict[str, Any]:
        """The `$defs` block for a schema referencing `refs`, closed over transitive references."""
        defs = self.defs_within(refs, direction, None)
        assert defs is not None  # no budget, never cut
        return defs

    def defs_within(
        self, refs: set[tuple[str, str]], direction: Direction, budget: int | None
    ) -> dict[str, Any] | None:
        """The `$defs` block for `refs` if it is at most `budget` characters of JSON (None: no limit), else None.

        Stops walking as soon as the budget is spent, so asking about a schema that
        reaches half of a huge API costs no more than asking about a small one.
        """
        out: dict[str, Any] = {}
        stack = list(refs)
        seen: set[tuple[str, str]] = set()
        used = 0
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            body, inner = self._definition(key, direction)
            if budget is not None:
                used += self._size(key, direction)
                if used > budget:
                    return None
            out[self._names[key]] = body
            stack.extend(inner)
        return dict(sorted(out.items()))

    def outline_defs(self, refs: set[tuple[str, str]], budget: int) -> dict[str, Any]:
        """The `$defs` block of an "outline" result schema: named definitions level by level
        (those the schema references, then those they reference, ...) while the block stays
        within `budget` characters of JSON; the first level always. Definitions past the
        last level kept are left open (`{}`), so every `$ref` still resolves.

        Result schemas admit any object whatever they document, so leaving a definition
        open changes no validation outcome; it only shortens the tools/list entry.
        """
        kept: dict[tuple[str, str], Any] = {}
        level = set(refs)
        used = 0
        while level:
            cost = 0
            after: set[tuple[str, str]] = set()
            for key in level:
                _, inner = self._definition(key, "outline")
                cost += self._size(key, "outline")
                after |= inner
            after -= kept.keys() | level
            stubs = sum(len(self._names[key]) + 6 for key in after)  # "name":{},
            if kept and used + cost + stubs > budget:
                break
            for key in level:
                kept[key] = self._definition(key, "outline")[0]
            used += cost
            level = after
        out = {self._names[key]: body for key, body in kept.items()}
        out.update((self._names[key], {}) for key in level)
        return dict(sorted(out.items()))

    def resolved(self, schema: Any, uri: str, pointer: str) -> Target:
        """Follow `$ref`s from a schema to the schema object they denote."""
        return self.resolver.deref(uri, schema, pointer)

    # -- internals ---------------------------------------------------------

    def _name_for(self, key: tuple[str, str]) -> str:
        name = self._names.get(key)
        if name is None:
            base = name = _def_name_base(key[1], key[0], self.resolver.root_uri)
            n = 2
            while name in self._taken:
                name = f"{base}_{n}"
                n += 1
            self._taken.add(name)
            self._names[key] = name
        return name

    def _size(self, key: tuple[str, str], direction: Direction) -> int:
        """Compact JSON size of a converted definition as a `$defs` entry, measured once per spec."""
        cache_key = (key[0], key[1], direction)
        size = self._sizes.get(cache_key)
        if size is None:
            size = self._sizes[cache_key] = json_size(self._definition(key, direction)[0]) + len(self._names[key]) + 4
        return size

    def description(self, text: str) -> str | None:
        """A description inside a schema, trimmed to `description_max_chars` (None: leave it out)."""
        limit = self.description_max_chars
        if limit is None or (len(text) <= limit and text.strip()):
            return text
        if text not in self._descriptions:  # (large APIs repeat their long descriptions)
            self._descriptions[text] = trim_text(text, limit) if limit and text.strip() else None
        return self._descriptions[text]

    def _definition(self, key: tuple[str, str], direction: Direction) -> tuple[Any, frozenset[tuple[str, str]]]:
        cache_key = (key[0], key[1], direction)
        cached = self._defs.get(cache_key)
        if cached is not None:
            return cached
        target = Target(key[0], key[1], self.resolver.at(key[0], key[1]))
        refs: set[tuple[str, str]] = set()
        self._in_progress.add(cache_key)
        try:
            body = self._convert(target.value, key[0], key[1], direction, refs)
        finally:
            self._in_progress.discard(cache_key)
        result = (body, frozenset(refs))
        self._defs[cache_key] = result
        return result

    def _is_leaf(self, schema: Any) -> bool:
        """A schema with no sub-schemas or references: cheaper inlined than referenced."""
        if not isinstance(schema, dict):
            return True
        if "$ref" in schema:
            return False
        return not any(k in schema for k in (*_SCHEMA_VALUED, *_SCHEMA_MAPS, *_SCHEMA_LISTS))

    def _ref(self, schema: dict[str, Any], uri: str, pointer: str, direction: Direction,
             refs: set[tuple[str, str]]) -> Any:  # fmt: skip
        target = self.resolver.resolve(uri, schema["$ref"], pointer)
        if isinstance(target.value, dict) and "$ref" in target.value:
            # An alias of another schema: make sure the chain ends somewhere. A loop of
            # aliases (A -> B -> A) would be a schema no validator can evaluate.
            self.resolver.deref(target.uri, target.value, target.pointer)
        if self._is_leaf(target.value):
            out = self._convert(target.value, target.uri, target.pointer, direction, refs)
        else:
            refs.add(target.key)
            out = {"$ref": "#/$defs/" + self._name_for(target.key)}
        # 3.0 ignores $ref siblings; 3.1 (and 2020-12) applies them. Keep only a description either way.
        if isinstance(schema.get("description"), str) and isinstance(out, dict) and direction != "outline":
            text = self.description(schema["description"])
            out = {**out, "description": text} if "$ref" in out and text is not None else out
        return out

    def _convert(self, schema: Any, uri: str, pointer: str, direction: Direction,
                 refs: set[tuple[str, str]]) -> Any:  # fmt: skip
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, dict):
            self.issues.append(Issue(display_name(uri), pointer, "schema is not an object; treated as {}"))
            return {}
        if "$ref" in schema:
            ref_out = self._ref(schema, uri, pointer, direction, refs)
            # 3.0 says $ref siblings are ignored, but `nullable: true` next to a $ref is
            # common and clearly meant: honour it (3.1 specs write `anyOf` with null instead).
            if schema.get("nullable") is True or schema.get("x-nullable") is True:
                ref_out = _or_null(ref_out)
            return ref_out

        out: dict[str, Any] = {}
        open_up = False  # a patternProperties entry was left out
        for key, value in schema.items():
            if key in _PLAIN:
                clean = _plain_value(key, value)
                if clean is _INVALID:
                    self.issues.append(
                        Issue(display_name(uri), pointer_join(pointer, key), f"invalid {key!r} value ignored")
                    )
                elif key == "pattern" and not portable_pattern(clean):
                    # Kept, the pattern would make the whole tool list invalid for Python clients
                    # (and some JavaScript ones); dropped, the argument is checked a little less.
                    message = "pattern is not a portable (ECMA-262 and Python) regex: left out"
                    self.issues.append(Issue(display_name(uri), pointer_join(pointer, key), message))
                elif key == "description":
                    text = self.description(clean)
                    if text is not None:
                        out[key] = text
                else:
                    out[key] = clean
            elif key == "items" and isinstance(value, list):
                # Draft 4-7 tuple form: converted to prefixItems in _fix_openapi_isms.
                out[key] = [
                    self._convert(sub, uri, pointer_join(pointer, key, i), direction, refs)
                    for i, sub in enumerate(value)
                ]
            elif key in _SCHEMA_VALUED:
                out[key] = self._convert(value, uri, pointer_join(pointer, key), direction, refs)
            elif key == "patternProperties" and isinstance(value, dict):
                out[key] = {
                    name: self._convert(sub, uri, pointer_join(pointer, key, name), direction, refs)
                    for name, sub in value.items()
                    if isinstance(name, str) and portable_pattern(name)
                }
                if len(out[key]) < len(value):
                    self.issues.append(Issue(display_name(uri), pointer_join(pointer, key),
                                             "patternProperties with a non-portable regex: left out"))  # fmt: skip
                    open_up = True
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {
                    name: self._convert(sub, uri, pointer_join(pointer, key, name), direction, refs)
                    for name, sub in value.items()
                }
            elif key in _SCHEMA_LISTS and isinstance(value, list) and value:
                # (An empty allOf/anyOf/oneOf/prefixItems is invalid in 2020-12: dropped.)
                out[key] = [
                    self._convert(sub, uri, pointer_join(pointer, key, i), direction, refs)
                    for i, sub in enumerate(value)
                ]
            elif key == "example" and "examples" not in schema:
                out["examples"] = [value]
            elif key == "$defs" and isinstance(value, dict):
                # 3.1 schema-local definitions: convert in place under their own names.
                out[key] = {
                    name: self._convert(sub, uri, pointer_join(pointer, key, name), direction, refs)
                    for name, sub in value.items()
                }
        if open_up:
            # Names the dropped regex matched must stay acceptable: loosen rather than reject.
            out.pop("additionalProperties", None)
            out.pop("unevaluatedProperties", None)
        self._fix_openapi_isms(schema, out)
        if direction == "in":
            _argument_format(out)
        self._drop_direction_props(schema, out, uri, pointer, direction)
        if direction == "outline":
            for key in _OUTLINE_DROPS.intersection(out):
                del out[key]
        return out

    def _fix_openapi_isms(self, schema: dict[str, Any], out: dict[str, Any]) -> None:
        # items: array form (draft 4-7 tuple validation) -> prefixItems; additionalItems
        # then constrains the rest, which 2020-12 spells `items`. Without a tuple,
        # additionalItems means nothing (and 2020-12 no longer has it).
        additional = out.pop("additionalItems", None)
        if isinstance(out.get("items"), list):
            out["prefixItems"] = out.pop("items")
            if not out["prefixItems"]:
                out.pop("prefixItems")
            if additional is not None:
                out["items"] = additional
        if out.get("type") == "file" or (out.get("type") == "object" and out.get("format") == "file"):
            # Swagger 2.0's file, and AutoRest's spelling of a stream (Azure specs): binary content.
            out["type"] = "string"
            out["format"] = "binary"
        # 3.0 boolean exclusive bounds -> 2020-12 numeric bounds.
        for excl, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            flag = schema.get(excl)
            if isinstance(flag, bool):
                if flag and bound in out:
                    out[excl] = out.pop(bound)
            elif isinstance(flag, int | float):
                out[excl] = flag
        if out.get("format") in ("binary", "byte") and out.get("type") in ("string", None):
            out["type"] = "string"
            out["contentEncoding"] = "base64"
        t = out.get("type")
        if isinstance(t, list):
            t = out["type"] = list(dict.fromkeys(t))  # 2020-12 wants unique type names
        if (isinstance(t, str) and t not in _JSON_TYPES) or (isinstance(t, list) and not set(t) <= _JSON_TYPES):
            out.pop("type")
        # 3.0 nullable -> a "null" type (and a null enum member).
        if schema.get("nullable") is True or schema.get("x-nullable") is True:
            if any(k in out for k in _NULL_BLOCKERS):
                # Sub-schemas (allOf members, a $ref, a const) would still reject null even
                # with a "null" type here: accept null beside the whole schema instead.
                _wrap_or_null(out)
            else:
                t = out.get("type")
                if isinstance(t, str):
                    out["type"] = [t, "null"]
                elif isinstance(t, list) and "null" not in t:
                    out["type"] = [*t, "null"]
                if isinstance(out.get("enum"), list) and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
        # A discriminator means exactly one branch is meant, but sibling branches that
        # don't forbid extra properties all match: oneOf would reject valid values.
        if "discriminator" in schema and "oneOf" in out:
            out["anyOf"] = out.pop("oneOf")
        if isinstance(out.get("required"), list) and not out["required"]:
            out.pop("required")

    def _drop_direction_props(self, schema: dict[str, Any], out: dict[str, Any], uri: str, pointer: str,
                              direction: Direction) -> None:  # fmt: skip
        props = schema.get("properties")
        if not isinstance(props, dict):
            return
        hide = "readOnly" if direction == "in" else "writeOnly"  # out, outline: writeOnly
        dropped = [name for name, sub in props.items() if self._flag(sub, uri, pointer, hide)]
        if not dropped:
            return
        for name in dropped:
            out["properties"].pop(name, None)
        if isinstance(out.get("required"), list):
            out["required"] = [r for r in out["required"] if r not in dropped]
            if not out["required"]:
                out.pop("required")

    def _flag(self, sub: Any, uri: str, pointer: str, flag: str) -> bool:
        if not isinstance(sub, dict):
            return False
        if sub.get(flag) is True:
            return True
        if "$ref" in sub:
            try:
                target = self.resolver.resolve(uri, sub["$ref"], pointer)
            except Exception:  # reported where the ref is converted
                return False
            return isinstance(target.value, dict) and target.value.get(flag) is True
        return False
