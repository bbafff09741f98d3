"""Turn a tool call (an `OperationPlan` plus validated arguments) into an upstream HTTP request.

Parameters are serialised as OpenAPI 3.1 §4.8.12.4 "Style Values" describe (RFC 6570 underneath);
bodies according to `BodyPlan.kind`. This is the hot path: anything that depends only on the plan
or the base URL is parsed once and cached, and the rest is string joining and `urllib.parse.quote`.

Decisions where the specification is silent, ambiguous or unsafe:

* Path values are percent-encoded with nothing but the unreserved set left as is (`/`, `?`, `#`,
  `;`, `%`... are all encoded, so a literal `%2F` is sent as `%252F`). A value that serialises to
  "" is rejected, and so is any "." or ".." segment of the resulting path (URL normalisation
  removes them: the request would go elsewhere); "." inside a segment (`/{name}.json`) is fine.
* Query `pipeDelimited` joins with `%7C` (the pipe is not a legal query character; the 3.1.1
  table writes it that way). `deepObject` keeps literal brackets, as the table shows:
  `color[R]=100`; keys inside the brackets are percent-encoded. Nested objects go deeper
  (`a[b][c]=v`); an array inside repeats the key (`a[b]=1&a[b]=2`). A top-level array with
  `deepObject`, and arrays with `spaceDelimited`/`pipeDelimited` and explode=true, repeat the name
  like `form`.
* A form body (application/x-www-form-urlencoded) is form-urlencoded as a whole: the `,` that joins
  a non-exploded `form` array or object is sent as `%2C` unless the field's encoding allows reserved
  characters (a decoder sees the same text; a literal `,` is a reserved character in the value).
  A form body that is a string (as some specs type it) is sent as that text.
* A path template may carry a `#fragment` (never sent: some specs tell operations apart by it) or
  its own `?query` (sent before the query parameters; a part naming a query parameter is left to it).
* `allowReserved` keeps RFC 3986 reserved characters unencoded in query values EXCEPT `&`, `=`,
  `#` and `+` (and `%`): a value must never be able to start a new parameter, end the query, or
  be read as a space by form parsers. Names are always fully encoded.
* Numbers in parameters: a float with an integral value is written as an integer (`5.0` as `5`,
  as JavaScript does), so an `integer` parameter given 5.0 never reaches the upstream as "5.0".
  A required parameter whose value serialises to nothing (an empty array or object) is an error.
* Nested composite values (an object inside an array, an array inside an object...) outside
  `deepObject` are sent as compact JSON text. Empty arrays and objects are "undefined" in
  RFC 6570: the parameter is omitted (in the path this is an error). `None` items are skipped.
* Header values are not percent-encoded; they must be ASCII without control characters (CR/LF
  would inject headers; httpx cannot send non-ASCII anyway). Surrounding blanks are stripped.
  Nested arrays and objects (and `content` parameters) go as JSON text escaped to ASCII.
* Cookie parameters (style `form`) are percent-encoded like query values and all go into one
  `Cookie: a=1; b=2` header; exploded arrays/objects become separate pairs.
* Multipart: file parts (`binary_fields`) carry `filename` = the property name; their type is the
  data URL's, else the encoding's, else application/octet-stream. A property whose encoding is
  JSON is sent as one JSON part even when it is an array.
* Binary values are exactly what `definitions.BINARY_VALUE` matches (the pattern argument schemas
  give them): base64 (standard or URL-safe alphabet, padding optional, spaces and line breaks
  anywhere) or `data:` URLs (base64 or percent-encoded).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from mcp_gateway.definitions import B64_ALPHABET, B64_BLANK, MEDIA_TYPE, BodyPlan, OperationPlan, ParamPlan

__all__ = ["RequestBuildError", "UpstreamRequest", "build_request"]


@dataclass(slots=True)
class UpstreamRequest:
    """A fully built upstream request; the caller adds User-Agent and tracing headers."""

    method: str
    url: str  # absolute URL, path and query already encoded
    headers: list[tuple[str, str]]
    content: bytes | None


class RequestBuildError(ValueError):
    """The arguments cannot be turned into a safe request; `argument` names the one at fault."""

    def __init__(self, argument: str | None, message: str) -> None:
        self.argument = argument
        super().__init__(f"argument {argument!r}: {message}" if argument is not None else message)


# quote() always keeps A-Z a-z 0-9 "-._~"; `safe` adds to that.
_STRICT = ""
# allowReserved: RFC 3986 reserved characters minus "&", "=", "#" (would start a new parameter or
# end the query) and "+" (a space to form decoders). See the module docstring.
_RESERVED = ":/?[]@!$'()*,;"
# Literal parts of a path template: keep pchar, "/" and existing escapes.
_PATH_LITERAL_SAFE = "/%:@!$&'()*+,;="
# Literal query part of a path template (`/alerts?lat={lat}`): as above plus "?".
_QUERY_LITERAL_SAFE = _PATH_LITERAL_SAFE + "?"
_DELIMITERS = {"spaceDelimited": "%20", "pipeDelimited": "%7C"}
_DOT_ONLY = frozenset((".", ".."))
_EXACT = 2.0**53  # floats below this are exact integers when integral

_TEMPLATE_RE = re.compile(r"\{([^{}]+)\}")
_HEADER_BAD_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The parts of BINARY_VALUE (see definitions.py) that the decoder checks.
_DATA_URL_HEAD = re.compile(rf"data:({MEDIA_TYPE})?(;base64)?,", re.ASCII)
_B64_TEXT = re.compile(rf"[{B64_ALPHABET}]*(={{0,2}})", re.ASCII)
_B64_BLANKS = re.compile(f"{B64_BLANK}+")
_URLSAFE = str.maketrans("-_", "+/")
_NOT_BINARY = "expected base64 text or a data: URL (data:<mime>;base64,<data>)"
_MULTIPART_NAME_ESCAPES = str.maketrans({'"': "%22", "\r": "%0D", "\n": "%0A"})

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode


def _header_json(value: Any) -> str:
    """JSON text a header line can carry: ASCII (escapes), DEL escaped too (JSON leaves it raw)."""
    return _dumps_ascii(value).replace("\x7f", "\\u007f")


def build_request(plan: OperationPlan, base_url: str, arguments: Mapping[str, Any]) -> UpstreamRequest:
    """Build the upstream request for one tool call.

    `arguments` are the tool call's validated arguments, keyed by `ParamPlan.arg`, `BodyPlan.arg`
    or the keys of `BodyPlan.fields`. Raises `RequestBuildError` (naming the argument) when a
    required value is missing or a value cannot be sent safely: a path value that would change
    the path structure, a header value with CR/LF, invalid base64...
    """
    origin, base_path = _parse_base(base_url)
    query: list[str] = []
    headers: list[tuple[str, str]] = []
    cookies: list[str] = []
    path_values: dict[str, str] = {}

    for p in plan.params:
        value = arguments.get(p.arg)
        if value is None:
            if p.required:
                raise RequestBuildError(p.arg, "is required")
            continue
        try:
            if p.content_type is not None:
                value = _content_text(p, value)
            elif p.delimiter is not None and isinstance(value, list | tuple):
                value = p.delimiter.join([_text(v) for v in value if v is not None])
            location = p.location
            if location == "query":
                before = len(query)
                _add_query(query, p.name, value, p.style, p.explode, _RESERVED if p.allow_reserved else _STRICT)
                sent = len(query) > before
            elif location == "path":
                path_values[p.name] = _path_value(p, value)
                sent = True
            elif location == "header":
                text = _header_value(p, value)
                if sent := text is not None:
                    headers.append((p.name, text))
            else:
                before = len(cookies)
                _add_cookie(cookies, p, value)
                sent = len(cookies) > before
        except UnicodeEncodeError:
            raise RequestBuildError(p.arg, "contains characters that cannot be encoded as UTF-8") from None
        if not sent and p.required:
            # An empty array or object (or only null items) is "undefined" in RFC 6570: nothing
            # would be sent for a parameter the operation requires.
            raise RequestBuildError(p.arg, "is required, and an empty value sends nothing")

    path, literal_query = _expand_path(plan, path_values)
    if literal_query:
        query.insert(0, literal_query)
    url = f"{origin}{base_path}{path}?{'&'.join(query)}" if query else f"{origin}{base_path}{path}"

    # Defence in depth: whatever went wrong above, never leave the configured base URL.
    check = urlsplit(url)
    if (
        f"{check.scheme}://{check.netloc}" != origin
        or not check.path.startswith(base_path + "/")
        or check.fragment
        or not _DOT_ONLY.isdisjoint(check.path.split("/"))
    ):
        raise RequestBuildError(None, f"built URL {url!r} escapes the base URL {base_url!r}")

    if cookies:
        headers.append(("Cookie", "; ".join(cookies)))
    content: bytes | None = None
    if plan.body is not None:
        built = _build_body(plan.body, arguments)
        if built is not None:
            content, content_type = built
            headers.append(("Content-Type", content_type))
    if plan.accept:
        headers.append(("Accept", plan.accept))
    return UpstreamRequest(method=plan.method.upper(), url=url, headers=headers, content=content)


# --------------------------------------------------------------------------- cached parsing


@lru_cache(maxsize=256)
def _parse_base(base_url: str) -> tuple[str, str]:
    """`https://h:1/v1/` -> ("https://h:1", "/v1"): origin and path prefix without trailing slash."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise RequestBuildError(None, f"invalid base URL {base_url!r}: need http(s)://host[:port][/path]")
    return f"{parts.scheme}://{parts.netloc}", quote(parts.path.rstrip("/"), safe=_PATH_LITERAL_SAFE)


Template = tuple[tuple[str, ...], tuple[str, ...]]  # encoded literals around variable names


@lru_cache(maxsize=4096)
def _parse_template(path: str) -> tuple[Template, tuple[Template, ...]]:
    """`/a/{x}/b{y}?k={z}&v#f` -> ((("/a/", "/b", ""), ("x", "y")), ((("k=", ""), ("z",)), (("v",), ()))):
    the encoded literals around the variable names of the path, then of each `&`-separated part of
    the template's own query (none when it has no `?`).

    A `#` outside braces starts a fragment, which is never sent (some specs use `/things#action` to
    give one path several operations); a `?` starts a literal query (`/alerts?lat={lat}`), whose
    variables are filled like path variables and which goes before the query parameters.
    """
    depth = 0
    cut = query_at = None
    for i, ch in enumerate(path):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        elif depth == 0 and ch == "#":
            cut = i
            break
        elif depth == 0 and ch == "?" and query_at is None:
            query_at = i
    if cut is not None:
        path = path[:cut]
    query = ""
    if query_at is not None:
        path, query = path[:query_at], path[query_at + 1 :]
    if not path.startswith("/"):
        path = "/" + path
    return _split_template(path, _PATH_LITERAL_SAFE), tuple(
        _split_template(part, _QUERY_LITERAL_SAFE) for part in query.split("&") if part
    )


def _split_template(text: str, safe: str) -> Template:
    pieces = _TEMPLATE_RE.split(text)
    return tuple(quote(lit, safe=safe) for lit in pieces[0::2]), tuple(pieces[1::2])


def _fill(template: Template, values: dict[str, str], plan: OperationPlan) -> str:
    literals, names = template
    parts = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        try:
            parts.append(values[name])
        except KeyError:
            raise RequestBuildError(None, f"path parameter {name!r} of {plan.path!r} has no value") from None
        parts.append(literal)
    return "".join(parts)


def _expand_path(plan: OperationPlan, values: dict[str, str]) -> tuple[str, str]:
    """The encoded path and the template's own query ("" when it has none).

    A part of the template's query whose variables are all query parameters of the operation
    (`/search?query={query}` with a `query` query parameter) is left out: that parameter is
    serialised with the others, and sending it twice would change its meaning.
    """
    template, query_parts = _parse_template(plan.path)
    query = ""
    if query_parts:
        query_params = {p.name for p in plan.params if p.location == "query"}
        query = "&".join(
            _fill(part, values, plan) for part in query_parts if not (part[1] and query_params.issuperset(part[1]))
        )
    if not template[1]:
        return template[0][0], query
    path = _fill(template, values, plan)
    if not _DOT_ONLY.isdisjoint(path.split("/")):
        args = sorted(p.arg for p in plan.params if p.location == "path")
        raise RequestBuildError(", ".join(args), "path values produce a '.' or '..' path segment")
    return path, query


# --------------------------------------------------------------------------- values


def _text(value: Any) -> str:
    """A primitive as text: booleans `true`/`false`; nested composites as compact JSON."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # 5.0 as "5" (as JavaScript writes it): an integer parameter given 5.0 must not reach a
        # strict integer parser as "5.0". Only where the integer is exact.
        return str(int(value)) if value.is_integer() and -_EXACT < value < _EXACT else repr(value)
    return _dumps(value)


def _is_json(media_type: str) -> bool:
    media_type = media_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _content_text(p: ParamPlan, value: Any) -> str:
    """A parameter declared with `content`: its JSON text (a plain string for non-JSON types)."""
    if isinstance(value, str) and not _is_json(p.content_type or ""):
        return value
    return _header_json(value) if p.location == "header" else _dumps(value)


def _path_value(p: ParamPlan, value: Any) -> str:
    """simple / label / matrix expansion of one path parameter, fully percent-encoded."""
    style = p.style
    if isinstance(value, list | tuple):
        items = [quote(_text(v), _STRICT) for v in value if v is not None]
        if not items:
            raise RequestBuildError(p.arg, "an empty array cannot fill a path parameter")
        if style == "label":
            out = "." + ("." if p.explode else ",").join(items)
        elif style == "matrix":
            name = quote(p.name, _STRICT)
            out = "".join([f";{name}={i}" for i in items]) if p.explode else f";{name}=" + ",".join(items)
        else:
            out = ",".join(items)
    elif isinstance(value, Mapping):
        pairs = [(quote(str(k), _STRICT), quote(_text(v), _STRICT)) for k, v in value.items() if v is not None]
        if not pairs:
            raise RequestBuildError(p.arg, "an empty object cannot fill a path parameter")
        if p.explode:
            kv = [f"{k}={v}" for k, v in pairs]
            if style == "label":
                out = "." + ".".join(kv)
            elif style == "matrix":
                out = "".join([";" + x for x in kv])
            else:
                out = ",".join(kv)
        else:
            flat = ",".join([f"{k},{v}" for k, v in pairs])
            if style == "label":
                out = "." + flat
            elif style == "matrix":
                out = f";{quote(p.name, _STRICT)}={flat}"
            else:
                out = flat
    else:
        out = quote(_text(value), _STRICT)
        if style == "label":
            out = "." + out
        elif style == "matrix":
            out = f";{quote(p.name, _STRICT)}={out}"
    if not out:
        raise RequestBuildError(p.arg, "an empty value cannot fill a path parameter")
    return out


def _add_query(out: list[str], name: str, value: Any, style: str, explode: bool, safe: str, comma: str = ",") -> None:
    """Append the `name=value` pairs (encoded) of one query parameter or form field.

    `comma` is the delimiter of non-exploded `form` arrays and objects: literal in a query string
    (as the style table writes it), `%2C` in a form body field that does not allow reserved characters."""
    n = quote(name, _STRICT)
    if isinstance(value, list | tuple):
        items = [quote(_text(v), safe) for v in value if v is not None]
        if not items:
            return
        delimiter = _DELIMITERS.get(style)
        if delimiter is not None and not explode:
            out.append(f"{n}={delimiter.join(items)}")
        elif explode or style == "deepObject":
            out.extend([f"{n}={i}" for i in items])
        else:
            out.append(f"{n}=" + comma.join(items))
    elif isinstance(value, Mapping):
        if style == "deepObject":
            _add_deep(out, n, value, safe)
            return
        pairs = [(quote(str(k), _STRICT), quote(_text(v), safe)) for k, v in value.items() if v is not None]
        if not pairs:
            return
        if explode:
            out.extend([f"{k}={v}" for k, v in pairs])
        else:
            sep = _DELIMITERS.get(style, comma)
            out.append(f"{n}=" + sep.join([f"{k}{sep}{v}" for k, v in pairs]))
    else:
        out.append(f"{n}={quote(_text(value), safe)}")


def _add_deep(out: list[str], prefix: str, value: Mapping[str, Any], safe: str) -> None:
    """deepObject: `prefix[key]=v`, deeper objects `prefix[a][b]=v`, arrays repeat the key."""
    for k, v in value.items():
        if v is None:
            continue
        key = f"{prefix}[{quote(str(k), _STRICT)}]"
        if isinstance(v, Mapping):
            _add_deep(out, key, v, safe)
        elif isinstance(v, list | tuple):
            out.extend([f"{key}={quote(_text(item), safe)}" for item in v if item is not None])
        else:
            out.append(f"{key}={quote(_text(v), safe)}")


def _header_value(p: ParamPlan, value: Any) -> str | None:
    """simple style, not percent-encoded; None when there is nothing to send."""
    if isinstance(value, list | tuple):
        items = [_header_item(v) for v in value if v is not None]
        if not items:
            return None
        text = ",".join(items)
    elif isinstance(value, Mapping):
        sep = "=" if p.explode else ","
        pairs = [f"{k}{sep}{_header_item(v)}" for k, v in value.items() if v is not None]
        if not pairs:
            return None
        text = ",".join(pairs)
    else:
        text = _text(value)
    text = text.strip(" \t")
    if not text.isascii() or _HEADER_BAD_RE.search(text):
        raise RequestBuildError(p.arg, "header value must be ASCII without control characters (CR, LF...)")
    return text


def _header_item(value: Any) -> str:
    """An item or member value in a header line: nested arrays and objects as ASCII JSON text."""
    return _header_json(value) if isinstance(value, Mapping | list | tuple) else _text(value)


def _add_cookie(out: list[str], p: ParamPlan, value: Any) -> None:
    """form style, percent-encoded; exploded arrays/objects become separate cookie pairs."""
    n = quote(p.name, _STRICT)
    if isinstance(value, list | tuple):
        items = [quote(_text(v), _STRICT) for v in value if v is not None]
        if not items:
            return
        if p.explode:
            out.extend([f"{n}={i}" for i in items])
        else:
            out.append(f"{n}=" + ",".join(items))
    elif isinstance(value, Mapping):
        pairs = [(quote(str(k), _STRICT), quote(_text(v), _STRICT)) for k, v in value.items() if v is not None]
        if not pairs:
            return
        if p.explode:
            out.extend([f"{k}={v}" for k, v in pairs])
        else:
            out.append(f"{n}=" + ",".join([f"{k},{v}" for k, v in pairs]))
    else:
        out.append(f"{n}={quote(_text(value), _STRICT)}")


# --------------------------------------------------------------------------- bodies


def _build_body(body: BodyPlan, arguments: Mapping[str, Any]) -> tuple[bytes, str] | None:
    """(content, Content-Type) of the request body, or None to send no body."""
    if body.arg is not None:
        value = arguments.get(body.arg)
        if value is None:
            if body.required:
                raise RequestBuildError(body.arg, "is required (request body)")
            return None
    else:
        value = {wire: arguments[arg] for arg, wire in body.fields.items() if arg in arguments}
        if not value and not body.required:
            return None
    try:
        kind = body.kind
        if kind == "json":
            return _dumps(value).encode(), body.media_type
        if kind == "form":
            return _form_body(body, value), body.media_type
        if kind == "multipart":
            return _multipart_body(body, value)
        if kind == "text":
            media_type = "text/plain" if "*" in body.media_type else body.media_type
            return _text(value).encode(), media_type
        data, mime = _decode_binary(value, body.arg or "body")
        if "*" in body.media_type:
            return data, mime or "application/octet-stream"
        return data, body.media_type
    except UnicodeEncodeError:
        raise RequestBuildError(body.arg or "body", "contains characters that cannot be encoded as UTF-8") from None


def _field_arg(body: BodyPlan, prop: str) -> str:
    """The argument name a body property came from (error messages only)."""
    if body.arg is not None:
        return f"{body.arg}.{prop}"
    for arg, wire in body.fields.items():
        if wire == prop:
            return arg
    return prop


def _require_object(body: BodyPlan, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RequestBuildError(body.arg or "body", f"a {body.media_type} body must be an object")
    return value


def _form_body(body: BodyPlan, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()  # a form body its spec types as a string: that text, encoded already
    out: list[str] = []
    encoding = body.encoding
    for prop, v in _require_object(body, value).items():
        if v is None:
            continue
        enc = encoding.get(prop)
        if enc is None:
            _add_query(out, prop, _dumps(v) if isinstance(v, Mapping) else v, "form", True, _STRICT)
        elif enc.content_type is not None and _is_json(enc.content_type):
            out.append(f"{quote(prop, _STRICT)}={quote(_dumps(v), _STRICT)}")
        elif enc.allow_reserved:
            _add_query(out, prop, v, enc.style, enc.explode, _RESERVED)
        else:
            _add_query(out, prop, v, enc.style, enc.explode, _STRICT, "%2C")
    return "&".join(out).encode("ascii")


def _multipart_body(body: BodyPlan, value: Any) -> tuple[bytes, str]:
    # (name, filename, content type, data)
    parts: list[tuple[str, str | None, str | None, bytes]] = []
    encoding = body.encoding
    for prop, v in _require_object(body, value).items():
        if v is None:
            continue
        enc = encoding.get(prop)
        ctype = enc.content_type if enc is not None and enc.content_type and "*" not in enc.content_type else None
        if prop in body.binary_fields:
            arg = _field_arg(body, prop)
            for item in v if isinstance(v, list | tuple) else (v,):
                if item is not None:
                    data, mime = _decode_binary(item, arg)
                    parts.append((prop, prop, mime or ctype or "application/octet-stream", data))
        elif ctype is not None and _is_json(ctype):
            parts.append((prop, None, ctype, _dumps(v).encode()))
        elif isinstance(v, Mapping):
            parts.append((prop, None, "application/json", _dumps(v).encode()))
        elif isinstance(v, list | tuple):
            for item in v:
                if item is None:
                    continue
                if isinstance(item, Mapping | list | tuple):
                    parts.append((prop, None, "application/json", _dumps(item).encode()))
                else:
                    parts.append((prop, None, ctype, _text(item).encode()))
        else:
            parts.append((prop, None, ctype, _text(v).encode()))

    boundary = secrets.token_hex(16)
    while any(boundary.encode() in data for _, _, _, data in parts):  # pragma: no cover - 2**-128
        boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for name, filename, ctype, data in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name.translate(_MULTIPART_NAME_ESCAPES)}"'
        if filename is not None:
            head += f'; filename="{filename.translate(_MULTIPART_NAME_ESCAPES)}"'
        if ctype is not None:
            head += f"\r\nContent-Type: {ctype}"
        chunks.append(head.encode() + b"\r\n\r\n")
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    media_type = body.media_type.split(";", 1)[0].strip()
    return b"".join(chunks), f"{media_type}; boundary={boundary}"


def _decode_binary(value: Any, arg: str) -> tuple[bytes, str | None]:
    """Base64 text or a `data:` URL (exactly what `BINARY_VALUE` matches, which argument schemas
    say) -> (bytes, media type of the data URL or None)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value), None
    if not isinstance(value, str):
        raise RequestBuildError(arg, _NOT_BINARY)
    head = _DATA_URL_HEAD.match(value) if value.startswith("data:") else None
    if head is None:
        return _b64decode(value, arg), None
    data = value[head.end() :]
    return (_b64decode(data, arg) if head.group(2) else unquote_to_bytes(data)), head.group(1) or None


def _b64decode(text: str, arg: str) -> bytes:
    # BINARY_VALUE's base64, checked without its blanks by one character class (a fraction of the
    # time the pattern's groups of four take on a large file): padding only where it completes it.
    text = _B64_BLANKS.sub("", text)
    checked = _B64_TEXT.fullmatch(text)
    if checked is None:
        raise RequestBuildError(arg, _NOT_BINARY)
    padding = len(checked.group(1))
    size = len(text) - padding
    if size % 4 == 1 or (padding and (size + padding) % 4):
        raise RequestBuildError(arg, _NOT_BINARY)
    return base64.b64decode(text.translate(_URLSAFE) + "=" * (-len(text) % 4), validate=True)
