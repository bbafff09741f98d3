"""openapi-core's response validation errors -> findings that never quote the response.

The validator's own messages quote the values they reject (`'4111-1111' is not of type
'integer'`, or the whole body when it is not JSON), and responses may carry personal data or
secrets. A finding names only what the spec names or what is not data: property names the spec
declares (other keys are `*`), array positions (as `[*]`, so one problem in many items is one
finding), JSON types, status codes, media types, and the spec's own constraint values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaError
from openapi_core.casting.schemas.exceptions import CastError
from openapi_core.deserializing.media_types.exceptions import MediaTypeDeserializeError
from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseFinderError
from openapi_core.validation.response.exceptions import (
    DataValidationError,
    HeaderValidationError,
    MissingData,
    MissingRequiredHeader,
)
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

from mcp_gateway.exceptions import causes
from mcp_gateway.store.drift import Finding

MAX_SPEC_VALUE_CHARS = 80
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}$")
# Schema keywords that step into one property or item of the instance.
_NAMED_PROPERTY = "properties"
_PROPERTY_BY_PATTERN = "patternProperties"
_OTHER_PROPERTY = ("additionalProperties", "unevaluatedProperties")
_ITEM = ("items", "additionalItems", "unevaluatedItems", "contains", "prefixItems")
_BOUNDS = (
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
)  # fmt: skip


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _spec_value(value: Any) -> str | None:
    """A constraint from the spec, as JSON, when it is short enough to be worth quoting."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_SPEC_VALUE_CHARS else None


def _named(key: Any) -> str:
    text = str(key)
    return f".{text}" if _IDENTIFIER.match(text) else f"[{json.dumps(text)}]"


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, without parameters; `unrecognised` when it is not one."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media if _MEDIA_TYPE.match(media) else ("none" if not media else "unrecognised")


def json_path(error: SchemaError, name: Any = None) -> str:
    """Where in the body `error` is, as a JSON path: walks the instance path alongside the schema
    path, so that a key is shown only where a `properties` entry of the spec names it. `name`:
    a property of the failing object to append (a missing required one)."""
    instance = list(error.absolute_path)
    keywords = list(error.relative_schema_path)[:-1]  # the last one is the failing keyword
    out, i, k = "$", 0, 0
    while k < len(keywords) and i < len(instance):
        word = keywords[k]
        if word == _NAMED_PROPERTY and k + 1 < len(keywords):
            out, i, k = out + _named(instance[i]), i + 1, k + 2
        elif word == _PROPERTY_BY_PATTERN:
            out, i, k = out + ".*", i + 1, k + 2
        elif word in _OTHER_PROPERTY:
            out, i, k = out + ".*", i + 1, k + 1
        elif word in _ITEM:
            indexed = k + 1 < len(keywords) and isinstance(keywords[k + 1], int)  # tuple-form items
            out, i, k = out + "[*]", i + 1, k + (2 if indexed else 1)
        else:  # allOf/anyOf/oneOf and their index, not, if/then/else, $ref: no step into the instance
            k += 1
    for rest in instance[i:]:  # not accounted for by the schema path: never shown
        out += "[*]" if isinstance(rest, int) else ".*"
    return out + (_named(name) if name is not None else "")


def _matches_any(patterns: list[str], key: str) -> bool:
    for pattern in patterns:
        try:
            if re.search(pattern, key):
                return True
        except re.error:  # an ECMA-only pattern: count the key as matched rather than guess
            return True
    return False


def _keyword_message(error: SchemaError) -> str:
    keyword, expected = str(error.validator), error.validator_value
    if keyword == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return f"expected {wanted}, got {_json_type(error.instance)}"
    if keyword == "enum":
        allowed = _spec_value(expected)
        return f"not one of the values the spec allows{': ' + allowed if allowed else ''}"
    if keyword == "const":
        return "not the value the spec requires"
    if keyword == "format":
        return f"not a valid {expected}"
    if keyword == "pattern":
        return f"does not match the pattern {_spec_value(expected) or '(long pattern)'}"
    if keyword in _BOUNDS:
        return f"violates {keyword}: {_spec_value(expected)}"
    if keyword == "anyOf":
        return "matches none of the anyOf alternatives"
    if keyword == "oneOf":
        return "does not match exactly one of the oneOf alternatives"
    if keyword == "not":
        return "matches a schema that `not` excludes"
    if keyword in _OTHER_PROPERTY and expected is False and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        declared, patterns = schema.get("properties") or {}, list(schema.get("patternProperties") or {})
        extra = sum(1 for key in error.instance if key not in declared and not _matches_any(patterns, key))
        return f"{extra} propert{'y' if extra == 1 else 'ies'} the spec does not declare ({keyword}: false)"
    return f"fails the spec's {keyword!r} rule"


def schema_findings(error: SchemaError) -> Iterator[Finding]:
    """The findings of one JSON Schema error in the body."""
    if error.validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value or ():
            if name not in error.instance:
                yield Finding("body", json_path(error, name), "required property missing")
        return
    yield Finding("body", json_path(error), _keyword_message(error))


def _schema_errors(exc: BaseException) -> list[SchemaError]:
    for cause in causes(exc):
        if isinstance(cause, InvalidSchemaValue):
            return [e for e in cause.schema_errors if isinstance(e, SchemaError)]
    return []


def _data_findings(exc: DataValidationError, content_type: str) -> Iterator[Finding]:
    if isinstance(exc, MissingData):
        yield Finding("body", "", "no body, but the spec declares content for this status")
        return
    for cause in causes(exc):
        if isinstance(cause, MediaTypeNotFound):
            declared = ", ".join(sorted(str(m) for m in cause.availableMimetypes))
            yield Finding("content_type", "", f"{media_type(content_type)} is not declared (declared: {declared})")
            return
        if isinstance(cause, MediaTypeDeserializeError):
            yield Finding("body", "", f"the body is not valid {media_type(content_type)}")
            return
    errors = _schema_errors(exc)
    if not errors:
        yield Finding("body", "", "the body does not match its schema")
    for error in errors:
        yield from schema_findings(error)


def _header_finding(exc: HeaderValidationError) -> Finding:
    name = str(exc.name)
    if isinstance(exc, MissingRequiredHeader):
        return Finding("header", name, "required header missing")
    for cause in causes(exc):
        if isinstance(cause, CastError):
            return Finding("header", name, f"cannot be read as {cause.type}")
    errors = _schema_errors(exc)
    return Finding("header", name, _keyword_message(errors[0]) if errors else "does not match its schema")


def findings(error: Exception, status: int, content_type: str) -> list[Finding]:
    """What one error of openapi-core's response validator says, without response values."""
    if isinstance(error, ResponseFinderError):
        return [Finding("status", "", f"status {status} is not declared for this operation")]
    if isinstance(error, DataValidationError):
        return list(_data_findings(error, content_type))
    if isinstance(error, HeaderValidationError):
        return [_header_finding(error)]
    if isinstance(error, PathError):
        return [Finding("spec", "", "the operation is no longer in the spec")]
    return [Finding("body", "", f"cannot be checked ({type(error).__name__})")]
