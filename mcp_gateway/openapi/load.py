"""Load OpenAPI documents from files or URLs (YAML or JSON) and resolve `$ref`s.

References are resolved lazily through `Resolver`, keyed by (document URI, JSON
pointer), so references to other files and URLs work, and circular references
are never expanded: the schema converter turns them into `$defs`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import httpx2
import yaml

from mcp_gateway import yaml12
from mcp_gateway.definitions import SpecError

MAX_SPEC_BYTES = 200 * 1024 * 1024
FETCH_TIMEOUT = 30.0


_FLOW_YAML = re.compile(r"\{\s*[^\s\"'{}\[\],]")


UPLOAD_SCHEME = "upload"
"""Scheme of specs given as text (admin uploads): `upload:<api name>`."""


def to_uri(location: str, base: Path | None = None) -> str:
    """An absolute URI for a file path or URL (relative paths against `base` or the CWD)."""
    if urlsplit(location).scheme in ("http", "https", "file", UPLOAD_SCHEME):
        return location
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path.resolve().as_uri()


def display_name(uri: str) -> str:
    """How a document is named in messages: a file path for file URIs, else the URL."""
    if uri.startswith("file://"):
        return unquote(urlsplit(uri).path)
    return uri


def parse_document(text: str | bytes, source: str) -> Any:
    """Parse JSON or YAML text; errors name the source and the line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SpecError(source, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            # JSON is YAML too, but YAML's messages for broken JSON are worse (and YAML would
            # quietly accept some broken JSON). Flow-style YAML with unquoted keys
            # (`{openapi: 3.0.3, ...}`) also starts with a brace: that one is read as YAML.
            if not _FLOW_YAML.match(stripped):
                raise SpecError(
                    source, "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
    try:
        return yaml12.load(text)
    except yaml.YAMLError as exc:
        raise SpecError(source, "", yaml12.describe_error(exc)) from None


def fetch(uri: str) -> bytes:
    """Read a document from a file URI or an HTTP(S) URL, with a size cap."""
    scheme = urlsplit(uri).scheme
    source = display_name(uri)
    if scheme == "file":
        path = Path(unquote(urlsplit(uri).path))
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise SpecError(source, "", f"larger than {MAX_SPEC_BYTES} bytes")
            return path.read_bytes()
        except FileNotFoundError:
            raise SpecError(source, "", "file not found") from None
        except IsADirectoryError:
            raise SpecError(source, "", "is a directory, not a spec file") from None
        except OSError as exc:
            raise SpecError(source, "", f"cannot read: {exc.strerror}") from None
    if scheme in ("http", "https"):
        try:
            accept = {"Accept": "application/json, application/yaml, */*"}
            with (
                httpx2.Client(timeout=FETCH_TIMEOUT, follow_redirects=True) as client,
                client.stream("GET", uri, headers=accept) as resp,
            ):
                if resp.status_code >= 400:
                    raise SpecError(source, "", f"HTTP {resp.status_code} when fetching the spec")
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_SPEC_BYTES:
                        raise SpecError(source, "", f"larger than {MAX_SPEC_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx2.HTTPError as exc:
            raise SpecError(source, "", f"cannot fetch: {type(exc).__name__}: {exc}") from None
    raise SpecError(source, "", f"unsupported URI scheme {scheme!r}")


def escape_pointer_token(token: str) -> str:
    """Escape one JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer_join(pointer: str, *tokens: str | int) -> str:
    """Append reference tokens to a JSON pointer."""
    return pointer + "".join("/" + escape_pointer_token(str(t)) for t in tokens)


def _walk_pointer(doc: Any, pointer: str) -> Any:
    if pointer in ("", "/"):
        return doc
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    node = doc
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if token not in node:
                # YAML may have parsed numeric keys (response codes) as ints.
                if token.isdigit() and int(token) in node:
                    token = int(token)  # type: ignore[assignment]
                else:
                    raise KeyError(pointer)
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or int(token) >= len(node):
                raise KeyError(pointer)
            node = node[int(token)]
        else:
            raise KeyError(pointer)
    return node


@dataclass(frozen=True, slots=True)
class Target:
    """Where a `$ref` points: a document URI, a JSON pointer in it, and the value there."""

    uri: str
    pointer: str
    value: Any

    @property
    def key(self) -> tuple[str, str]:
        return (self.uri, self.pointer)


@dataclass
class Resolver:
    """Resolves `$ref`s across documents, loading other files and URLs on first use."""

    root_uri: str
    documents: dict[str, Any] = field(default_factory=dict)
    loader: Callable[[str], bytes] = fetch
    # (document URI, $ref) -> Target: large specs resolve the same references many times.
    # Cleared when a document is replaced (see `replace`).
    _targets: dict[tuple[str, str], Target] = field(default_factory=dict)

    def document(self, uri: str) -> Any:
        """The parsed document at `uri` (without fragment), loading it once."""
        doc_uri = urldefrag(uri)[0]
        if doc_uri not in self.documents:
            self.documents[doc_uri] = parse_document(self.loader(doc_uri), display_name(doc_uri))
        return self.documents[doc_uri]

    def resolve(self, base_uri: str, ref: str, where: str) -> Target:
        """Resolve `ref` found at JSON pointer `where` of the document `base_uri`."""
        if not isinstance(ref, str):
            raise SpecError(display_name(base_uri), where, "$ref must be a string")
        cache_key = (base_uri.split("#", 1)[0], ref)
        cached = self._targets.get(cache_key)
        if cached is not None:
            return cached
        absolute = urljoin(base_uri, ref) if not ref.startswith("#") else base_uri.split("#")[0] + ref
        doc_uri, fragment = urldefrag(absolute)
        base_scheme, target_scheme = urlsplit(base_uri).scheme, urlsplit(doc_uri).scheme
        if base_scheme != "file" and target_scheme in ("file", ""):
            # A spec from a URL or an upload must not read the gateway's own files
            # (their content would end up in tool schemas that every client can list).
            raise SpecError(
                display_name(base_uri), where, f"$ref {ref!r}: a spec from a URL or an upload cannot reference files"
            )
        try:
            doc = self.document(doc_uri)
        except SpecError as exc:
            raise SpecError(display_name(base_uri), where, f"$ref {ref!r} cannot be loaded: {exc}") from None
        pointer = unquote(fragment)
        try:
            value = _walk_pointer(doc, pointer)
        except KeyError:
            raise SpecError(display_name(base_uri), where, f"$ref {ref!r} points to nothing") from None
        target = self._targets[cache_key] = Target(doc_uri, pointer, value)
        return target

    def replace(self, uri: str, document: Any) -> None:
        """Put `document` in place of the one loaded from `uri` (e.g. converted from Swagger 2.0)."""
        self.documents[urldefrag(uri)[0]] = document
        self._targets.clear()

    def at(self, uri: str, pointer: str) -> Any:
        """The value at an (already unescaped-for-URI) JSON pointer of a loaded document."""
        return _walk_pointer(self.document(uri), pointer)

    def deref(self, base_uri: str, node: Any, where: str) -> Target:
        """Follow a chain of `$ref`s (e.g. a parameter or response reference) to a value."""
        seen: set[tuple[str, str]] = set()
        target = Target(base_uri, where, node)
        while isinstance(target.value, dict) and "$ref" in target.value:
            target = self.resolve(target.uri, target.value["$ref"], target.pointer)
            if target.key in seen:
                raise SpecError(display_name(base_uri), where, "circular $ref chain")
            seen.add(target.key)
        return target


@dataclass
class LoadedSpec:
    """A parsed root document and the resolver for its references."""

    uri: str
    data: dict[str, Any]
    resolver: Resolver

    @property
    def source(self) -> str:
        return display_name(self.uri)


def load_spec(location: str, *, base: Path | None = None, text: str | bytes | None = None) -> LoadedSpec:
    """Load a spec from a path or URL (or from `text`, named by `location`)."""
    uri = to_uri(location, base)
    resolver = Resolver(uri)
    if text is not None:
        resolver.documents[urldefrag(uri)[0]] = parse_document(text, display_name(uri))
    data = resolver.document(uri)
    if not isinstance(data, dict):
        raise SpecError(display_name(uri), "", "the document is not a JSON/YAML object")
    return LoadedSpec(uri=uri, data=data, resolver=resolver)
