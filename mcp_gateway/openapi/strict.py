"""Strict validation: every way a spec breaks the OpenAPI / Swagger specification, by openapi-spec-validator.

Ingest is lenient on purpose (it serves specs with small faults and reports what it skipped);
`apis validate --strict` and `POST /admin/validate {"strict": true}` add this report, so a spec's
author can fix the document itself. Bounded for huge specs: the first `limit` problems are kept,
and the rest only counted (up to `count_limit`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from openapi_spec_validator import OpenAPIV2SpecValidator, OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

from mcp_gateway.config import ApiConfig
from mcp_gateway.definitions import SpecError
from mcp_gateway.openapi.documents import schema_path, spec_error_in
from mcp_gateway.openapi.load import LoadedSpec, load_spec, pointer_join
from mcp_gateway.openapi.tools import IngestResult, ingest, spec_version

MAX_PROBLEMS = 50
MAX_COUNTED = 10_000
MAX_MESSAGE_CHARS = 300

_VALIDATORS = {"2.0": OpenAPIV2SpecValidator, "3.0": OpenAPIV30SpecValidator, "3.1": OpenAPIV31SpecValidator}
# What the specifications' own JSON schemas require at the root: an error against one of those
# schemas locates its fault by a pointer into the document.
_ROOT_FIELDS = {"openapi", "swagger"}
_NAMES = {"2.0": "Swagger 2.0", "3.0": "OpenAPI 3.0", "3.1": "OpenAPI 3.1"}
# `{"in":"querystring",...} is not valid under ...`: the quoted value says less than its location.
_QUOTED_VALUE = re.compile(r"^[\[{].*[\]}] (?=is |does |has )", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One way the document breaks the specification: where (a JSON pointer into it) and what."""

    pointer: str
    message: str

    def public(self) -> dict[str, str]:
        """As JSON."""
        return {"pointer": self.pointer, "message": self.message}


@dataclass
class StrictReport:
    """The problems openapi-spec-validator found: the first ones, and how many in all."""

    source: str
    standard: str
    problems: list[SpecProblem] = field(default_factory=list)
    total: int = 0
    # True when counting stopped at MAX_COUNTED: there are at least `total`.
    total_capped: bool = False

    @property
    def ok(self) -> bool:
        return self.total == 0

    def public(self) -> dict[str, Any]:
        """As JSON (the admin API's and `--json`'s form)."""
        return {
            "source": self.source,
            "standard": self.standard,
            "valid": self.ok,
            "error_count": self.total,
            "error_count_capped": self.total_capped,
            "errors": [p.public() for p in self.problems],
        }


def _message(error: Any) -> str:
    # openapi-spec-validator's messages run on with the failing schema; the first line says it.
    text = str(getattr(error, "message", None) or error).strip().split("\n", 1)[0].strip()
    text = _QUOTED_VALUE.sub("the value here ", text) if len(text) > 120 else text
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text or type(error).__name__


def _located(error: Any) -> SpecProblem:
    path: Iterable[Any] = getattr(error, "absolute_path", None) or ()
    pointer = pointer_join("", *path)
    schema = getattr(error, "schema", None)
    required = schema.get("required") if isinstance(schema, dict) else None
    if not pointer or (isinstance(required, list) and _ROOT_FIELDS & set(map(str, required))):
        return SpecProblem(pointer, _message(error))
    # Found by the walk over schemas (possibly in another document): its path is relative to the
    # schema object, which the validator does not name, so it is no pointer into the document.
    return SpecProblem("", f"in a schema object, at {pointer}: {_message(error)}")


def check_spec(spec: LoadedSpec, *, limit: int = MAX_PROBLEMS, count_limit: int = MAX_COUNTED) -> StrictReport:
    """Validate the loaded document (not a conversion of it) against its version of the
    specification. Blocking and CPU-bound (huge specs take seconds): run it off the event loop,
    and before ingest (which replaces a Swagger 2.0 root with its OpenAPI 3.0 conversion)."""
    try:
        version = spec_version(spec.data, spec.source)
    except SpecError as exc:
        report = StrictReport(spec.source, "OpenAPI", total=1)
        report.problems.append(SpecProblem(exc.pointer, exc.message))
        return report
    report = StrictReport(spec.source, _NAMES[version])
    validator = _VALIDATORS[version](schema_path(spec))
    try:
        for error in validator.iter_errors():
            report.total += 1
            if len(report.problems) < limit:
                report.problems.append(_located(error))
            if report.total >= count_limit:
                report.total_capped = True
                break
    except Exception as exc:
        # An external $ref that cannot be loaded (a SpecError, wrapped by the reference resolver),
        # or the validator's own failure on a malformed document, ends the walk.
        cause = spec_error_in(exc)
        reason = f"{cause.source}: {cause.message}" if cause is not None else f"{type(exc).__name__}: {_message(exc)}"
        report.total += 1
        report.problems.append(SpecProblem("", f"validation stopped: {reason}"))
    return report


@dataclass
class StrictValidation:
    """A spec checked strictly and ingested: the report, and the tools or why there are none."""

    report: StrictReport
    result: IngestResult | None = None
    error: SpecError | None = None


def validate_strictly(api: ApiConfig, *, text: str | bytes | None = None) -> StrictValidation:
    """Load `api.spec` (or `text`) once, check it strictly, then ingest that same loaded document
    (external documents are fetched once for both). A spec that cannot be loaded raises SpecError;
    one that loads but cannot be ingested comes back with `error` set. Blocking: run it in a thread."""
    spec = load_spec(api.spec, text=text)
    out = StrictValidation(check_spec(spec))
    try:
        out.result = ingest(spec, api)
    except SpecError as exc:
        out.error = exc
    return out
