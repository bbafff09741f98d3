"""What a parameter's value must be to reach the wire, said in its argument schema.

The request builder (upstream/request.py) refuses values it cannot send, and sends nothing
for empty or null ones; saying so in the tool schema lets an agent learn it from the schema,
and validation name the field, instead of a refused call.
"""

from __future__ import annotations

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


def wire_constraints(schema: dict[str, Any], param: dict[str, Any], raw: set[str] | None) -> dict[str, Any]:
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

    if location == "query" and may_be("string") and not param.get("allowEmptyValue") and not schema.get("minLength"):
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
