"""Operations -> tool definitions: names, descriptions, schemas, annotations, call plans.

Rules a reader of the generated tools should know (also in the README):
- Arguments: path, query, header and cookie parameters by (sanitised) name. An
  object request body (JSON, form or multipart) is spread into top-level
  arguments; any other body is one `body` argument, but for a multipart body
  that is one string (a file), sent as one file part named and argument `file`.
- Name clashes: parameters are placed first (path, query, header, cookie); a
  later parameter with the same name gets `_<location>` appended; a body
  property that clashes with a parameter gets a `body_` prefix.
- Body media type, when an operation offers several: JSON (`application/json`,
  then `+json`), then form-urlencoded, then multipart, then text, then binary.
- A path template variable with no declared parameter becomes a required string
  argument (and an issue), so the tool stays callable.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mcp_gateway.config import HTTP_METHODS, ApiConfig, ToolFilter
from mcp_gateway.definitions import (
    BINARY_VALUE,
    BodyPlan,
    EncodingPlan,
    Issue,
    OperationPlan,
    ParamPlan,
    SecurityScheme,
    SpecError,
    ToolDefinition,
)
from mcp_gateway.openapi import naming, swagger2
from mcp_gateway.openapi.compact import compacted
from mcp_gateway.openapi.load import LoadedSpec, display_name, load_spec, pointer_join
from mcp_gateway.openapi.schema import SchemaConverter, json_size, trim_text
from mcp_gateway.openapi.security import SpecSecurity, credential_issues
from mcp_gateway.openapi.servers import one_server_url, server_url
from mcp_gateway.openapi.validation import LazyValidator
from mcp_gateway.openapi.wire import GATEWAY_HEADERS, admits, not_null, path_segment, some_items, wire_constraints

_LOCATIONS = ("path", "query", "header", "cookie")
_DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
_BODY_RANK = {"json": 0, "form": 1, "multipart": 2, "text": 3, "binary": 4}
_PATH_VARS = re.compile(r"\{([^{}]+)\}")
# Formats of binary content (`file`: AutoRest's spelling of a stream, `{type: object, format: file}`).
_FILE_FORMATS = ("binary", "byte", "file")
_BINARY_HINT = "Base64-encoded content, or a data: URL (data:<mime>;base64,<data>)."


@dataclass
class IngestResult:
    """The tools of one API and everything worth telling about how they were made."""

    api: str
    source: str
    title: str
    version: str
    spec_version: str
    base_url: str | None
    tools: list[ToolDefinition] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    skipped_by_filter: int = 0
    # The spec's securitySchemes; credentials are bound to them by name (config `credentials`).
    security_schemes: dict[str, SecurityScheme] = field(default_factory=dict)


def spec_version(data: Mapping[str, Any], source: str) -> str:
    """`"3.1"`, `"3.0"` or `"2.0"`; anything else is a SpecError at `/openapi`."""
    if "swagger" in data:
        if str(data["swagger"]).strip() == "2.0":
            return "2.0"
        raise SpecError(source, "/swagger", f"unsupported Swagger version {data['swagger']!r} (2.0 is supported)")
    version = data.get("openapi")
    if version is None:
        raise SpecError(source, "", "not an OpenAPI document: no 'openapi' or 'swagger' field")
    text = str(version).strip()
    for major_minor in ("3.0", "3.1"):
        if text == major_minor or text.startswith(major_minor + "."):
            return major_minor
    raise SpecError(source, "/openapi", f"unsupported OpenAPI version {text!r} (3.0.x, 3.1.x and Swagger 2.0 are)")


def media_kind(media_type: str, schema: Any = None) -> str:
    """Classify a request media type as json / form / multipart / text / binary."""
    m = media_type.split(";", 1)[0].strip().lower()
    if m == "application/json" or m.endswith("+json") or m.endswith("/json"):
        return "json"
    if m == "application/x-www-form-urlencoded":
        return "form"
    if m.startswith("multipart/"):
        return "multipart"
    fmt = schema.get("format") if isinstance(schema, dict) else None
    if m.startswith("text/") or m.endswith("/xml") or m.endswith("+xml"):
        # `format: binary` text is any octets (a certificate file...): taken as base64 like other files.
        return "binary" if fmt in ("binary", "file") else "text"
    if m in ("*/*", "application/*") and fmt not in _FILE_FORMATS:
        return "json"
    return "binary"


def _file_value(schema: Any, top: bool = True) -> Any:
    """The argument schema of a value sent as a file (a multipart file part, or an array of them;
    a binary body): what the request builder decodes, base64 or a `data:` URL, is its pattern."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if admits(out, "string", None):
        out["contentEncoding"] = "base64"  # (an annotation: the pattern is what validators enforce)
        if "pattern" in out:  # the spec's own, on the base64 text: both apply
            out["allOf"] = [*out.get("allOf", ()), {"pattern": BINARY_VALUE}]
        else:
            out["pattern"] = BINARY_VALUE
    if isinstance(out.get("items"), dict) and admits(out, "array", None):
        out["items"] = _file_value(out["items"], top=False)
    if top:
        out["description"] = (out.get("description", "") + " " + _BINARY_HINT).strip()
    return out


def _objects_only(schema: Any) -> Any:
    """`schema`, admitting objects only (a form or multipart body that is one argument)."""
    if not isinstance(schema, dict):
        return {"type": "object"}
    kinds = schema.get("type")
    if kinds == "object":
        return schema
    return {**schema, "type": "object"} if kinds is None or isinstance(kinds, list) else schema


def _matches(value: str | None, globs: list[str]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, g) for g in globs)


def _selected(f: ToolFilter, method: str, path: str, op_id: str | None, base_name: str, tags: list[str]) -> bool:
    if f.methods and method not in f.methods:
        return False
    if f.exclude_tags and set(tags) & set(f.exclude_tags):
        return False
    if f.exclude_operations and (_matches(op_id, f.exclude_operations) or _matches(base_name, f.exclude_operations)):
        return False
    if f.exclude_paths and _matches(path, f.exclude_paths):
        return False
    if f.include_tags and not set(tags) & set(f.include_tags):
        return False
    if f.include_operations and not (
        _matches(op_id, f.include_operations) or _matches(base_name, f.include_operations)
    ):
        return False
    return not (f.include_paths and not _matches(path, f.include_paths))


class _ToolBuilder:
    """Builds the tools of one spec; one instance per ingest."""

    def __init__(self, spec: LoadedSpec, data: dict[str, Any], version: str, api: ApiConfig) -> None:
        self.spec = spec
        self.data = data
        self.api = api
        self.issues: list[Issue] = []
        # (uri, pointer) of a success response -> what `output()` makes of it.
        self._outputs: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None, str | None]] = {}
        # (uri, pointer, name, location) of a parameter -> its argument schema, content type and $defs keys.
        self._params: dict[tuple[str, str, str, str], tuple[Any, str | None, frozenset[Any]]] = {}
        self.schemas = SchemaConverter(spec.resolver, "3.1" if version == "3.1" else "3.0", self.issues,
                                       description_max_chars=api.schema_description_max_chars)  # fmt: skip
        self.security = SpecSecurity(data, spec.source, self._deref_value, self.issues)
        # Operation and path-item `servers` apply unless the operator set the API's base URL.
        self.root_base = None if api.base_url else server_url(data, spec.uri)

    # -- servers -----------------------------------------------------------

    def own_server(self, op: dict[str, Any], path_item: dict[str, Any]) -> str | None:
        """The operation's (else its path item's) first usable server, when it differs from the API's."""
        if self.api.base_url:
            return None
        for servers in (op.get("servers"), path_item.get("servers")):
            if isinstance(servers, list) and servers:
                for server in servers:
                    if isinstance(server, dict) and (url := one_server_url(server, self.spec.uri)):
                        return None if url == self.root_base else url
                return None
        return None

    def _deref_value(self, node: Any, pointer: str) -> Any:
        return self.deref(node, self.spec.uri, pointer)[0]

    def deref(self, node: Any, uri: str, pointer: str) -> tuple[Any, str, str]:
        """Follow `$ref`s from `node`, found at `uri#pointer`; returns the value and where it is.

        `uri` matters: a path item referenced from another file has its own relative refs.
        """
        target = self.spec.resolver.deref(uri, node, pointer)
        return target.value, target.uri, target.pointer

    # -- parameters --------------------------------------------------------

    def parameters(self, path_item: dict[str, Any], op: dict[str, Any], item_uri: str, item_ptr: str,
                   op_ptr: str) -> list[Any]:  # fmt: skip
        merged: dict[tuple[str, str], tuple[dict[str, Any], str, str]] = {}
        for params, ptr in ((path_item.get("parameters"), item_ptr), (op.get("parameters"), op_ptr)):
            for i, raw in enumerate(params if isinstance(params, list) else []):
                where = pointer_join(ptr, "parameters", i)
                param, uri, p_ptr = self.deref(raw, item_uri, where)
                if not isinstance(param, dict) or "name" not in param or param.get("in") not in _LOCATIONS:
                    raise SpecError(
                        display_name(item_uri), where, "parameter needs a 'name' and 'in' (path/query/header/cookie)"
                    )
                merged[(str(param["name"]), param["in"])] = (param, uri, p_ptr)
        ordered = sorted(merged.values(), key=lambda t: _LOCATIONS.index(t[0]["in"]))
        return [p for p in ordered if not (p[0]["in"] == "header" and str(p[0]["name"]).lower() in GATEWAY_HEADERS)]

    def param_schema(self, param: dict[str, Any], uri: str, ptr: str, refs: set[Any]) -> tuple[Any, str | None]:
        """The argument schema and content type of a parameter; each shared one is made once."""
        key = (uri, ptr, str(param["name"]), str(param["in"]))
        cached = self._params.get(key)
        if cached is None:
            used: set[Any] = set()
            schema, content_type = self._param_schema(param, uri, ptr, used)
            cached = self._params[key] = (schema, content_type, frozenset(used))
        refs |= cached[2]
        return cached[0], cached[1]

    def _param_schema(self, param: dict[str, Any], uri: str, ptr: str, refs: set[Any]) -> tuple[Any, str | None]:
        content_type = None
        if "schema" in param:
            raw, raw_ptr = param["schema"], pointer_join(ptr, "schema")
        elif isinstance(param.get("content"), dict) and param["content"]:
            content_type, media = next(iter(param["content"].items()))
            raw = media.get("schema", {}) if isinstance(media, dict) else {}
            raw_ptr = pointer_join(ptr, "content", content_type, "schema")
        else:
            raw, raw_ptr = {}, ptr
        schema, used = self.schemas.convert(raw, uri, raw_ptr, "in")
        refs |= used
        # Boolean schemas (3.1): true admits anything, false nothing.
        schema = dict(schema) if isinstance(schema, dict) else ({} if schema is True else {"not": {}})
        if isinstance(param.get("description"), str) and "description" not in schema:
            text = self.schemas.description(param["description"])
            if text is not None:
                schema["description"] = text
        if "example" in param and "examples" not in schema:
            schema["examples"] = [param["example"]]
        if param.get("deprecated"):
            schema["deprecated"] = True
        types = schema.get("type")
        may_be_string = types is None or types == "string" or (isinstance(types, list) and "string" in types)
        if param["in"] == "path" and may_be_string and not schema.get("minLength"):
            # An empty value would change the path (`/pets//photos`). Also for untyped
            # parameters: minLength only constrains strings.
            schema["minLength"] = 1
        if content_type is None:
            schema = wire_constraints(schema, param, self._raw_types(raw, uri, raw_ptr))
        return schema, content_type

    def _raw_types(self, raw: Any, uri: str, ptr: str) -> set[str] | None:
        """The JSON types a parameter's OpenAPI schema admits (None: not said, or a composition)."""
        try:
            target = self.schemas.resolved(raw, uri, ptr).value
        except SpecError:
            return None
        if not isinstance(target, dict):
            return None
        kind = target.get("type")
        types = {kind} if isinstance(kind, str) else {str(t) for t in kind} if isinstance(kind, list) else None
        if types is not None and (target.get("nullable") is True or target.get("x-nullable") is True):
            types.add("null")
        return types

    # -- request body ------------------------------------------------------

    def choose_media(self, content: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        best = None
        for index, (media_type, media) in enumerate(content.items()):
            media = media if isinstance(media, dict) else {}
            kind = media_kind(media_type, media.get("schema"))
            exact_json = 0 if media_type.split(";")[0].strip().lower() == "application/json" else 1
            rank = (_BODY_RANK[kind], exact_json if kind == "json" else 0, index)
            if best is None or rank < best[0]:
                best = (rank, media_type, media, kind)
        assert best is not None
        _, media_type, media, kind = best
        if media_type.strip() in ("*/*", "application/*") and kind == "json":
            media_type = "application/json"
        return media_type, media, kind

    def body(
        self, op: dict[str, Any], item_uri: str, op_ptr: str, taken: set[str], props: dict[str, Any],
        required: list[str], refs: set[Any],
    ) -> BodyPlan | None:  # fmt: skip
        if "requestBody" not in op:
            return None
        body, uri, b_ptr = self.deref(op["requestBody"], item_uri, pointer_join(op_ptr, "requestBody"))
        if not isinstance(body, dict) or not isinstance(body.get("content"), dict) or not body["content"]:
            return None
        media_type, media, kind = self.choose_media(body["content"])
        m_ptr = pointer_join(b_ptr, "content", media_type)
        body_required = bool(body.get("required"))
        raw_schema = media.get("schema", {})
        s_ptr = pointer_join(m_ptr, "schema")
        encoding = {
            name: EncodingPlan(
                content_type=enc.get("contentType"),
                style=enc.get("style", "form"),
                explode=enc.get("explode", enc.get("style", "form") == "form"),
                allow_reserved=bool(enc.get("allowReserved", False)),
            )
            for name, enc in (media.get("encoding") or {}).items()
            if isinstance(enc, dict)
        }
        if kind in ("json", "form", "multipart"):
            target = self.schemas.resolved(raw_schema, uri, s_ptr)
            resolved = target.value
            if self._spreadable(resolved):
                return self._spread_body(media_type, kind, resolved, target.uri, target.pointer, body_required,
                                         encoding, taken, props, required, refs)  # fmt: skip
            one_value = isinstance(resolved, dict) and (
                not admits(resolved, "object", None) or resolved.get("format") == "file"
            )
            if kind == "multipart" and one_value:
                # One unnamed value (in the corpus always a file): sent as the one file part, named
                # "file" as most APIs name it. (The request builder needs names for parts.)
                part = resolved if resolved.get("format") in _FILE_FORMATS else {**resolved, "format": "binary"}
                single = {"type": "object", "properties": {"file": part}, "required": ["file"] if body_required else []}
                return self._spread_body(media_type, kind, single, target.uri, target.pointer, body_required,
                                         encoding, taken, props, required, refs)  # fmt: skip
        arg = naming.unique("body" if "body" not in taken else "request_body", taken)
        if kind in ("binary",):
            schema: Any = _file_value({"type": "string", "contentEncoding": "base64"})
        else:
            schema, used = self.schemas.convert(raw_schema, uri, s_ptr, "in")
            refs |= used
            if kind == "text" and schema == {}:
                schema = {"type": "string"}
            if kind in ("form", "multipart") and admits(schema, "object", None):
                # Name/value pairs: an object (or, for a form body the spec types as a string, its text).
                schema = _objects_only(schema)
        text = self.schemas.description(body["description"]) if isinstance(body.get("description"), str) else None
        if isinstance(schema, dict) and text is not None and "description" not in schema:
            schema = {**schema, "description": text}
        if body_required:
            # A null body is no body: the call would be refused (a JSON `null` is never what is meant).
            schema = not_null(schema, self._raw_types(raw_schema, uri, s_ptr))
            required.append(arg)
        props[arg] = schema
        return BodyPlan(media_type=media_type, kind=kind, required=body_required, arg=arg, encoding=encoding)  # type: ignore[arg-type]

    @staticmethod
    def _spreadable(schema: Any) -> bool:
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
            return False
        if any(k in schema for k in ("allOf", "anyOf", "oneOf", "not", "if", "patternProperties")):
            return False
        if schema.get("type", "object") != "object":
            return False
        # Open bodies (explicit additionalProperties) keep their shape as one argument.
        return schema.get("additionalProperties", False) is False

    def _spread_body(
        self, media_type: str, kind: str, schema: dict[str, Any], uri: str, ptr: str, body_required: bool,
        encoding: dict[str, EncodingPlan], taken: set[str], props: dict[str, Any], required: list[str],
        refs: set[Any],
    ) -> BodyPlan:  # fmt: skip
        fields: dict[str, str] = {}
        binary: set[str] = set()
        body_required_props = set(schema.get("required") or [])
        for name, sub in schema["properties"].items():
            sub_ptr = pointer_join(ptr, "properties", name)
            if self.schemas._flag(sub, uri, ptr, "readOnly"):
                continue
            converted, used = self.schemas.convert(sub, uri, sub_ptr, "in")
            refs |= used
            arg = naming.argument_name(str(name))
            if arg in taken:
                arg = naming.argument_name("body_" + arg)  # (re-shortened: stays within 64)
            arg = naming.unique(arg, taken)
            fields[arg] = name
            resolved = self.schemas.resolved(sub, uri, sub_ptr).value
            if kind == "multipart" and self._is_file(resolved, uri, sub_ptr):
                binary.add(name)
                converted = _file_value(converted)
            if name in body_required_props:
                required.append(arg)
                if kind != "json":
                    # Null, an empty array (or one of nulls) is no form field at all: the required
                    # property would be missing (in JSON they are values, when the schema admits them).
                    types = self._raw_types(sub, uri, sub_ptr)
                    if isinstance(converted, dict):
                        converted = some_items(converted, types)
                    converted = not_null(converted, types)
            props[arg] = converted
        return BodyPlan(media_type=media_type, kind=kind, required=body_required, fields=fields,  # type: ignore[arg-type]
                        encoding=encoding, binary_fields=frozenset(binary))  # fmt: skip

    def _is_file(self, resolved: Any, uri: str, ptr: str) -> bool:
        """A multipart property sent as file parts: binary content, or an array of it."""
        if not isinstance(resolved, dict):
            return False
        media = resolved.get("contentMediaType")
        if resolved.get("format") in _FILE_FORMATS:
            return True
        if isinstance(media, str) and not media.startswith("text/") and "json" not in media:
            return resolved.get("type") in (None, "string")  # OpenAPI 3.1's way of saying binary
        if resolved.get("type") == "array" and isinstance(resolved.get("items"), dict):
            items = self.schemas.resolved(resolved["items"], uri, pointer_join(ptr, "items")).value
            return isinstance(items, dict) and items.get("format") in ("binary", "byte")
        return False

    # -- responses ---------------------------------------------------------

    def output(self, op: dict[str, Any], item_uri: str,
               op_ptr: str) -> tuple[dict[str, Any] | None, str | None, str | None]:  # fmt: skip
        """The output schema, the result wrapper property name, and an Accept header."""
        responses = op.get("responses")
        if not isinstance(responses, dict):
            return None, None, None
        codes = sorted((str(c) for c in responses if str(c).startswith("2")), key=lambda c: (c.upper() == "2XX", c))
        for code in codes:
            raw = responses.get(code, responses.get(int(code)) if code.isdigit() else None)
            resp, uri, r_ptr = self.deref(raw, item_uri, pointer_join(op_ptr, "responses", code))
            content = resp.get("content") if isinstance(resp, dict) else None
            if not isinstance(content, dict) or not content:
                continue
            # Large APIs share response objects between many operations: each is read once.
            cached = self._outputs.get((uri, r_ptr))
            if cached is None:
                cached = self._outputs[(uri, r_ptr)] = self._response_output(content, uri, r_ptr)
            return cached
        return None, None, None

    def _response_output(self, content: dict[str, Any], uri: str,
                         r_ptr: str) -> tuple[dict[str, Any] | None, str | None, str | None]:  # fmt: skip
        """`output()` for the success response at `uri#r_ptr`, whose `content` is not empty."""
        json_types = [m for m in content if media_kind(m) == "json" and m.strip() not in ("*/*", "application/*")]
        if not json_types:
            return None, None, ", ".join(content)
        # Plain application/json first (as for request bodies), then the first +json type.
        exact = [m for m in json_types if m.split(";", 1)[0].strip().lower() == "application/json"]
        media_type = (exact or json_types)[0]
        media = content[media_type] if isinstance(content[media_type], dict) else {}
        if "schema" not in media:
            return None, None, media_type
        s_ptr = pointer_join(r_ptr, "content", media_type, "schema")
        schema, refs = self.schemas.convert(media["schema"], uri, s_ptr, "out")
        wrapper = None if self._is_object(media["schema"], uri, s_ptr) else "result"
        # The documented shape is advice, not a contract: `anyOf` with an open object
        # keeps a drifting upstream's answer valid for clients that check outputSchema.
        out: dict[str, Any] = {"type": "object", "anyOf": [self._documented(schema, wrapper), {"type": "object"}]}
        budget = self.api.output_schema_max_bytes
        defs = self.schemas.defs_within(refs, "out", budget - json_size(out))
        if defs is None:
            # Too large for one tools/list entry (whole APIs reachable from one result are
            # common): its shape only, and as many levels of definitions as fit.
            schema, refs = self.schemas.convert(media["schema"], uri, s_ptr, "outline")
            out["anyOf"][0] = self._documented(schema, wrapper)
            defs = self.schemas.outline_defs(refs, budget - json_size(out))
        if defs:
            out["$defs"] = defs
        return out, wrapper, media_type

    @staticmethod
    def _documented(schema: Any, wrapper: str | None) -> Any:
        """A result schema as structured content carries it: non-objects wrapped in `wrapper`."""
        return {"type": "object", "properties": {wrapper: schema}} if wrapper else schema

    def _is_object(self, schema: Any, uri: str, ptr: str, depth: int = 0) -> bool:
        """Whether a (response) schema always describes a JSON object: `type: object`,
        untyped with `properties`, or an `allOf` with such a member."""
        target = self.schemas.resolved(schema, uri, ptr)
        resolved = target.value
        if not isinstance(resolved, dict):
            return False
        if resolved.get("type") == "object" or ("properties" in resolved and "type" not in resolved):
            return True
        members = resolved.get("allOf")
        if "type" in resolved or not isinstance(members, list) or depth > 8:
            return False
        return any(
            self._is_object(m, target.uri, pointer_join(target.pointer, "allOf", i), depth + 1)
            for i, m in enumerate(members)
        )

    # -- the tool ----------------------------------------------------------

    def tool(self, name: str, method: str, path: str, path_item: dict[str, Any], op: dict[str, Any],
             item_uri: str, item_ptr: str, op_ptr: str) -> ToolDefinition:  # fmt: skip
        """The tool for one operation of the path item found at `item_uri#item_ptr`."""
        refs: set[Any] = set()
        props: dict[str, Any] = {}
        required: list[str] = []
        taken: set[str] = set()
        plans: list[ParamPlan] = []
        security = self.security.of(op, op_ptr)
        # A parameter that carries one of the operation's API keys is the gateway's to fill
        # from the vault: the agent never sees or supplies credentials.
        secret_params = self.security.key_parameters(security)
        params = [
            p
            for p in self.parameters(path_item, op, item_uri, item_ptr, op_ptr)
            if (p[0]["in"], str(p[0]["name"]).lower()) not in secret_params
        ]
        declared = {str(p["name"]) for p, _, _ in params if p["in"] == "path"}
        segments = set(re.split(r"[/?#]", path))  # (a part after `?` or `#` counts too: a constraint too many)
        undeclared = [v for v in dict.fromkeys(_PATH_VARS.findall(path)) if v not in declared]
        if undeclared:
            # Without an argument for it, every call would fail: add a required string.
            names = ", ".join(undeclared)
            self.issues.append(
                Issue(display_name(item_uri), op_ptr, f"path parameter(s) {names} not declared: added as strings")
            )
            implicit = [({"name": v, "in": "path", "required": True, "schema": {"type": "string"}}, item_uri, op_ptr)
                        for v in undeclared]  # fmt: skip
            params[len(declared) : len(declared)] = implicit  # after the declared path parameters
        for param, uri, p_ptr in params:
            location = param["in"]
            arg = naming.argument_name(str(param["name"]))
            if arg in taken:
                arg = naming.argument_name(f"{arg}_{location}")  # (re-shortened: stays within 64)
            arg = naming.unique(arg, taken)
            schema, content_type = self.param_schema(param, uri, p_ptr, refs)
            style = param.get("style")
            style = style if isinstance(style, str) else _DEFAULT_STYLE[location]
            if location == "path" and content_type is None and isinstance(schema, dict):
                # (Per operation: a shared parameter may fill a whole segment in one path and not another.)
                whole = "{" + str(param["name"]) + "}" in segments
                raw_types = self._raw_types(param.get("schema", {}), uri, pointer_join(p_ptr, "schema"))
                schema = path_segment(schema, style, whole, raw_types)
            is_required = location == "path" or bool(param.get("required"))
            plans.append(
                ParamPlan(
                    name=str(param["name"]),
                    arg=arg,
                    location=location,
                    style=style,
                    explode=bool(param.get("explode", style == "form")),
                    required=is_required,
                    allow_reserved=bool(param.get("allowReserved", False)),
                    content_type=content_type,
                    delimiter=param.get("x-delimiter"),
                )
            )
            props[arg] = schema
            if is_required:
                required.append(arg)
        body = self.body(op, item_uri, op_ptr, taken, props, required, refs)
        input_schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            input_schema["required"] = required
        input_schema["additionalProperties"] = False
        defs = self.schemas.defs_for(refs, "in")
        if defs:
            input_schema["$defs"] = defs
        output_schema, wrapper, accept = self.output(op, item_uri, op_ptr)
        validate = LazyValidator(input_schema)

        summary = op.get("summary") if isinstance(op.get("summary"), str) else None
        description = op.get("description") if isinstance(op.get("description"), str) else None
        if summary and description and summary.strip() == description.strip():
            description = None  # many specs repeat the summary as the description
        text = "\n\n".join(t.strip() for t in (summary, description) if t and t.strip()) or f"{method.upper()} {path}"
        if op.get("deprecated"):
            text = "[deprecated] " + text
        title = trim_text(summary, 120) if summary else None
        annotations: dict[str, Any] = {}
        if title:
            annotations["title"] = title
        annotations.update(
            readOnlyHint=method in ("get", "head", "options"),
            destructiveHint=method == "delete",
            idempotentHint=method in ("get", "head", "options", "put", "delete"),
            openWorldHint=True,
        )
        tags = op.get("tags") if isinstance(op.get("tags"), list) else []
        return ToolDefinition(
            name=name,
            api=self.api.name,
            title=title,
            description=trim_text(text, self.api.description_max_chars),
            input_schema=input_schema,
            output_schema=output_schema,
            annotations=annotations,
            operation=OperationPlan(
                method=method.upper(),
                path=path,
                params=tuple(plans),
                body=body,
                accept=accept,
                security=security,
                base_url=self.own_server(op, path_item),
            ),
            validate=validate,
            operation_id=op.get("operationId") if isinstance(op.get("operationId"), str) else None,
            tags=tuple(str(t) for t in tags),
            result_wrapper=wrapper,
        )


def ingest(spec: LoadedSpec, api: ApiConfig) -> IngestResult:
    """Turn a loaded spec into the tools of `api`. Spec-level faults raise SpecError;
    a fault in one operation skips that operation and is reported in `issues`."""
    version = spec_version(spec.data, spec.source)
    data = swagger2.convert(spec.data) if version == "2.0" else spec.data
    if version == "2.0":
        # References inside the converted root now point into the 3.0 layout.
        spec.resolver.replace(spec.uri, data)
    paths = data.get("paths")
    if paths is None and version != "3.1":
        raise SpecError(spec.source, "/paths", "missing 'paths'")
    if paths is not None and not isinstance(paths, dict):
        raise SpecError(spec.source, "/paths", "'paths' must be an object")
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    result = IngestResult(
        api=api.name,
        source=spec.source,
        title=str(info.get("title") or api.name),
        version=str(info.get("version") or ""),
        spec_version=version,
        base_url=api.base_url or server_url(data, spec.uri),
    )
    builder = _ToolBuilder(spec, data, version, api)
    result.security_schemes = builder.security.schemes
    taken: set[str] = set()
    for path, raw_item in (paths or {}).items():
        item_ptr = pointer_join("/paths", path)
        if str(path).startswith("x-"):
            continue  # a specification extension, not a path
        if not str(path).startswith("/"):
            result.issues.append(Issue(spec.source, item_ptr, "path skipped: paths must start with '/'"))
            continue
        try:
            # A referenced path item: its operations are located (and their relative refs
            # resolved) where the path item is, not under /paths of the root document.
            path_item, item_uri, item_ptr = builder.deref(raw_item, spec.uri, item_ptr)
        except SpecError as exc:
            result.issues.append(Issue(exc.source, exc.pointer, f"path skipped: {exc.message}"))
            continue
        if not isinstance(path_item, dict):
            continue
        for method in HTTP_METHODS:
            op = path_item.get(method)
            if not isinstance(op, dict):
                continue
            op_ptr = pointer_join(item_ptr, method)
            op_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
            base_name = naming.operation_name(op_id, method, str(path))
            tags = [str(t) for t in op.get("tags") or []] if isinstance(op.get("tags"), list) else []
            if not _selected(api.filter, method, str(path), op_id, base_name, tags):
                result.skipped_by_filter += 1
                continue
            name = naming.unique(naming.with_prefix(api.prefix, base_name), taken)
            try:
                result.tools.append(builder.tool(name, method, str(path), path_item, op, item_uri, item_ptr, op_ptr))
            except SpecError as exc:
                taken.discard(name)
                # The fault may sit in a shared component: say which operation it cost.
                skipped = f"operation {method.upper()} {path} skipped"
                result.issues.append(Issue(exc.source, exc.pointer, f"{skipped}: {exc.message}"))
            except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
                # A malformed corner of one operation must not take the whole API down.
                taken.discard(name)
                message = f"operation {method.upper()} {path} skipped: cannot read it ({type(exc).__name__}: {exc})"
                result.issues.append(Issue(display_name(item_uri), op_ptr, message))
    # Shared schemas are converted once, but inline ones once per direction: report each issue once.
    result.issues.extend(dict.fromkeys(builder.issues))
    result.issues.extend(credential_issues(result.source, result.security_schemes, result.tools, api))
    if result.base_url is None and result.tools:
        result.issues.append(
            Issue(spec.source, "/servers", "no absolute server URL in the spec: set base_url for this API")
        )
    if version == "2.0":
        # Name the places of the file as written, not of its 3.0 conversion.
        result.issues = [
            replace(i, pointer=swagger2.original_pointer(spec.data, i.pointer)) if i.source == spec.source else i
            for i in result.issues
        ]
    return result


def ingest_api(api: ApiConfig, *, text: str | bytes | None = None) -> IngestResult:
    """Load `api.spec` (or `text`, named by it) and ingest it. Blocking: run in a thread.

    The result is copied into fresh memory once the parsed document is freed (see `compact`)."""
    return compacted(lambda: ingest(load_spec(api.spec, text=text), api))
