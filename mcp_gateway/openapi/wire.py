"""What a parameter's value must be to reach the wire, said in its argument schema.

The request builder (upstream/request.py) refuses values it cannot send, and sends nothing
for empty or null ones; saying so in the tool schema lets an agent learn it from the schema,
and validation name the field, instead of a refused call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Header parameters the gateway sets itself: content negotiation, credentials, and the
# message framing and connection headers the HTTP client owns (a Content-Length from an
# argument would contradict the body it frames).
GATEWAY_HEADERS = frozenset(
    ("accept", "content-type", "authorization", "content-length", "transfer-encoding", "host", "connection",
     "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-authorization", "proxy-connection")
)  # fmt: skip

# A header value as the request builder sends it: ASCII, no control characters but tab.
HEADER_TEXT = r"^[\t -~]*$"
# One that is not empty once the builder has trimmed its surrounding blanks (a field value has none,
# RFC 9110 5.5): a required header's. HTTP allows an empty value, but Prism, and servers that test
# a header's value for truth, read it as no header: the call would miss a header the spec requires.
HEADER_VALUE = r"^[\t ]*[!-~][\t -~]*$"


def wire_constraints(schema: dict[str, Any], param: dict[str, Any], raw: set[str] | None) -> dict[str, Any]:
    """What a parameter's value must be to reach the wire, said in its argument schema, so that
    an agent learns it from the schema instead of from a refused call:

    * a query string is not empty unless `allowEmptyValue` says so (its default is false);
    * a header value is ASCII without control characters (the request builder refuses others),
      and a required header's is not blank (`HEADER_VALUE`);
    * a required parameter that is an array or object sends something: not empty, no array of
      nulls nor object of null members (RFC 6570 skips those), so the call would be refused
      (`some_items`, `some_properties`);
    * a required parameter is not null: null sends nothing either (`not_null`).

    Each keyword only constrains values of its own type, so it is added beside a `$ref` or a
    union as well; `raw` (the OpenAPI schema's types) keeps the rest of schemas uncluttered.
    """
    location = param["in"]
    required = location == "path" or bool(param.get("required"))
    known = set(schema["type"]) if isinstance(schema.get("type"), list) else (
        {schema["type"]} if isinstance(schema.get("type"), str) else raw
    )  # fmt: skip

    def may_be(kind: str) -> bool:
        return known is None or kind in known

    if location == "query" and may_be("string") and not param.get("allowEmptyValue") and not schema.get("minLength"):
        schema["minLength"] = 1
    if location == "header":
        schema = _header_text(schema, may_be, HEADER_VALUE if required else HEADER_TEXT)
    if required:
        deep = param.get("style") == "deepObject"
        schema = not_null(some_properties(some_items(schema, raw), raw, deep=deep), raw)
    return schema


_NULL = {"type": "null"}
# A deepObject member that sends nothing: null, an array of nulls (or none), an empty object.
# (An object of empty objects is not told apart, which would take a recursive definition: a
# required deepObject holding only such members is refused by the request builder, unsaid.)
_SILENT_MEMBER = {"anyOf": [_NULL, {"type": "array", "items": _NULL}, {"type": "object", "maxProperties": 0}]}
_JSON_KINDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("null", type(None)), ("boolean", bool), ("string", str), ("array", list), ("object", dict),
)  # fmt: skip


def _header_text(schema: dict[str, Any], may_be: Callable[[str], bool], text: str) -> dict[str, Any]:
    """A header parameter's schema: its strings, and the items, keys and values that end up in the
    header line, are `text` (the request builder refuses other characters; nested arrays and
    objects go as JSON text, escaped to ASCII). Copies: nested schemas are shared."""
    ascii_text = {"pattern": HEADER_TEXT}

    def ascii_only(node: Any, pattern: dict[str, str] = ascii_text) -> Any:
        if node is True:
            return pattern
        kind = node.get("type") if isinstance(node, dict) else None
        string = kind is None or kind == "string" or (isinstance(kind, list) and "string" in kind)
        return {"allOf": [node, pattern]} if isinstance(node, dict) and string else node

    if may_be("string"):
        schema = {"allOf": [schema, {"pattern": text}]} if "pattern" in schema else {**schema, "pattern": text}
    if may_be("array"):
        # (The items of a required one are not blank either: the header would be if all were.)
        schema = {**schema, "items": ascii_only(schema.get("items", True), {"pattern": text})}
    if may_be("object"):
        extra = schema.get("additionalProperties", True)
        schema = {**schema, "propertyNames": ascii_text, "additionalProperties": ascii_only(extra)}
        if isinstance(schema.get("properties"), dict):
            schema["properties"] = {k: ascii_only(v) for k, v in schema["properties"].items()}
    return schema


def path_segment(schema: dict[str, Any], style: str, whole: bool, ref_types: set[str] | None) -> dict[str, Any]:
    """A path parameter's schema, for what the request builder refuses: an empty serialisation (so
    array items are not empty either) and, when the value fills a whole segment (`/files/{name}/`),
    a "." or ".." one, which URL normalisation removes: the request would go elsewhere."""
    items = schema.get("items", True)
    if admits(schema, "array", ref_types) and admits(items, "string", None) and not _get(items, "minLength"):
        schema = {**schema, "items": {**items, "minLength": 1} if isinstance(items, dict) else {"minLength": 1}}
    if not whole or style == "matrix":  # (matrix: `;name=.` is no dot segment)
        return schema
    dots = ["."] if style == "label" else [".", ".."]  # (label: "." + "." is "..")
    forbidden = [*(dots if admits(schema, "string", ref_types) else ()),
                 *([[dot] for dot in dots] if admits(schema, "array", ref_types) else ())]  # fmt: skip
    return _forbid(schema, {"enum": forbidden}) if forbidden else schema


def _get(schema: Any, key: str) -> Any:
    return schema.get(key) if isinstance(schema, dict) else None


def some_items(schema: dict[str, Any], ref_types: set[str] | None) -> dict[str, Any]:
    """A schema for a value that must send something, if it may be an array: RFC 6570 skips null
    items, so an array sends nothing when it is empty or holds only nulls. At least one item,
    none null. `ref_types`: as for `not_null`."""
    if not admits(schema, "array", ref_types):
        return schema
    out = schema if schema.get("minItems") else {**schema, "minItems": 1}
    items = out.get("items", True)
    if admits(items, "null", None):
        out = {**out, "items": not_null(items, None)}
    return out


def some_properties(schema: dict[str, Any], ref_types: set[str] | None, *, deep: bool = False) -> dict[str, Any]:
    """A schema for a value that must send something, if it may be an object: RFC 6570 skips null
    members, so an object sends nothing when it is empty or its members are all null (`deep`, a
    deepObject's: or empty arrays and objects). Not empty, and where members may be null, not
    all null (`ref_types`: as for `not_null`)."""
    if not admits(schema, "object", ref_types):
        return schema
    if deep or _members_may_be_null(schema):
        return _forbid(schema, {"type": "object", "additionalProperties": _SILENT_MEMBER if deep else _NULL})
    return schema if schema.get("minProperties") else {**schema, "minProperties": 1}


def not_null(schema: Any, ref_types: set[str] | None) -> Any:
    """`schema` without null, for a value the operation requires: null sends nothing (a parameter,
    a request body, a form or multipart field), so the call would be refused or miss a value.

    A nullable type loses "null" (and its enum the null member); a schema that may otherwise
    admit null gets `not: {type: null}`. `ref_types` are the types of what a top-level `$ref`
    points to (None: unknown), so that a reference to a non-null schema stays uncluttered.
    """
    if not admits(schema, "null", ref_types):
        return schema
    if not isinstance(schema, dict):
        return {"not": _NULL}
    kinds = schema.get("type")
    if isinstance(kinds, list) and len(kinds) > 1:
        rest = [t for t in kinds if t != "null"]
        out = {**schema, "type": rest[0] if len(rest) == 1 else rest}
        if isinstance(out.get("enum"), list):
            out["enum"] = [v for v in out["enum"] if v is not None]
        return out
    return _forbid(schema, _NULL)


def admits(schema: Any, kind: str, ref_types: set[str] | None) -> bool:
    """Whether `schema` may admit a value of JSON type `kind` ("null", "array", "object"...): True
    when it cannot be told cheaply. `ref_types`: the types a top-level `$ref` points to."""
    if not isinstance(schema, dict):
        return schema is not False
    kinds = schema.get("type")
    if kinds is not None:
        return kinds == kind or (isinstance(kinds, list) and kind in kinds)
    for key in ("enum", "const"):
        if key in schema:
            values = schema[key] if key == "enum" and isinstance(schema[key], list) else [schema[key]]
            return any(_json_kind(v) == kind for v in values)
    for key, combine in (("anyOf", any), ("oneOf", any), ("allOf", all)):
        if isinstance(schema.get(key), list):
            return combine(admits(member, kind, None) for member in schema[key])
    if "$ref" in schema:
        return ref_types is None or kind in ref_types
    return True


def _forbid(schema: dict[str, Any], what: dict[str, Any]) -> dict[str, Any]:
    """`schema` and `not: what`, in its one `not` (null beside silent objects: in one type list)."""
    current = schema.get("not")
    if current is None or current == what:
        return {**schema, "not": what}
    for one, other in ((current, what), (what, current)):
        silent_objects = isinstance(other, dict) and set(other) == {"type", "additionalProperties"}
        if one == _NULL and silent_objects and other["type"] == "object":
            return {**schema, "not": {**other, "type": ["object", "null"]}}
    if isinstance(current, dict) and list(current) == ["anyOf"] and isinstance(current["anyOf"], list):
        return {**schema, "not": {"anyOf": [*current["anyOf"], what]}}
    return {**schema, "not": {"anyOf": [current, what]}}


def _members_may_be_null(schema: dict[str, Any]) -> bool:
    """Whether an object valid for `schema` may have null members (True when it cannot be told cheaply)."""
    if any(key in schema for key in ("$ref", "allOf", "anyOf", "oneOf", "if", "unevaluatedProperties")):
        return True
    members = [*(schema.get("properties") or {}).values(), *(schema.get("patternProperties") or {}).values(),
               schema.get("additionalProperties", True)]  # fmt: skip
    return any(admits(member, "null", None) for member in members)


def _json_kind(value: Any) -> str:
    return next((name for name, python in _JSON_KINDS if isinstance(value, python)), "number")
