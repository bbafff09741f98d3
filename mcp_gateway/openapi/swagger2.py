"""Swagger 2.0 -> OpenAPI 3.0 conversion, in code, on the parsed document.

Only what the ingester reads is converted: servers, paths, parameters, request
bodies, responses, components and security. References into the 2.0 sections
(`#/definitions/...`, `#/parameters/...`, `#/responses/...`) are rewritten to
their 3.0 homes, so the rest of the ingester sees one model.
"""

from __future__ import annotations

from typing import Any

_REF_PREFIXES = (
    ("#/definitions/", "#/components/schemas/"),
    ("#/parameters/", "#/components/parameters/"),
    ("#/responses/", "#/components/responses/"),
)
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# collectionFormat -> (style, explode, delimiter for formats 3.0 has no style for)
_COLLECTION_FORMATS: dict[str, tuple[str, bool, str | None]] = {
    "csv": ("form", False, None),
    "ssv": ("spaceDelimited", False, None),
    "pipes": ("pipeDelimited", False, None),
    "tsv": ("form", False, "\t"),
    "multi": ("form", True, None),
}
_SCHEMA_KEYS = (
    "type", "format", "items", "default", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "enum", "multipleOf",
)  # fmt: skip


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for old, new in _REF_PREFIXES:
                    if value.startswith(old):
                        value = new + value[len(old) :]
                        break
                out[key] = value
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _param_schema(param: dict[str, Any]) -> dict[str, Any]:
    schema = {k: param[k] for k in _SCHEMA_KEYS if k in param}
    if isinstance(schema.get("items"), dict):
        schema["items"] = _param_schema(schema["items"]) if "collectionFormat" in schema["items"] else schema["items"]
    if schema.get("type") == "file":
        schema = {"type": "string", "format": "binary"}
    if param.get("x-nullable"):
        schema["nullable"] = True
    return schema


def _convert_param(param: dict[str, Any]) -> dict[str, Any]:
    """A non-body, non-formData 2.0 parameter as a 3.0 parameter."""
    if "$ref" in param:
        return param
    out = {k: param[k] for k in ("name", "in", "description", "required", "deprecated") if k in param}
    out["schema"] = _param_schema(param)
    if param.get("type") == "array":
        style, explode, delimiter = _COLLECTION_FORMATS.get(param.get("collectionFormat", "csv"), ("form", False, None))
        if param.get("in") in ("path", "header"):
            style = "simple"
        out["style"], out["explode"] = style, explode
        if delimiter:
            out["x-delimiter"] = delimiter
    if param.get("allowEmptyValue"):
        out["allowEmptyValue"] = True
    return out


def _shared_param(param: dict[str, Any], shared: Any) -> dict[str, Any]:
    """The top-level parameter a (rewritten) `#/parameters/...` ref names, else `param` itself."""
    ref = param.get("$ref")
    prefix = "#/components/parameters/"
    if not isinstance(ref, str) or not ref.startswith(prefix) or not isinstance(shared, dict):
        return param
    name = ref[len(prefix) :].replace("~1", "/").replace("~0", "~")
    target = shared.get(name)
    return target if isinstance(target, dict) else param


def _form_body(params: list[dict[str, Any]], consumes: list[str]) -> dict[str, Any]:
    """formData parameters as one object body.

    Files need multipart. Otherwise form-urlencoded unless the operation only consumes
    multipart (the preference order of the ingester). formData can only be sent as one
    of these two, so any other `consumes` (often a global `application/json`) is ignored.
    """
    has_file = any(p.get("type") == "file" for p in params)
    form, multipart = "application/x-www-form-urlencoded", "multipart/form-data"
    bare = [c.split(";", 1)[0].strip().lower() for c in consumes if isinstance(c, str)]
    media = multipart if has_file or (multipart in bare and form not in bare) else form
    properties: dict[str, Any] = {}
    required: list[str] = []
    encoding: dict[str, Any] = {}
    for p in params:
        schema = _param_schema(p)
        if "description" in p:
            schema["description"] = p["description"]
        properties[p["name"]] = schema
        if p.get("required"):
            required.append(p["name"])
        if p.get("type") == "array":
            style, explode, _ = _COLLECTION_FORMATS.get(p.get("collectionFormat", "csv"), ("form", False, None))
            encoding[p["name"]] = {"style": style, "explode": explode}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    media_obj: dict[str, Any] = {"schema": schema}
    if encoding:
        media_obj["encoding"] = encoding
    return {"content": {media: media_obj}, "required": bool(required)}


def _convert_operation(
    op: dict[str, Any], shared: dict[str, Any], consumes: list[str], produces: list[str]
) -> dict[str, Any]:
    op = dict(op)
    consumes = op.pop("consumes", None) or consumes
    produces = op.pop("produces", None) or produces
    params = op.pop("parameters", None) or []
    new_params: list[Any] = []
    form_params: list[dict[str, Any]] = []
    for p in params:
        if not isinstance(p, dict):
            continue
        target = _shared_param(p, shared)
        if target.get("in") in ("body", "formData"):
            # Body and formData parameters have no 3.0 component home: inline them.
            p = target
        where = p.get("in")
        if where == "body":
            media_types = [c for c in consumes if "json" in c] or consumes or ["application/json"]
            op["requestBody"] = {
                "content": {m: {"schema": p.get("schema", {})} for m in media_types[:1]},
                "required": bool(p.get("required")),
                **({"description": p["description"]} if "description" in p else {}),
            }
        elif where == "formData":
            form_params.append(p)
        else:
            new_params.append(_convert_param(p))
    if form_params:
        op["requestBody"] = _form_body(form_params, consumes)
    if new_params:
        op["parameters"] = new_params
    responses: dict[str, Any] = {}
    for code, resp in (op.get("responses") or {}).items():
        responses[str(code)] = _convert_response(resp, produces)
    op["responses"] = responses
    return op


def _convert_response(resp: Any, produces: list[str]) -> Any:
    if not isinstance(resp, dict) or "$ref" in resp:
        return resp
    out = {"description": resp.get("description", "")}
    if "schema" in resp:
        media = [m for m in produces if "json" in m] or produces or ["application/json"]
        out["content"] = {m: {"schema": resp["schema"]} for m in media[:1]}
    if "headers" in resp:
        out["headers"] = {k: {"schema": _param_schema(v)} for k, v in resp["headers"].items() if isinstance(v, dict)}
    return out


def _security_scheme(scheme: dict[str, Any]) -> dict[str, Any]:
    kind = scheme.get("type")
    if kind == "basic":
        return {"type": "http", "scheme": "basic"}
    if kind == "apiKey":
        return {k: scheme[k] for k in ("type", "name", "in", "description") if k in scheme}
    if kind == "oauth2":
        flow_name = {"accessCode": "authorizationCode", "application": "clientCredentials"}.get(
            scheme.get("flow", ""), scheme.get("flow", "implicit")
        )
        flow = {k: scheme[k] for k in ("authorizationUrl", "tokenUrl") if k in scheme}
        flow["scopes"] = scheme.get("scopes", {})
        return {"type": "oauth2", "flows": {flow_name: flow}}
    return dict(scheme)


def convert(doc: dict[str, Any]) -> dict[str, Any]:
    """Convert a Swagger 2.0 document to the OpenAPI 3.0 model."""
    doc = _rewrite_refs(doc)
    consumes = doc.get("consumes") or []
    produces = doc.get("produces") or []
    shared = doc.get("parameters") or {}
    out: dict[str, Any] = {"openapi": "3.0.3", "info": doc.get("info", {})}
    host = doc.get("host")
    base_path = doc.get("basePath", "")
    if host:
        schemes = doc.get("schemes") or ["https"]
        out["servers"] = [{"url": f"{scheme}://{host}{base_path}"} for scheme in schemes]
    else:
        # No host: "the host (name or ip) serving the documentation" (Swagger 2.0).
        out["servers"] = [{"url": base_path or "/"}]
    for key in ("tags", "externalDocs", "security"):
        if key in doc:
            out[key] = doc[key]
    if not isinstance(doc.get("paths"), dict):
        # Missing or malformed: left for the ingester to report at /paths.
        if "paths" in doc:
            out["paths"] = doc["paths"]
        return _with_components(doc, out, produces)
    paths: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        if not isinstance(item, dict) or "$ref" in item:
            paths[path] = item
            continue
        path_params = [_shared_param(p, shared) for p in item.get("parameters") or [] if isinstance(p, dict)]
        new_item: dict[str, Any] = {}
        body_like = [p for p in path_params if isinstance(p, dict) and p.get("in") in ("body", "formData")]
        plain = [_convert_param(p) for p in path_params if p not in body_like]
        if plain:
            new_item["parameters"] = plain
        for method in _METHODS:
            if isinstance(item.get(method), dict):
                op = dict(item[method])
                if body_like:
                    op["parameters"] = body_like + list(op.get("parameters") or [])
                new_item[method] = _convert_operation(op, shared, consumes, produces)
        for key, value in item.items():
            if key.startswith("x-") or key in ("summary", "description"):
                new_item[key] = value
        paths[path] = new_item
    out["paths"] = paths
    return _with_components(doc, out, produces)


def _with_components(doc: dict[str, Any], out: dict[str, Any], produces: list[str]) -> dict[str, Any]:
    """Add the 3.0 `components` made of the 2.0 definitions, parameters, responses and security."""
    components: dict[str, Any] = {}
    if "definitions" in doc:
        components["schemas"] = doc["definitions"]
    if "parameters" in doc:
        components["parameters"] = {
            k: _convert_param(v) for k, v in doc["parameters"].items() if isinstance(v, dict) and v.get("in") != "body"
        }
    if "responses" in doc:
        components["responses"] = {k: _convert_response(v, produces) for k, v in doc["responses"].items()}
    if "securityDefinitions" in doc:
        components["securitySchemes"] = {k: _security_scheme(v) for k, v in doc["securityDefinitions"].items()}
    if components:
        out["components"] = components
    return out


def original_pointer(doc: dict[str, Any], pointer: str) -> str:
    """Where in the Swagger 2.0 document `doc` a JSON pointer into its 3.0 conversion points:
    warnings and errors name the file's own places (`/securityDefinitions/...`, a parameter's
    index in the file, a response's `schema`), not 3.0 ones that do not exist in it."""
    if not pointer.startswith("/"):
        return pointer
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    head, rest = tokens[:2], tokens[2:]
    homes = {"securitySchemes": "securityDefinitions", "schemas": "definitions", "parameters": "parameters"}
    if head[0] == "components" and len(head) == 2:
        if head[1] in homes:
            if head[1] == "parameters" and rest[1:2] == ["schema"]:
                rest = [rest[0], *rest[2:]]  # a non-body parameter keeps its schema keys inline
            return _join(homes[head[1]], *rest)
        if head[1] == "responses":
            return _join("responses", *_response_tail(rest))
        return pointer
    if tokens[0] == "servers":
        return "/host"
    if tokens[0] != "paths" or len(tokens) < 3:
        return pointer
    path, where, rest = tokens[1], tokens[2], tokens[3:]
    item = (doc.get("paths") or {}).get(path)
    if not isinstance(item, dict):
        return pointer
    if where == "parameters":  # the path item's own parameters
        return _join("paths", path, "parameters", *_parameter_tail(doc, item.get("parameters"), rest))
    op = item.get(where)
    if not isinstance(op, dict):
        return pointer
    if rest[:1] == ["parameters"]:
        return _join("paths", path, where, "parameters", *_parameter_tail(doc, op.get("parameters"), rest[1:]))
    if rest[:1] == ["requestBody"]:
        return _join("paths", path, where, "parameters", *_body_tail(doc, item, op, rest[1:]))
    if rest[:1] == ["responses"] and len(rest) >= 2:
        return _join("paths", path, where, "responses", rest[1], *_response_tail(rest[2:], named=False))
    return pointer


def _join(*tokens: str) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _response_tail(rest: list[str], named: bool = True) -> list[str]:
    """`[name,] content, <media type>, schema, ...` -> `[name,] schema, ...` (2.0 has one schema)."""
    lead, tail = (rest[:1], rest[1:]) if named else ([], rest)
    if tail[:1] == ["content"] and len(tail) >= 2:
        tail = tail[2:]
    return [*lead, *tail]


def _is_body(doc: dict[str, Any], param: Any) -> bool:
    target = _shared_param(param, doc.get("parameters") or {}) if isinstance(param, dict) else None
    return isinstance(target, dict) and target.get("in") in ("body", "formData")


def _parameter_tail(doc: dict[str, Any], params: Any, rest: list[str]) -> list[str]:
    """`i, schema, ...` of the converted (non-body) parameters -> the file's index, schema keys inline."""
    if not rest or not rest[0].isdigit() or not isinstance(params, list):
        return rest
    kept = [i for i, p in enumerate(params) if isinstance(p, dict) and not _is_body(doc, p)]
    index = int(rest[0])
    if index >= len(kept):
        return rest
    tail = rest[1:]
    if tail[:1] == ["schema"]:
        tail = tail[1:]
    return [str(kept[index]), *tail]


def _body_tail(doc: dict[str, Any], item: dict[str, Any], op: dict[str, Any], rest: list[str]) -> list[str]:
    """`content, <media type>, schema[, properties, <field>], ...` -> the body or formData parameter."""
    params = op.get("parameters") if isinstance(op.get("parameters"), list) else []
    bodies = [(i, _shared_param(p, doc.get("parameters") or {})) for i, p in enumerate(params) if _is_body(doc, p)]
    if not bodies:
        return []  # the body comes from the path item's parameters: the list is the best place to name
    tail = rest[2:] if rest[:1] == ["content"] and len(rest) >= 2 else []
    if tail[:1] == ["schema"]:
        tail = tail[1:]
    body = next(((i, p) for i, p in bodies if p.get("in") == "body"), None)
    if body is not None:
        return [str(body[0]), "schema", *tail]
    # formData: one parameter per property of the converted body schema.
    if tail[:1] == ["properties"] and len(tail) >= 2:
        named = next((i for i, p in bodies if p.get("name") == tail[1]), None)
        if named is not None:
            return [str(named), *tail[2:]]
    return []
