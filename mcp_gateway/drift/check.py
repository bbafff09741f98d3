"""Check one sampled response against its operation in the spec, with openapi-core.

One `ApiChecker` per served API, made on its first sample (in the drift worker thread): it
reads the spec again (file, URL, or the uploaded text) and builds openapi-core's `OpenAPI`
once; each sample then costs one response validation. Swagger 2.0 specs are checked against
their OpenAPI 3.0 conversion, the model the tools were made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.templating.paths.iterators import SimplePathsIterator, SimpleServersIterator

from mcp_gateway.catalog import ApiEntry
from mcp_gateway.drift.describe import findings
from mcp_gateway.drift.sample import Sample
from mcp_gateway.openapi import swagger2
from mcp_gateway.openapi.documents import schema_path
from mcp_gateway.openapi.load import load_spec
from mcp_gateway.openapi.tools import spec_version
from mcp_gateway.store.drift import Finding


class _OperationFinder(APICallPathFinder):
    """Finds an operation by its path template alone. The gateway knows which operation it
    called, and the API's base URL may be configured away from the spec's servers."""

    paths_iterator = SimplePathsIterator("paths")
    servers_iterator = SimpleServersIterator()


@dataclass(slots=True)
class _Called:
    """The request side openapi-core needs to find the operation: method and path template."""

    method: str
    path: str
    host_url: str = ""
    parameters: RequestParameters = field(default_factory=RequestParameters)
    body: bytes | None = None
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class _Received:
    status_code: int
    content_type: str
    headers: Mapping[str, str]
    data: bytes | None


class ApiChecker:
    """openapi-core's response validator for one API's spec, built once."""

    def __init__(self, entry: ApiEntry, spec_text: str | None = None) -> None:
        """Blocking: loads the spec (and the documents it references)."""
        self.entry = entry
        spec = load_spec(entry.config.spec, text=spec_text)
        root: dict[str, Any] = spec.data
        if spec_version(spec.data, spec.source) == "2.0":
            root = swagger2.convert(spec.data)
            spec.resolver.replace(spec.uri, root)
        # No spec validation here: ingest serves specs with small faults, and so does this check.
        config = Config(spec_validator_cls=None, path_finder_cls=_OperationFinder)
        self._validator = OpenAPI(schema_path(spec, root), config=config).response_validator

    def check(self, sample: Sample) -> list[Finding]:
        """What is wrong with the sampled response, without any of its values; [] when it conforms."""
        called = _Called(sample.operation.method.lower(), sample.operation.path)
        received = _Received(sample.status, sample.content_type.lower(), sample.headers, sample.body or None)
        out: list[Finding] = []
        for error in self._validator.iter_errors(called, received):
            out.extend(findings(error, sample.status, sample.content_type))
        return list(dict.fromkeys(out))
