"""A loaded spec as a jsonschema-path `SchemaPath`, the input of openapi-core and openapi-spec-validator.

Their own reference handlers would fetch every external document again (with urllib, without
the size cap) and read local files from specs that came from a URL or an upload. Here every
`$ref` is served by the spec's `Resolver` instead: documents ingest already loaded are reused,
new ones are loaded with the same limits, and the same rule applies: a spec from a URL or an
upload cannot reference files.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from jsonschema_path import SchemaPath

from mcp_gateway.definitions import SpecError
from mcp_gateway.openapi.load import LoadedSpec, display_name


class _EveryScheme(dict[str, Any]):
    """Handlers for every URI scheme: jsonschema-path falls back to urllib for schemes it has no handler for."""

    def __init__(self, handler: Any) -> None:
        super().__init__()
        self._handler = handler

    def __contains__(self, scheme: object) -> bool:
        return True

    def __getitem__(self, scheme: str) -> Any:
        return self._handler


def schema_path(spec: LoadedSpec, root: dict[str, Any] | None = None) -> SchemaPath:
    """`root` (default: the spec's own root document) as a SchemaPath whose `$ref`s to other
    documents are loaded through `spec.resolver`. Blocking (may fetch): run it off the event loop."""
    local_ok = urlsplit(spec.uri).scheme == "file"

    def load(uri: str) -> Any:
        if not local_ok and urlsplit(uri).scheme in ("file", ""):
            raise SpecError(spec.source, "", f"$ref to {uri!r}: a spec from a URL or an upload cannot reference files")
        try:
            return spec.resolver.document(uri)
        except SpecError as exc:
            raise SpecError(display_name(uri), exc.pointer, exc.message) from None

    return SchemaPath.from_dict(spec.data if root is None else root, base_uri=spec.uri, handlers=_EveryScheme(load))


def spec_error_in(exc: BaseException) -> SpecError | None:
    """The SpecError behind an exception from openapi-core or openapi-spec-validator (their reference
    resolver wraps what `schema_path`'s loader raised), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SpecError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
