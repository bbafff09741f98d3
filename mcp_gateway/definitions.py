"""What ingest produces and every later stage reads: tool definitions and call plans.

These are plain data, computed once per spec. The hot path (`upstream/`) only
reads them: it never looks at the OpenAPI document again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ParamLocation = Literal["path", "query", "header", "cookie"]
BodyKind = Literal["json", "form", "multipart", "text", "binary"]

# A binary value given as a tool argument (a file part, a binary body): base64 in the standard or
# URL-safe alphabet, padding optional but right when present, blanks (space, tab, CR, LF: wrapped
# lines) anywhere; or a `data:` URL (RFC 2397) with an optional `type/subtype` and `;name=value`
# parameters (tokens), then `;base64,` and base64 as above, or `,` and text, percent-decoded.
# Argument schemas carry `BINARY_VALUE` as the `pattern` of such arguments (ECMA-262 and Python
# read it alike, Python with fullmatch and re.ASCII); the request builder decodes exactly the
# strings it matches, checking them with the same parts.
B64_ALPHABET = r"\w+/-"  # \w: ASCII letters, digits and "_" in ECMA-262 (Python: with re.ASCII)
B64_BLANK = r"[\t\n\r ]"
_C = f"[{B64_ALPHABET}]{B64_BLANK}*"  # a base64 character and the blanks after it
_P = f"={B64_BLANK}*"  # a padding character, and blanks
_B64 = f"{B64_BLANK}*(?:(?:{_C}){{4}})*(?:(?:{_C}){{2}}(?:{_P}{_P})?|(?:{_C}){{3}}(?:{_P})?)?"
_TOKEN = r"[\w!#$%&'*+.^`|~-]+"  # RFC 9110 token
MEDIA_TYPE = f"{_TOKEN}/{_TOKEN}(?:;{_TOKEN}={_TOKEN})*"
BINARY_VALUE = rf"^(?:(?:data:(?:{MEDIA_TYPE})?;base64,)?{_B64}|data:(?:{MEDIA_TYPE})?,[\s\S]*)$"


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """How one OpenAPI parameter is filled from the tool arguments and serialised.

    `arg` is the key in the tool's `arguments` (sanitised, possibly renamed on a
    clash); `name` is the name on the wire.
    """

    name: str
    arg: str
    location: ParamLocation
    style: str
    explode: bool
    required: bool = False
    allow_reserved: bool = False
    # Parameters declared with `content` (not `schema`) are sent as that media type,
    # in practice JSON text.
    content_type: str | None = None
    # Swagger 2.0 `collectionFormat: tsv` has no OpenAPI 3 style; kept as a delimiter.
    delimiter: str | None = None


@dataclass(frozen=True, slots=True)
class EncodingPlan:
    """Per-property encoding of a form or multipart body (OpenAPI Encoding Object)."""

    content_type: str | None = None
    style: str = "form"
    explode: bool = True
    allow_reserved: bool = False


@dataclass(frozen=True, slots=True)
class BodyPlan:
    """How the request body is built from the arguments.

    Either the body is one argument (`arg`, e.g. `body`), or the body is an object
    whose properties are spread over the top-level arguments: `fields` maps each
    argument name to the body property name.
    """

    media_type: str
    kind: BodyKind
    required: bool = False
    arg: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    encoding: Mapping[str, EncodingPlan] = field(default_factory=dict)
    # Body properties sent as files (multipart parts with a filename, binary content).
    binary_fields: frozenset[str] = frozenset()


SchemeKind = Literal["apiKey", "http", "oauth2", "openIdConnect", "mutualTLS"]


@dataclass(frozen=True, slots=True)
class SecurityScheme:
    """One entry of the spec's `securitySchemes`: how a credential travels, never the credential."""

    name: str
    type: SchemeKind | str
    # apiKey: where and under which name the key goes.
    location: str | None = None
    param_name: str | None = None
    # http: "basic", "bearer", ...
    http_scheme: str | None = None
    # oauth2: flow name -> {"tokenUrl", "authorizationUrl", "refreshUrl", "scopes"}.
    flows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    openid_url: str | None = None


# One security requirement: every scheme named must be satisfied (scheme name, scopes).
Requirement = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class OperationPlan:
    """The HTTP side of a tool: method, path template, parameters, body, security."""

    method: str
    path: str
    params: tuple[ParamPlan, ...] = ()
    body: BodyPlan | None = None
    # Media types the operation's success responses declare, for the Accept header.
    accept: str | None = None
    # The operation's security requirements, alternatives in spec order; () when it needs none.
    # An empty requirement among them makes credentials optional.
    security: tuple[Requirement, ...] = ()
    # A server the spec declares for this path or operation alone (None: the API's base URL).
    base_url: str | None = None


ArgumentValidator = Callable[[Mapping[str, Any]], list[str]]
"""Returns one message per invalid field (empty when the arguments are valid)."""


@dataclass(slots=True)
class ToolDefinition:
    """One MCP tool: what clients see plus the plan to call the upstream."""

    name: str
    api: str
    description: str
    input_schema: dict[str, Any]
    operation: OperationPlan
    validate: ArgumentValidator
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    operation_id: str | None = None
    tags: tuple[str, ...] = ()
    # Name of the single property that wraps a non-object JSON result in
    # structured content (None when the documented result is an object).
    result_wrapper: str | None = None
    # The catalog name of a tool a virtual server exposes under another name;
    # policies always speak of catalog names.
    source_name: str | None = None

    @property
    def catalog_name(self) -> str:
        """The tool's name in the catalog, whatever a view calls it."""
        return self.source_name or self.name

    def public(self) -> dict[str, Any]:
        """The tool as clients see it (the `tools/list` entry), as JSON-ready data."""
        out: dict[str, Any] = {"name": self.name}
        if self.title:
            out["title"] = self.title
        out["description"] = self.description
        out["inputSchema"] = self.input_schema
        if self.output_schema is not None:
            out["outputSchema"] = self.output_schema
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem found while ingesting a spec, located by file and JSON pointer."""

    source: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}#{self.pointer}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be served at all; names the file and JSON pointer of the fault."""

    def __init__(self, source: str, pointer: str, message: str) -> None:
        self.source = source
        self.pointer = pointer
        self.message = message
        super().__init__(f"{source}#{pointer}: {message}" if pointer else f"{source}: {message}")


@dataclass(frozen=True, slots=True)
class Server:
    """A resolved upstream base URL (spec `servers` or config override)."""

    url: str
    description: str | None = None
