"""Operations -> tool definitions: names, descriptions, schemas, annotations, call plans.

Rules a reader of the generated tools should know (also in the README):
- Arguments: path, query, header and cookie parameters by (sanitised) name. An
  object request body (JSON, form or multipart) is spread into top-level
  arguments; any other body is one `body` argument.
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
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import jsonschema_rs

from mcp_gateway.config import HTTP_METHODS, ApiConfig, ToolFilter
from mcp_gateway.definitions import (
    ArgumentValidator,
    BodyPlan,
    EncodingPlan,
    Issue,
    OperationPlan,
    ParamPlan,
    Requirement,
    SecurityScheme,
    SpecError,
    ToolDefinition,
)
from mcp_gateway.openapi import naming, swagger2
from mcp_gateway.openapi.load import LoadedSpec, display_name, load_spec, pointer_join
from mcp_gateway.openapi.schema import SchemaConverter, json_size, trim_text

_LOCATIONS = ("path", "query", "header", "cookie")
_DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
# Header parameters the gateway sets itself: content negotiation, credentials, and the
# message framing and connection headers the HTTP client owns (a Content-Length from an
# argument would contradict the body it frames).
_IGNORED_HEADERS = frozenset(
    ("accept", "content-type", "authorization", "content-length", "transfer-encoding", "host", "connection",
     "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-authorization", "proxy-connection")
)  # fmt: skip
_BODY_RANK = {"json": 0, "form": 1, "multipart": 2, "text": 3, "binary": 4}
_PATH_VARS = re.compile(r"\{([^{}]+)\}")
# A header value as the request builder sends it: ASCII, no control characters but tab.
HEADER_TEXT = r"^[\t -~]*$"
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
    if m.startswith("text/") or m.endswith("/xml") or m.endswith("+xml"):
        return "text"
    if m in ("*/*", "application/*") and isinstance(schema, dict) and schema.get("format") not in ("binary", "byte"):
        return "json"
    return "binary"


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


def _server_url(data: Mapping[str, Any], spec_uri: str) -> str | None:
    """The first usable server URL: variables set to their defaults, relative URLs resolved
    against the spec's URL. No `servers` at all means `/` (OpenAPI 3.x), i.e. the host that
    serves the spec. None when nothing usable is left (e.g. a relative URL and a spec file)."""
    servers = data.get("servers")
    if not isinstance(servers, list) or not servers:
        servers = [{"url": "/"}]
    for server in servers:
        if isinstance(server, dict) and (url := _one_server_url(server, spec_uri)):
            return url
    return None


def _one_server_url(server: Mapping[str, Any], spec_uri: str) -> str | None:
    url = str(server.get("url", ""))
    variables = server.get("variables")
    for name, var in (variables if isinstance(variables, dict) else {}).items():
        if isinstance(var, dict) and "default" in var:
            url = url.replace("{" + name + "}", str(var["default"]))
    if not urlsplit(url).scheme:
        # Relative server URLs are relative to where the spec came from.
        if not spec_uri.startswith(("http://", "https://")):
            return None
        url = urljoin(spec_uri, url)
    if urlsplit(url).scheme not in ("http", "https") or "{" in url:
        return None
    return url


def compile_validator(schema: dict[str, Any]) -> ArgumentValidator:
    """A fast validator for tool arguments that reports every bad field.

    Patterns the Rust regex engine cannot compile (some specs use ECMA or Python-only
    syntax) are left out of the validator, one by one; the published schema keeps them.
    Raises ValueError when the schema cannot be compiled even so.
    """
    try:
        if _HUGE_REPEAT.search(json.dumps(schema, default=str)):
            raise ValueError("a pattern the Rust engine would take long to refuse")  # (skip the slow attempt)
        validator = jsonschema_rs.Draft202012Validator(schema)
    except ValueError:  # jsonschema_rs.ValidationError is a ValueError
        validator = jsonschema_rs.Draft202012Validator(_without_bad_patterns(schema))

    def validate(arguments: Mapping[str, Any]) -> list[str]:
        if validator.is_valid(arguments):
            return []
        errors = []
        for error in validator.iter_errors(arguments):
            where = "/".join(str(p) for p in error.instance_path)
            errors.append(f"{where}: {error.message}" if where else error.message)
        return errors

    return validate


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


def _without_bad_patterns(node: Any, key: str | None = None) -> Any:
    """A copy of a schema without the `pattern`s / `patternProperties` entries the Rust engine rejects.

    `key` is the keyword `node` is the value of: data under `enum`, `const`, `default`
    and `examples` is left alone, and only real `properties` may be named "pattern".
    """
    if key in ("enum", "const", "default", "examples"):
        return node
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if key != "properties" and k == "pattern" and isinstance(v, str) and not _regex_ok(v):
                continue
            if key != "properties" and k == "patternProperties" and isinstance(v, dict):
                v = {p: sub for p, sub in v.items() if _regex_ok(p)}
            out[k] = _without_bad_patterns(v, None if key == "properties" else k)
        return out
    if isinstance(node, list):
        return [_without_bad_patterns(v) for v in node]
    return node


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
        self.security_schemes = self._security_schemes()
        # Operation and path-item `servers` apply unless the operator set the API's base URL.
        self.root_base = None if api.base_url else _server_url(data, spec.uri)
        self.root_security = self._requirements(data.get("security"), "/security") or ()

    # -- security ----------------------------------------------------------

    def own_server(self, op: dict[str, Any], path_item: dict[str, Any]) -> str | None:
        """The operation's (else its path item's) first usable server, when it differs from the API's."""
        if self.api.base_url:
            return None
        for servers in (op.get("servers"), path_item.get("servers")):
            if isinstance(servers, list) and servers:
                for server in servers:
                    if isinstance(server, dict) and (url := _one_server_url(server, self.spec.uri)):
                        return None if url == self.root_base else url
                return None
        return None

    def _security_schemes(self) -> dict[str, SecurityScheme]:
        components = self.data.get("components")
        raw = components.get("securitySchemes") if isinstance(components, dict) else None
        out: dict[str, SecurityScheme] = {}
        for name, node in (raw or {}).items() if isinstance(raw, dict) else ():
            ptr = pointer_join("/components/securitySchemes", name)
            try:
                scheme, _, _ = self.deref(node, self.spec.uri, ptr)
            except SpecError as exc:
                self.issues.append(Issue(exc.source, exc.pointer, f"security scheme skipped: {exc.message}"))
                continue
            if not isinstance(scheme, dict) or not isinstance(scheme.get("type"), str):
                self.issues.append(Issue(self.spec.source, ptr, "security scheme skipped: it needs a 'type'"))
                continue
            flows = scheme.get("flows") if isinstance(scheme.get("flows"), dict) else {}
            out[str(name)] = SecurityScheme(
                name=str(name),
                type=scheme["type"],
                location=scheme.get("in") if isinstance(scheme.get("in"), str) else None,
                param_name=str(scheme["name"]) if scheme.get("name") is not None else None,
                http_scheme=str(scheme["scheme"]).lower() if isinstance(scheme.get("scheme"), str) else None,
                flows={str(k): v for k, v in flows.items() if isinstance(v, dict)},
                openid_url=scheme.get("openIdConnectUrl") if isinstance(scheme.get("openIdConnectUrl"), str) else None,
            )
        return out

    def _requirements(self, value: Any, ptr: str) -> tuple[Requirement, ...] | None:
        """A `security` list as requirement tuples; None when absent or malformed (reported)."""
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            self.issues.append(Issue(self.spec.source, ptr, "'security' must be a list of objects: ignored"))
            return None
        out: list[Requirement] = []
        for requirement in value:
            scopes = {k: tuple(str(s) for s in v) if isinstance(v, list) else () for k, v in requirement.items()}
            out.append(tuple(sorted(scopes.items())))
        return tuple(out)

    def security(self, op: dict[str, Any], op_ptr: str) -> tuple[Requirement, ...]:
        """The operation's own `security`, else the spec's; an empty requirement means optional."""
        own = self._requirements(op.get("security"), pointer_join(op_ptr, "security"))
        return self.root_security if own is None else own

    def credential_params(self, security: tuple[Requirement, ...]) -> set[tuple[str, str]]:
        """(location, lower-cased name) of the API-key parameters the operation's schemes fill."""
        out: set[tuple[str, str]] = set()
        for requirement in security:
            for scheme_name, _ in requirement:
                scheme = self.security_schemes.get(scheme_name)
                if scheme is not None and scheme.type == "apiKey" and scheme.location and scheme.param_name:
                    out.add((scheme.location, scheme.param_name.lower()))
        return out

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
        return [p for p in ordered if not (p[0]["in"] == "header" and str(p[0]["name"]).lower() in _IGNORED_HEADERS)]

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
            schema = self._wire_constraints(schema, param, self._raw_types(raw, uri, raw_ptr))
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

    @staticmethod
    def _wire_constraints(schema: dict[str, Any], param: dict[str, Any], raw: set[str] | None) -> dict[str, Any]:
        """What a parameter's value must be to reach the wire, said in its argument schema, so that
        an agent learns it from the schema instead of from a refused call:

        * a query string is not empty unless `allowEmptyValue` says so (its default is false);
        * a header value is ASCII without control characters (the request builder refuses others);
        * a path parameter, or a required one, that is an array or object is not empty: an
          empty one sends nothing (RFC 6570), so the call would be refused;
        * a required parameter is not null: null sends nothing either.

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

        if (
            location == "query"
            and may_be("string")
            and not param.get("allowEmptyValue")
            and not schema.get("minLength")
        ):
            schema["minLength"] = 1
        if location == "header" and may_be("string"):
            if "pattern" in schema:
                schema = {"allOf": [schema, {"pattern": HEADER_TEXT}]}
            else:
                schema["pattern"] = HEADER_TEXT
        if location == "header" and known is not None and known & {"array", "object"}:
            # Items, keys and values end up in the header line too (copies: nested schemas are shared).
            ascii_text = {"pattern": HEADER_TEXT}

            def ascii_only(node: Any) -> Any:
                kind = node.get("type") if isinstance(node, dict) else None
                text = kind is None or kind == "string" or (isinstance(kind, list) and "string" in kind)
                return {"allOf": [node, ascii_text]} if isinstance(node, dict) and text else node

            if isinstance(schema.get("items"), dict):
                schema["items"] = ascii_only(schema["items"])
            if "object" in known:
                schema["propertyNames"] = ascii_text
                extra = schema.get("additionalProperties", True)
                schema["additionalProperties"] = ascii_text if extra is True else ascii_only(extra)
                if isinstance(schema.get("properties"), dict):
                    schema["properties"] = {k: ascii_only(v) for k, v in schema["properties"].items()}
        if required and known is not None and "array" in known and not schema.get("minItems"):
            schema["minItems"] = 1
        if required and known is not None and "object" in known and not schema.get("minProperties"):
            schema["minProperties"] = 1
        if required and (known is None or "null" in known):
            kinds = schema.get("type")
            if isinstance(kinds, list) and "null" in kinds and len(kinds) > 1:
                rest = [t for t in kinds if t != "null"]
                schema["type"] = rest[0] if len(rest) == 1 else rest
                if isinstance(schema.get("enum"), list):
                    schema["enum"] = [v for v in schema["enum"] if v is not None]
            elif known is not None or "anyOf" in schema or "oneOf" in schema or "$ref" in schema:
                schema = {"allOf": [schema, {"not": {"type": "null"}}]} if "not" in schema else {
                    **schema, "not": {"type": "null"}
                }  # fmt: skip
        return schema

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
        arg = naming.unique("body" if "body" not in taken else "request_body", taken)
        if kind in ("binary",):
            schema: Any = {"type": "string", "contentEncoding": "base64", "description": _BINARY_HINT}
        else:
            schema, used = self.schemas.convert(raw_schema, uri, s_ptr, "in")
            refs |= used
            if kind == "text" and schema == {}:
                schema = {"type": "string"}
        text = self.schemas.description(body["description"]) if isinstance(body.get("description"), str) else None
        if isinstance(schema, dict) and text is not None and "description" not in schema:
            schema = {**schema, "description": text}
        props[arg] = schema
        if body_required:
            required.append(arg)
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
                if isinstance(converted, dict):
                    converted = {
                        **converted,
                        "description": (converted.get("description", "") + " " + _BINARY_HINT).strip(),
                    }
            if name in body_required_props:
                required.append(arg)
                is_array = isinstance(resolved, dict) and resolved.get("type") == "array"
                if is_array and isinstance(converted, dict) and not converted.get("minItems"):
                    # An empty array is no form field at all: the required property would be missing.
                    converted = {**converted, "minItems": 1}
            props[arg] = converted
        return BodyPlan(media_type=media_type, kind=kind, required=body_required, fields=fields,  # type: ignore[arg-type]
                        encoding=encoding, binary_fields=frozenset(binary))  # fmt: skip

    def _is_file(self, resolved: Any, uri: str, ptr: str) -> bool:
        """A multipart property sent as file parts: binary content, or an array of it."""
        if not isinstance(resolved, dict):
            return False
        media = resolved.get("contentMediaType")
        if resolved.get("format") in ("binary", "byte"):
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
        security = self.security(op, op_ptr)
        # A parameter that carries one of the operation's API keys is the gateway's to fill
        # from the vault: the agent never sees or supplies credentials.
        secret_params = self.credential_params(security)
        params = [
            p
            for p in self.parameters(path_item, op, item_uri, item_ptr, op_ptr)
            if (p[0]["in"], str(p[0]["name"]).lower()) not in secret_params
        ]
        declared = {str(p["name"]) for p, _, _ in params if p["in"] == "path"}
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


def _credential_issues(result: IngestResult, api: ApiConfig) -> list[Issue]:
    """Operations whose security no configured credential meets, and credentials bound to no scheme.

    Those operations stay listed (the operator may add the credential at run time) and fail
    with a clear tool error when called."""
    bound = set(api.credentials)
    issues: list[Issue] = []
    unknown = sorted(bound - set(result.security_schemes) - {"*"})
    if unknown:
        issues.append(
            Issue(result.source, "/components/securitySchemes",
                  f"credentials bound to scheme(s) the spec does not declare: {', '.join(unknown)}")
        )  # fmt: skip
    if "*" in bound:
        return issues
    unmet: dict[str, int] = {}
    for tool in result.tools:
        security = tool.operation.security
        if security and not any(all(s in bound for s, _ in r) for r in security):
            wanted = " or ".join(" + ".join(s for s, _ in r) for r in security)
            unmet[wanted] = unmet.get(wanted, 0) + 1
    outcome = ("they are sent without credentials (allow_unauthenticated)" if api.allow_unauthenticated
               else "calls to them fail until they are")  # fmt: skip
    for wanted, count in unmet.items():
        issues.append(
            Issue(result.source, "/components/securitySchemes",
                  f"{count} operation(s) need credentials for {wanted}; none are configured under "
                  f"`credentials`, so {outcome}")
        )  # fmt: skip
    return issues


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
        base_url=api.base_url or _server_url(data, spec.uri),
    )
    builder = _ToolBuilder(spec, data, version, api)
    result.security_schemes = builder.security_schemes
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
    result.issues.extend(_credential_issues(result, api))
    if result.base_url is None and result.tools:
        result.issues.append(
            Issue(spec.source, "/servers", "no absolute server URL in the spec: set base_url for this API")
        )
    return result


def ingest_api(api: ApiConfig, *, text: str | bytes | None = None) -> IngestResult:
    """Load `api.spec` (or `text`, named by it) and ingest it. Blocking: run in a thread."""
    return ingest(load_spec(api.spec, text=text), api)
