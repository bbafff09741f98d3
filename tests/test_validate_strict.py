"""`apis validate --strict` and `POST /admin/validate {"strict": true}`: spec errors from
openapi-spec-validator, with JSON pointers, over real files, real HTTP and a real gateway."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.openapi.strict import MAX_PROBLEMS
from tests.conftest import ADMIN_TOKEN, ECHO_SPEC, GatewayFactory
from tests.servers import serve_in_thread
from tests.test_cli import cli

BUNDLED = Path(__file__).resolve().parent.parent / "mcp_gateway" / "openapi_specs"

# Four faults: info without version, a parameter `in` that does not exist, a duplicate
# operationId, and (in the referenced file) a schema whose type is no JSON type.
BROKEN_ROOT = """\
openapi: 3.0.3
info: {title: broken}
servers: [{url: "https://api.example.com"}]
paths:
  /pets:
    get:
      operationId: listPets
      parameters:
        - {name: limit, in: querystring, schema: {type: integer}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "schemas.yaml#/Pet"}
  /cats:
    get:
      operationId: listPets
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "schemas.yaml#/Pet"}
"""
BROKEN_SCHEMAS = "Pet:\n  type: objekt\n  properties:\n    id: {type: integer}\n"


def write_broken(folder: Path) -> Path:
    (folder / "schemas.yaml").write_text(BROKEN_SCHEMAS)
    root = folder / "broken.yaml"
    root.write_text(BROKEN_ROOT)
    return root


def test_strict_lists_every_error_with_its_pointer_and_exits_1(tmp_path: Path) -> None:
    spec = write_broken(tmp_path)
    out = cli("apis", "validate", str(spec), "--strict", data_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "spec errors (OpenAPI 3.0, openapi-spec-validator): 4" in out.stdout
    assert '/info: "version" is a required property' in out.stdout
    assert "/paths/~1pets/get/parameters/0: " in out.stdout and "oneOf" in out.stdout
    assert "Operation ID 'listPets'" in out.stdout and "is not unique" in out.stdout
    # The fault in the referenced document is found too (the validator follows the $ref).
    assert "'objekt'" in out.stdout
    # What validate printed before is still there: the tools.
    assert "listPets" in out.stdout and "tools:" in out.stdout


def test_without_strict_the_same_spec_is_served_leniently(tmp_path: Path) -> None:
    out = cli("apis", "validate", str(write_broken(tmp_path)), data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "spec errors" not in out.stdout and "openapi-spec-validator" not in out.stdout


def test_strict_json_has_the_errors_and_the_tools(tmp_path: Path) -> None:
    out = cli("apis", "validate", str(write_broken(tmp_path)), "--strict", "--json", data_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    strict = data["strict"]
    assert strict["valid"] is False and strict["error_count"] == 4 and strict["standard"] == "OpenAPI 3.0"
    pointers = [e["pointer"] for e in strict["errors"]]
    assert "/info" in pointers and "/paths/~1pets/get/parameters/0" in pointers
    assert all(set(e) == {"pointer", "message"} for e in strict["errors"])
    assert [t["name"] for t in data["tools"]] == ["listPets"]  # /pets is skipped by ingest: bad parameter


@pytest.mark.parametrize(
    ("spec", "standard"),
    [
        (BUNDLED / "petstore-swagger2.yaml", "Swagger 2.0"),
        (BUNDLED / "httpbin.json", "OpenAPI 3.0"),
        (ECHO_SPEC, "OpenAPI 3.1"),
    ],
)
def test_valid_specs_of_each_version_pass(tmp_path: Path, spec: Path, standard: str) -> None:
    out = cli("apis", "validate", str(spec), "--strict", data_dir=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"spec: valid {standard} (openapi-spec-validator)" in out.stdout


def test_swagger2_errors_point_into_the_2_0_document(tmp_path: Path) -> None:
    spec = tmp_path / "sw.yaml"
    spec.write_text(
        'swagger: "2.0"\ninfo: {title: t, version: "1"}\npaths:\n  /a:\n    get:\n'
        "      parameters: [{name: q, in: nowhere, type: string}]\n"
        "      responses: {200: {description: ok}}\n"
        "definitions:\n  X: {type: object, required: yes}\n"
    )
    out = cli("apis", "validate", str(spec), "--strict", "--json", data_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    strict = json.loads(out.stdout)["strict"]
    assert strict["standard"] == "Swagger 2.0"
    pointers = {e["pointer"] for e in strict["errors"]}
    # Pointers into the document as written (2.0 layout), not into its 3.0 conversion.
    assert {"/paths/~1a/get/parameters/0", "/definitions/X/required"} <= pointers


def test_huge_numbers_of_errors_are_capped(tmp_path: Path) -> None:
    count = MAX_PROBLEMS + 30
    paths = "\n".join(f"  /p{i}:\n    get:\n      responses: {{'200': {{descriptio: x}}}}" for i in range(count))
    spec = tmp_path / "many.yaml"
    spec.write_text(f"openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\npaths:\n{paths}\n")
    out = cli("apis", "validate", str(spec), "--strict", data_dir=tmp_path)
    assert out.returncode == 1
    listed = [line for line in out.stdout.splitlines() if line.startswith("  /paths/")]
    assert len(listed) == MAX_PROBLEMS
    total = int(out.stdout.split("openapi-spec-validator): ", 1)[1].split()[0])
    assert total >= count  # each response lacks `description` (and may have more errors)
    assert f"... and {total - MAX_PROBLEMS} more" in out.stdout
    data = json.loads(cli("apis", "validate", str(spec), "--strict", "--json", data_dir=tmp_path).stdout)
    assert data["strict"]["error_count"] == total and len(data["strict"]["errors"]) == MAX_PROBLEMS


def spec_server(documents: dict[str, str], fetched: Counter[str]) -> Starlette:
    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        fetched[name] += 1
        if name not in documents:
            return Response("not found", status_code=404)
        return Response(documents[name], media_type="application/yaml")

    return Starlette(routes=[Route("/specs/{name}", serve)])


def test_external_documents_are_fetched_once_for_both_checks(tmp_path: Path) -> None:
    fetched: Counter[str] = Counter()
    app = spec_server({"broken.yaml": BROKEN_ROOT, "schemas.yaml": BROKEN_SCHEMAS}, fetched)
    with serve_in_thread(app) as base:
        out = cli("apis", "validate", f"{base}/specs/broken.yaml", "--strict", data_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "'objekt'" in out.stdout  # the referenced document was validated
    assert fetched == Counter({"broken.yaml": 1, "schemas.yaml": 1})


def test_strict_errors_go_through_the_admin_api(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    secret_file = tmp_path / "private.yaml"
    secret_file.write_text("Pet:\n  type: string\n  description: gateway-private-8d1e\n")
    uploaded = BROKEN_ROOT.replace("schemas.yaml#/Pet", secret_file.as_uri() + "#/Pet")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with gateway_factory() as (url, _):
        admin = url.rsplit("/mcp", 1)[0] + "/admin"
        checked = httpx2.post(f"{admin}/validate", headers=headers, json={"spec_content": uploaded, "strict": True})
        assert checked.status_code == 200, checked.text
        body = checked.json()
        # Both operations are skipped by ingest: one has a bad parameter, the other a file $ref.
        assert body["tools"] == [] and any("cannot reference files" in w for w in body["warnings"])
        strict = body["strict"]
        assert strict["valid"] is False
        pointers = [e["pointer"] for e in strict["errors"]]
        assert "/info" in pointers and "/paths/~1pets/get/parameters/0" in pointers
        # An upload cannot make the gateway read its own files, in strict mode either.
        assert any("cannot reference files" in e["message"] for e in strict["errors"])
        assert "gateway-private-8d1e" not in checked.text
        plain = httpx2.post(f"{admin}/validate", headers=headers, json={"spec_content": uploaded})
        assert plain.status_code == 200 and "strict" not in plain.json()
        valid = httpx2.post(f"{admin}/validate", headers=headers, json={"spec": str(ECHO_SPEC), "strict": True})
        assert valid.json()["strict"] == {
            "source": str(ECHO_SPEC),
            "standard": "OpenAPI 3.1",
            "valid": True,
            "error_count": 0,
            "error_count_capped": False,
            "errors": [],
        }
        wrong = httpx2.post(f"{admin}/validate", headers=headers, json={"spec": str(ECHO_SPEC), "strict": "yes"})
        assert wrong.status_code == 400 and "strict" in wrong.json()["error"]
        unservable = httpx2.post(
            f"{admin}/validate", headers=headers, json={"spec_content": "openapi: 3.0.3\npaths: 5\n", "strict": True}
        )
        assert unservable.status_code == 422
        assert unservable.json()["strict"]["error_count"] >= 1 and unservable.json()["pointer"] == "/paths"
