"""Tests for the ingester (mcp_gateway.openapi): specs on disk or served from loopback in, tools out.

Every result that comes out of `ingest()` here is checked by `check_result`: each input and
output schema is a valid JSON Schema 2020-12 with root type object, every `$ref` points into
the schema's own `$defs`, and tool and argument names are what LLM APIs accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, ToolFilter
from mcp_gateway.definitions import SpecError, ToolDefinition
from mcp_gateway.openapi.load import load_spec
from mcp_gateway.openapi.tools import IngestResult, ingest_api, trim_text
from mcp_gateway.openapi.validation import compile_validator
from mcp_gateway.openapi.wire import HEADER_TEXT
from tests.servers import serve_in_thread

DATA = Path(__file__).parent / "data" / "ingest"
BUNDLED = sorted((Path(__file__).parent.parent / "mcp_gateway" / "openapi_specs").glob("*.*[nl]"))
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ARG_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
OK = {"200": {"description": "ok"}}


# --------------------------------------------------------------------------- helpers


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def check_schema(schema: dict[str, Any]) -> None:
    """A valid 2020-12 schema, root type object, JSON-ready, every $ref into its own $defs."""
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert json.loads(json.dumps(schema, allow_nan=False)) == schema
    defs = schema.get("$defs", {})
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/"), ref
        assert ref[len("#/$defs/") :] in defs, ref


def check_tool(tool: ToolDefinition) -> None:
    assert TOOL_NAME.match(tool.name), tool.name
    check_schema(tool.input_schema)
    assert tool.input_schema["additionalProperties"] is False
    props = tool.input_schema["properties"]
    for name in props:
        assert ARG_NAME.match(name), name
    assert set(tool.input_schema.get("required", [])) <= set(props)
    for plan in tool.operation.params:
        assert plan.arg in props
    body = tool.operation.body
    if body is not None:
        assert (body.arg in props) if body.arg else set(body.fields) <= set(props)
    if tool.output_schema is not None:
        check_schema(tool.output_schema)
        # Non-binding: any object is a valid result.
        assert Draft202012Validator(tool.output_schema).is_valid({"drifted": True})
    json.dumps(tool.public())


def check_result(result: IngestResult) -> IngestResult:
    names = [t.name for t in result.tools]
    assert len(names) == len(set(names)), names
    for tool in result.tools:
        check_tool(tool)
    return result


def api(spec: str | Path, **kw: Any) -> ApiConfig:
    return ApiConfig(name=kw.pop("name", "test"), spec=str(spec), **kw)


def ingest(spec: str | Path, **kw: Any) -> IngestResult:
    return check_result(ingest_api(api(spec, **kw)))


def write(tmp_path: Path, doc: Any, name: str = "spec.yaml") -> Path:
    """Write `doc` (a dict, or raw text) as YAML or JSON depending on the file name."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    elif name.endswith(".json"):
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def oas(paths: Any = None, schemas: dict[str, Any] | None = None, *, version: str = "3.0.3",
        server: str | None = "https://api.example.com/v1", **extra: Any) -> dict[str, Any]:  # fmt: skip
    doc: dict[str, Any] = {"openapi": version, "info": {"title": "Test API", "version": "1.0"}}
    if server is not None:
        doc["servers"] = [{"url": server}]
    if paths is not None:
        doc["paths"] = paths
    if schemas:
        doc.setdefault("components", {})["schemas"] = schemas
    doc.update(extra)
    return doc


def ref(name: str) -> dict[str, str]:
    return {"$ref": "#/components/schemas/" + name}


def json_response(schema: Any, code: str = "200") -> dict[str, Any]:
    return {code: {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def json_body(schema: Any, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def one_tool(tmp_path: Path, op: dict[str, Any], schemas: dict[str, Any] | None = None, *, path: str = "/x",
             method: str = "post", version: str = "3.0.3", **kw: Any) -> ToolDefinition:  # fmt: skip
    """Ingest a spec with a single operation and return its tool."""
    op = {"operationId": "op", "responses": OK, **op}
    result = ingest(write(tmp_path, oas({path: {method: op}}, schemas, version=version)), **kw)
    assert not [i for i in result.issues if "skipped" in i.message], result.issues
    assert len(result.tools) == 1
    return result.tools[0]


def by_name(result: IngestResult) -> dict[str, ToolDefinition]:
    return {t.name: t for t in result.tools}


def valid(schema: dict[str, Any], value: Any) -> bool:
    return Draft202012Validator(schema).is_valid(value)


def file_server(root: Path | None = None, files: dict[str, str] | None = None) -> Starlette:
    """A Starlette app serving the files under `root` (and/or in-memory `files`) at their relative paths."""

    async def serve(request: Request) -> Response:
        rel = request.path_params["path"]
        if files and rel in files:
            return PlainTextResponse(files[rel], media_type="application/yaml")
        if root is not None:
            target = (root / rel).resolve()
            if target.is_file() and target.is_relative_to(root.resolve()):
                return PlainTextResponse(target.read_text(), media_type="application/yaml")
        return PlainTextResponse("not found", status_code=404)

    return Starlette(routes=[Route("/{path:path}", serve)])


# --------------------------------------------------------------------------- loading


def test_yaml_and_json_give_the_same_tools(tmp_path: Path) -> None:
    pet_id = {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}
    doc = oas({"/pets/{petId}": {"get": {"operationId": "getPet", "parameters": [pet_id], "responses": OK}}})
    from_yaml = ingest(write(tmp_path, doc, "a.yaml"))
    from_json = ingest(write(tmp_path, doc, "a.json"))
    assert [t.public() for t in from_yaml.tools] == [t.public() for t in from_json.tools]
    assert from_yaml.tools[0].name == "getPet"
    assert from_yaml.base_url == "https://api.example.com/v1"
    assert (from_yaml.title, from_yaml.version, from_yaml.spec_version) == ("Test API", "1.0", "3.0")


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "openapi: 3.0.3\ninfo:\n  title: x\n  version: 1\npaths:\n  /a: [unclosed\n  /b: {}\n")
    with pytest.raises(SpecError) as err:
        ingest(path)
    assert err.value.source == str(path)
    assert str(path) in str(err.value)
    assert "invalid YAML" in err.value.message
    assert re.search(r"line [67]\b", err.value.message), err.value.message


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "openapi": "3.0.3",\n  "paths": {,}\n}\n', "broken.json")
    with pytest.raises(SpecError) as err:
        ingest(path)
    assert err.value.source == str(path)
    assert "invalid JSON at line 3" in err.value.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "[1, 2]", "just a string\n", "", "42"])
def test_document_that_is_not_an_object(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match="not a JSON/YAML object"):
        ingest(path)


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        ingest(tmp_path / "nope.yaml")
    assert err.value.source == str(tmp_path / "nope.yaml")
    assert "file not found" in err.value.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="directory"):
        ingest(tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "pointer"),
    [("openapi", "4.0.0", "/openapi"), ("openapi", "2.0", "/openapi"), ("openapi", "3.10.0", "/openapi"),
     ("swagger", "1.2", "/swagger")],
)  # fmt: skip
def test_unknown_spec_version(tmp_path: Path, field: str, value: str, pointer: str) -> None:
    path = write(tmp_path, {field: value, "info": {"title": "x", "version": "1"}, "paths": {}})
    with pytest.raises(SpecError) as err:
        ingest(path)
    assert (err.value.source, err.value.pointer) == (str(path), pointer)
    assert value in err.value.message


def test_no_version_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not an OpenAPI document"):
        ingest(write(tmp_path, {"info": {"title": "x"}, "paths": {}}))


def test_unquoted_yaml_versions_are_read_as_text(tmp_path: Path) -> None:
    result = ingest(write(tmp_path, "openapi: 3.0\ninfo: {title: x, version: 1.0}\npaths: {}\n"))
    assert result.spec_version == "3.0"
    result = ingest(write(tmp_path, "swagger: 2.0\ninfo: {title: x, version: 1}\npaths: {}\n"))
    assert result.spec_version == "2.0"


def test_missing_or_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        ingest(write(tmp_path, oas()))
    assert err.value.pointer == "/paths"
    with pytest.raises(SpecError) as err:
        ingest(write(tmp_path, oas(["/a"])))
    assert err.value.pointer == "/paths"
    with pytest.raises(SpecError) as err:
        ingest(write(tmp_path, {"swagger": "2.0", "info": {"title": "x", "version": "1"}}))
    assert err.value.pointer == "/paths"


def test_yaml_scalars_stay_json_values(tmp_path: Path) -> None:
    """Dates stay strings; YAML 1.1 yes/no/on/off and 1:30 are strings too (YAML 1.2, as OpenAPI asks)."""
    text = """
openapi: 3.0.3
info: {title: x, version: 1}
servers: [{url: "https://x.example.com"}]
paths:
  /a:
    get:
      operationId: a
      parameters:
        - {name: since, in: query, schema: {type: string, format: date, default: 2020-01-01}}
        - {name: at, in: query, schema: {type: string, format: date-time, example: 2020-01-01T10:00:00Z}}
        - {name: answer, in: query, schema: {type: string, enum: [yes, no, on, off, y, n]}}
        - {name: flag, in: query, schema: {type: boolean, default: true}}
        - {name: time, in: query, schema: {type: string, default: 1:30}}
      responses:
        200: {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Out"}}}}
components:
  schemas:
    Out:
      type: object
      properties:
        1: {type: integer}
        true: {type: string}
"""
    tool = ingest(write(tmp_path, text)).tools[0]
    props = tool.input_schema["properties"]
    assert props["since"]["default"] == "2020-01-01"
    assert props["at"]["examples"] == ["2020-01-01T10:00:00Z"]
    assert props["answer"]["enum"] == ["yes", "no", "on", "off", "y", "n"]
    assert props["flag"]["default"] is True
    assert props["time"]["default"] == "1:30"
    # Integer-looking response codes and property names are keys like any other.
    assert tool.output_schema is not None
    assert set(tool.output_schema["$defs"]["Out"]["properties"]) == {"1", "true"}


def test_numeric_property_names_in_a_body(tmp_path: Path) -> None:
    text = """
openapi: 3.0.3
info: {title: x, version: "1"}
servers: [{url: "https://x.example.com"}]
paths:
  /a:
    post:
      operationId: a
      requestBody:
        content:
          application/json:
            schema: {type: object, properties: {2024: {type: integer}, name: {type: string}}}
      responses: {200: {description: ok}}
"""
    tool = ingest(write(tmp_path, text)).tools[0]
    assert set(tool.input_schema["properties"]) == {"2024", "name"}
    assert tool.operation.body is not None and tool.operation.body.fields["2024"] == "2024"


def test_flow_style_yaml_that_looks_like_json(tmp_path: Path) -> None:
    text = "{openapi: 3.0.3, info: {title: x, version: '1'}, paths: {/a: {get: {operationId: a, responses: {}}}}}"
    result = ingest(write(tmp_path, text))
    assert [t.name for t in result.tools] == ["a"]


def test_spec_given_as_text(tmp_path: Path) -> None:
    doc = oas({"/a": {"get": {"operationId": "fromText", "responses": OK}}})
    result = check_result(ingest_api(api(tmp_path / "virtual.yaml"), text=yaml.safe_dump(doc)))
    assert [t.name for t in result.tools] == ["fromText"]
    assert result.source == str(tmp_path / "virtual.yaml")


def test_json_with_bom_and_bytes(tmp_path: Path) -> None:
    doc = oas({"/a": {"get": {"operationId": "bom", "responses": OK}}})
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())
    assert [t.name for t in ingest(tmp_path / "bom.json").tools] == ["bom"]
    (tmp_path / "latin1.yaml").write_bytes(b"openapi: 3.0.3\ninfo: {title: caf\xe9}\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        ingest(tmp_path / "latin1.yaml")


def test_load_spec_from_url(tmp_path: Path) -> None:
    doc = oas({"/a": {"get": {"operationId": "remote", "responses": OK}}})
    with serve_in_thread(file_server(files={"spec.json": json.dumps(doc)})) as url:
        loaded = load_spec(url + "/spec.json")
        assert loaded.source == url + "/spec.json"
        assert [t.name for t in ingest(url + "/spec.json").tools] == ["remote"]
        with pytest.raises(SpecError, match="HTTP 404"):
            ingest(url + "/missing.yaml")


# --------------------------------------------------------------------------- $ref


def test_local_refs_for_parameters_bodies_responses_and_path_items(tmp_path: Path) -> None:
    doc = oas(
        {
            "/pets/{petId}": {"$ref": "#/components/pathItems/PetItem"},
            "/pets": {"post": {"operationId": "addPet", "requestBody": {"$ref": "#/components/requestBodies/Pet"},
                               "responses": {"200": {"$ref": "#/components/responses/Pet"}}}},
        },
        {"Pet": {"type": "object", "required": ["name"],
                 "properties": {"name": {"type": "string"}, "tag": {"$ref": "#/components/schemas/Tag"}}},
         "Tag": {"type": "object", "properties": {"label": {"type": "string"}}}},
        version="3.1.0",
    )  # fmt: skip
    doc["components"].update({
        "parameters": {"PetId": {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}},
        "requestBodies": {"Pet": json_body({"$ref": "#/components/schemas/Pet"})},
        "responses": {"Pet": json_response({"$ref": "#/components/schemas/Pet"})["200"]},
        "pathItems": {"PetItem": {"parameters": [{"$ref": "#/components/parameters/PetId"}],
                                  "get": {"operationId": "getPet", "responses": {"200": {
                                      "$ref": "#/components/responses/Pet"}}}}},
    })  # fmt: skip
    tools = by_name(ingest(write(tmp_path, doc)))
    assert set(tools) == {"getPet", "addPet"}
    assert tools["getPet"].operation.params[0].name == "petId"
    assert tools["addPet"].input_schema["properties"]["tag"] == {"$ref": "#/$defs/Tag"}
    assert tools["addPet"].input_schema["required"] == ["name"]
    assert tools["getPet"].output_schema["anyOf"][0] == {"$ref": "#/$defs/Pet"}
    assert set(tools["getPet"].output_schema["$defs"]) == {"Pet", "Tag"}


def test_refs_to_other_files(tmp_path: Path) -> None:
    """Fragments, whole-file refs, refs inside the referenced files, a path item in a sub-folder."""
    result = ingest(DATA / "multi" / "root.yaml")
    assert not result.issues, result.issues
    tools = by_name(result)
    assert set(tools) == {"listPets", "createPet", "getOwner"}

    limit = tools["listPets"].input_schema["properties"]["limit"]
    assert limit == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20,
                     "description": "How many pets to return."}  # fmt: skip
    out = tools["listPets"].output_schema
    assert out["anyOf"][0] == {
        "type": "object",
        "properties": {"result": {"type": "array", "items": {"$ref": "#/$defs/Pet"}}},
    }
    assert set(out["$defs"]) == {"Pet", "Owner", "Tag"}
    assert out["$defs"]["Pet"]["properties"]["id"] == {"type": "integer", "format": "int64", "minimum": 1}
    assert out["$defs"]["Owner"]["properties"]["pets"]["items"] == {"$ref": "#/$defs/Pet"}

    # Whole-file ref: the body is spread; its own relative ref resolves next to it.
    create = tools["createPet"]
    assert set(create.input_schema["properties"]) == {"name", "tag"}
    assert create.input_schema["properties"]["tag"] == {"$ref": "#/$defs/Tag"}
    assert create.input_schema["$defs"] == {"Tag": {"type": "object", "properties": {"label": {"type": "string"}}}}

    # A path item in paths/owner.yaml: its refs are relative to that file, not to root.yaml.
    owner = tools["getOwner"]
    assert owner.operation.path == "/owners/{ownerId}"
    assert owner.input_schema["properties"]["ownerId"]["type"] == "integer"
    assert owner.output_schema["anyOf"][0] == {"$ref": "#/$defs/Owner"}


def test_whole_file_ref_to_a_non_leaf_schema_is_named_after_the_file(tmp_path: Path) -> None:
    write(tmp_path, {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "tree.yaml"}}}},
          "models/tree.yaml")  # fmt: skip
    doc = oas({"/t": {"get": {"operationId": "t", "responses": json_response({"$ref": "models/tree.yaml"})}}})
    tool = ingest(write(tmp_path, doc)).tools[0]
    assert tool.output_schema["anyOf"][0] == {"$ref": "#/$defs/tree"}
    assert tool.output_schema["$defs"]["tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/tree"}


def test_refs_to_a_loopback_server() -> None:
    """The multi-file spec served over HTTP: relative refs inside remote documents resolve remotely."""
    with serve_in_thread(file_server(DATA / "multi")) as url:
        result = ingest(url + "/root.yaml")
        local = ingest(DATA / "multi" / "root.yaml")
    assert not result.issues, result.issues
    assert [t.public() for t in result.tools] == [t.public() for t in local.tools]


def test_file_spec_with_a_ref_to_a_url(tmp_path: Path) -> None:
    files = {"schemas/pet.yaml": "Pet: {type: object, properties: {owner: {$ref: 'owner.yaml#/Owner'}}}\n",
             "schemas/owner.yaml": "Owner: {type: object, properties: {name: {type: string}}}\n"}  # fmt: skip
    with serve_in_thread(file_server(files=files)) as url:
        doc = oas(
            {"/p": {"get": {"operationId": "p", "responses": json_response({"$ref": url + "/schemas/pet.yaml#/Pet"})}}}
        )
        tool = ingest(write(tmp_path, doc)).tools[0]
        missing = oas(
            {"/p": {"get": {"operationId": "p", "responses": json_response({"$ref": url + "/nope.yaml#/X"})}}}
        )
        result = ingest(write(tmp_path, missing, "missing.yaml"))
    assert set(tool.output_schema["$defs"]) == {"Pet", "Owner"}
    assert result.tools == []
    assert "HTTP 404" in result.issues[0].message


def test_recursive_schemas_stay_recursive(tmp_path: Path) -> None:
    schemas = {
        "Node": {"type": "object", "required": ["value"], "properties": {
            "value": {"type": "integer"}, "children": {"type": "array", "items": ref("Node")}}},
        "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}, "n": {"type": "integer"}}},
        "B": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}},
    }  # fmt: skip
    doc = oas({
        "/tree": {"post": {"operationId": "postTree", "requestBody": json_body({"$ref": "#/components/schemas/Node"}),
                           "responses": json_response({"$ref": "#/components/schemas/Node"})}},
        "/ab": {"post": {"operationId": "postAB", "requestBody": json_body({"type": "array", "items": ref("A")}),
                         "responses": json_response({"$ref": "#/components/schemas/B"})}},
    }, schemas)  # fmt: skip
    tools = by_name(ingest(write(tmp_path, doc)))
    tree = tools["postTree"]
    assert tree.input_schema["properties"]["children"] == {"type": "array", "items": {"$ref": "#/$defs/Node"}}
    assert tree.input_schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    deep = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
    assert tree.validate(deep) == []
    errors = tree.validate({"value": 1, "children": [{"value": 2, "children": [{"value": "x"}]}]})
    assert errors and "children/0/children/0/value" in errors[0]

    ab = tools["postAB"]
    assert set(ab.input_schema["$defs"]) == {"A", "B"}
    assert ab.input_schema["$defs"]["B"] == {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}
    assert ab.validate({"body": [{"b": {"a": {"b": {"a": {"n": 1}}}}}]}) == []
    assert ab.validate({"body": [{"b": {"a": {"n": "x"}}}]})
    assert set(ab.output_schema["$defs"]) == {"A", "B"}


def test_dangling_ref_skips_only_that_operation(tmp_path: Path) -> None:
    doc = oas({
        "/pets": {"get": {"operationId": "listPets",
                          "responses": json_response({"$ref": "#/components/schemas/Missing"})},
                  "post": {"operationId": "addPet", "requestBody": json_body({"$ref": "#/components/schemas/Pet"}),
                           "responses": OK}},
        "/other": {"get": {"operationId": "other", "parameters": [{"$ref": "#/components/parameters/Nope"}],
                           "responses": OK}},
        "/third": {"get": {"operationId": "third", "responses": OK}},
    }, {"Pet": {"type": "object", "properties": {"name": {"type": "string"},
                                                 "x": {"$ref": "#/components/schemas/Gone"}}}})  # fmt: skip
    path = write(tmp_path, doc)
    result = ingest(path)
    assert [t.name for t in result.tools] == ["third"]
    issues = {i.pointer: i for i in result.issues}
    assert set(issues) == {
        "/paths/~1pets/get/responses/200/content/application~1json/schema",
        "/components/schemas/Pet/properties/x",
        "/paths/~1other/get/parameters/0",
    }
    for issue in result.issues:
        assert issue.source == str(path)
        assert "skipped" in issue.message and "points to nothing" in issue.message
    # A fault in a shared schema says which operation it cost.
    assert issues["/components/schemas/Pet/properties/x"].message.startswith("operation POST /pets skipped")
    assert (
        "#/components/schemas/Missing"
        in issues["/paths/~1pets/get/responses/200/content/application~1json/schema"].message
    )
    assert str(issues["/components/schemas/Pet/properties/x"]).startswith(f"{path}#/components/schemas/Pet")


def test_faults_in_a_referenced_path_item_are_located_in_its_file(tmp_path: Path) -> None:
    write(tmp_path, {"get": {"operationId": "bad", "responses": json_response({"$ref": "#/Missing"})},
                     "put": {"operationId": "good", "responses": json_response({"$ref": "#/Thing"})},
                     "Thing": {"type": "object", "properties": {"a": {"type": "array", "items": {}}}}},
          "paths/item.yaml")  # fmt: skip
    result = ingest(write(tmp_path, oas({"/items": {"$ref": "paths/item.yaml"}})))
    assert [t.name for t in result.tools] == ["good"]
    assert result.tools[0].output_schema["anyOf"][0] == {"$ref": "#/$defs/Thing"}
    (issue,) = result.issues
    assert issue.source == str(tmp_path / "paths" / "item.yaml")
    assert issue.pointer == "/get/responses/200/content/application~1json/schema"


def test_dangling_ref_in_another_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, {"Pet": {"type": "object", "properties": {"x": {"$ref": "#/Nope"}}}}, "models.yaml")
    doc = oas({"/a": {"get": {"operationId": "a", "responses": json_response({"$ref": "models.yaml#/Pet"})}},
               "/b": {"get": {"operationId": "b", "responses": json_response({"$ref": "absent.yaml#/Pet"})}},
               "/c": {"get": {"operationId": "c", "responses": OK}}})  # fmt: skip
    result = ingest(write(tmp_path, doc))
    assert [t.name for t in result.tools] == ["c"]
    first, second = result.issues
    assert (first.source, first.pointer) == (str(tmp_path / "models.yaml"), "/Pet/properties/x")
    assert second.source == str(tmp_path / "spec.yaml")
    assert "absent.yaml" in second.message and "file not found" in second.message


def test_circular_parameter_refs_give_a_clear_issue(tmp_path: Path) -> None:
    doc = oas({"/a": {"get": {"operationId": "a", "parameters": [{"$ref": "#/components/parameters/P1"}],
                              "responses": OK}},
               "/b": {"get": {"operationId": "b", "parameters": [{"$ref": "#/components/parameters/Self"}],
                              "responses": OK}},
               "/c": {"get": {"operationId": "c", "responses": OK}}})  # fmt: skip
    doc["components"] = {"parameters": {"P1": {"$ref": "#/components/parameters/P2"},
                                        "P2": {"$ref": "#/components/parameters/P1"},
                                        "Self": {"$ref": "#/components/parameters/Self"}}}  # fmt: skip
    result = ingest(write(tmp_path, doc))
    assert [t.name for t in result.tools] == ["c"]
    assert [(i.pointer, "circular $ref chain" in i.message) for i in result.issues] == [
        ("/paths/~1a/get/parameters/0", True), ("/paths/~1b/get/parameters/0", True)]  # fmt: skip


def test_circular_schema_alias_does_not_hang(tmp_path: Path) -> None:
    schemas = {"Loop": {"$ref": "#/components/schemas/Loop2"}, "Loop2": {"$ref": "#/components/schemas/Loop"}}
    doc = oas({"/a": {"get": {"operationId": "a", "responses": json_response({"$ref": "#/components/schemas/Loop"})}},
               "/b": {"get": {"operationId": "b", "responses": OK}}}, schemas)  # fmt: skip
    result = ingest(write(tmp_path, doc))
    assert [t.name for t in result.tools] == ["b"]
    (issue,) = result.issues
    assert "circular $ref chain" in issue.message and issue.pointer.startswith("/components/schemas/Loop")


def test_undeclared_path_parameters_are_added(tmp_path: Path) -> None:
    op = {"parameters": [{"name": "owner", "in": "path", "required": True, "schema": {"type": "integer"}},
                         {"name": "q", "in": "query", "schema": {"type": "string"}}]}  # fmt: skip
    doc = oas({"/owners/{owner}/pets/{petId}/{petId}": {"get": {"operationId": "op", **op, "responses": OK}}})
    result = ingest(write(tmp_path, doc))
    tool = result.tools[0]
    assert [(p.arg, p.location, p.required) for p in tool.operation.params] == [
        ("owner", "path", True), ("petId", "path", True), ("q", "query", False)]  # fmt: skip
    # (Not "." nor "..": filling a whole path segment, they would make a dot segment.)
    assert tool.input_schema["properties"]["petId"] == {"type": "string", "minLength": 1, "not": {"enum": [".", ".."]}}
    assert tool.input_schema["required"] == ["owner", "petId"]
    (issue,) = result.issues
    assert issue.pointer == "/paths/~1owners~1{owner}~1pets~1{petId}~1{petId}/get" and "petId" in issue.message


def test_broken_path_items_and_parameters(tmp_path: Path) -> None:
    doc = oas({
        "/gone": {"$ref": "#/components/pathItems/Gone"},
        "/noname": {"get": {"operationId": "noname", "parameters": [{"in": "query"}], "responses": OK}},
        "/body": {"get": {"operationId": "bodyIn30", "parameters": [{"name": "b", "in": "body"}], "responses": OK}},
        "/fine": {"get": {"operationId": "fine", "responses": OK}},
        "x-internal": {"get": {"operationId": "extension", "responses": OK}},
        "no-slash": {"get": {"operationId": "noSlash", "responses": OK}},
    })  # fmt: skip
    result = ingest(write(tmp_path, doc))
    assert [t.name for t in result.tools] == ["fine"]
    assert [i.pointer for i in result.issues] == [
        "/paths/~1gone",
        "/paths/~1noname/get/parameters/0",
        "/paths/~1body/get/parameters/0",
        "/paths/no-slash",
    ]
    assert "start with '/'" in result.issues[-1].message


def test_malformed_operation_parts_do_not_sink_the_api(tmp_path: Path) -> None:
    doc = oas({
        "/a": {"get": {"operationId": "a", "parameters": [{"name": 5, "in": "header", "schema": {"type": "string"}}],
                       "responses": OK}},
        "/b": {"post": {"operationId": "b", "requestBody": ["not", "an", "object"], "responses": {"200": "nope"}}},
        "/c": {"get": {"operationId": "c", "tags": "not-a-list", "summary": 3, "responses": []}},
        "/d": {"get": {"operationId": "d", "parameters": [{"name": "p", "in": "query", "style": 5}],
                       "responses": OK}},
    })  # fmt: skip
    result = ingest(write(tmp_path, doc))
    assert {"a", "b", "c"} <= set(by_name(result))
    assert by_name(result)["a"].input_schema["properties"] == {"5": {"type": "string", "pattern": HEADER_TEXT}}


# --------------------------------------------------------------------------- schema conversion


def test_nullable_30(tmp_path: Path) -> None:
    schemas = {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}}
    body = {"type": "object", "properties": {
        "typed": {"type": "string", "nullable": True},
        "enum": {"type": "string", "enum": ["a", "b"], "nullable": True},
        "ref": {"$ref": "#/components/schemas/Pet", "nullable": True},
        "all": {"allOf": [{"$ref": "#/components/schemas/Pet"}], "nullable": True},
        "typed_all": {"type": "object", "allOf": [{"$ref": "#/components/schemas/Pet"}], "nullable": True},
        "not_null": {"type": "integer", "nullable": False},
    }}  # fmt: skip
    tool = one_tool(tmp_path, {"requestBody": json_body(body)}, schemas)
    props = tool.input_schema["properties"]
    assert props["typed"] == {"type": ["string", "null"]}
    assert props["enum"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert props["not_null"] == {"type": "integer"}
    for name in ("typed", "enum", "ref", "all", "typed_all"):
        assert tool.validate({name: None}) == [], name
    assert tool.validate({"not_null": None})
    assert tool.validate({"ref": {"name": "rex"}}) == []
    assert tool.validate({"all": {"name": "rex"}}) == []
    assert tool.validate({"typed_all": {"name": "rex"}}) == []
    assert tool.validate({"ref": {"name": 5}})
    assert tool.validate({"all": {"name": 5}})
    assert tool.validate({"typed_all": "text"})


def test_exclusive_bounds_30_and_31(tmp_path: Path) -> None:
    body = {"type": "object", "properties": {
        "gt": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        "lt": {"type": "number", "maximum": 10, "exclusiveMaximum": True},
        "ge": {"type": "number", "minimum": 0, "exclusiveMinimum": False},
    }}  # fmt: skip
    props = one_tool(tmp_path, {"requestBody": json_body(body)}).input_schema["properties"]
    assert props["gt"] == {"type": "number", "exclusiveMinimum": 0}
    assert props["lt"] == {"type": "number", "exclusiveMaximum": 10}
    assert props["ge"] == {"type": "number", "minimum": 0}
    body31 = {"type": "object", "properties": {"gt": {"type": "number", "exclusiveMinimum": 0}}}
    props = one_tool(tmp_path, {"requestBody": json_body(body31)}, version="3.1.0").input_schema["properties"]
    assert props["gt"] == {"type": "number", "exclusiveMinimum": 0}


def test_example_discriminator_and_extensions(tmp_path: Path) -> None:
    schemas = {
        "Cat": {"type": "object", "properties": {"kind": {"type": "string"}, "meow": {"type": "boolean"}}},
        "Dog": {"type": "object", "properties": {"kind": {"type": "string"}, "bark": {"type": "boolean"}}},
    }
    body = {"type": "object", "x-internal": True, "properties": {
        "name": {"type": "string", "example": "rex", "x-order": 1, "xml": {"name": "n"}, "title": "Name"},
        "pet": {"oneOf": [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}],
                "discriminator": {"propertyName": "kind"}},
        "plain_one_of": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    }}  # fmt: skip
    tool = one_tool(tmp_path, {"requestBody": json_body(body)}, schemas)
    props = tool.input_schema["properties"]
    assert props["name"] == {"type": "string", "examples": ["rex"]}
    assert props["pet"] == {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}
    assert props["plain_one_of"] == {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    # A value matching both branches (neither forbids extra properties) is fine.
    assert tool.validate({"pet": {"kind": "cat", "meow": True}}) == []
    assert "x-" not in json.dumps(tool.input_schema)


def test_read_only_and_write_only(tmp_path: Path) -> None:
    schemas = {"User": {"type": "object", "required": ["id", "name", "password"], "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string"},
        "password": {"type": "string", "writeOnly": True},
        "created": {"$ref": "#/components/schemas/Stamp"},
        "nested": {"type": "object", "required": ["etag"], "properties": {"etag": {"type": "string", "readOnly": True},
                                                                          "note": {"type": "string"}}},
    }}, "Stamp": {"type": "string", "format": "date-time", "readOnly": True}}  # fmt: skip
    tool = one_tool(tmp_path, {"requestBody": json_body({"$ref": "#/components/schemas/User"}),
                               "responses": json_response({"$ref": "#/components/schemas/User"})}, schemas)  # fmt: skip
    inp = tool.input_schema
    assert set(inp["properties"]) == {"name", "password", "nested"}
    assert inp["required"] == ["name", "password"]
    assert inp["properties"]["nested"] == {"type": "object", "properties": {"note": {"type": "string"}}}
    out_user = tool.output_schema["$defs"]["User"]
    assert set(out_user["properties"]) == {"id", "name", "created", "nested"}
    assert out_user["required"] == ["id", "name"]


def test_binary_and_byte_formats(tmp_path: Path) -> None:
    body = {"type": "object", "properties": {"raw": {"type": "string", "format": "binary"},
                                             "b64": {"type": "string", "format": "byte"},
                                             "untyped": {"format": "binary"}}}  # fmt: skip
    props = one_tool(tmp_path, {"requestBody": json_body(body)}).input_schema["properties"]
    for name in ("raw", "b64", "untyped"):
        assert props[name]["type"] == "string"
        assert props[name]["contentEncoding"] == "base64"


def test_31_keywords_pass_through(tmp_path: Path) -> None:
    body = {"type": "object", "$defs": {"Local": {"type": "string", "minLength": 2}}, "properties": {
        "maybe": {"type": ["string", "null"]},
        "fixed": {"const": "v1"},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        "anything": True,
        "nothing": False,
        "local": {"$ref": "#/components/schemas/Holder/$defs/Local"},
        "multi": {"type": "string", "examples": ["a", "b"]},
        "cond": {"type": "object", "if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
    }}  # fmt: skip
    schemas = {"Holder": {"$defs": {"Local": {"type": "string", "minLength": 2}}}}
    tool = one_tool(tmp_path, {"requestBody": json_body(body)}, schemas, version="3.1.0")
    props = tool.input_schema["properties"]
    assert props["maybe"] == {"type": ["string", "null"]}
    assert props["fixed"] == {"const": "v1"}
    assert props["pair"] == {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}
    assert props["anything"] is True and props["nothing"] is False
    assert props["local"] == {"type": "string", "minLength": 2}
    assert props["multi"]["examples"] == ["a", "b"]
    assert tool.validate({"pair": ["a", 1]}) == []
    assert tool.validate({"pair": ["a", 1, 2]})
    assert tool.validate({"nothing": 1})
    assert tool.validate({"cond": {"a": 1}}) and tool.validate({"cond": {"a": 1, "b": 0}}) == []


def test_legacy_tuple_items_become_prefix_items(tmp_path: Path) -> None:
    body = {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": False}
        },
    }
    tool = one_tool(tmp_path, {"requestBody": json_body(body)}, version="3.1.0")
    assert tool.input_schema["properties"]["pair"] == {
        "type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}  # fmt: skip
    assert tool.validate({"pair": ["a", 1]}) == []
    assert tool.validate({"pair": [1, "a"]})
    assert tool.validate({"pair": ["a", 1, 2]})


def test_invalid_keyword_values_are_dropped_not_passed_on(tmp_path: Path) -> None:
    """Common spec mistakes must not produce an invalid JSON Schema (clients reject the whole list)."""
    body = {"type": "object", "required": ["a", "a", "b"], "properties": {
        "a": {"type": "string", "required": True},
        "b": {"type": "integer", "minimum": "0", "maxLength": -1, "multipleOf": 0},
        "c": {"anyOf": [], "description": 42, "enum": "x"},
        "d": {"type": "string", "format": 7, "pattern": 3, "examples": {"one": {"value": "x"}}},
        "e": {"type": "int"},
        "f": {"allOf": [{"type": "string"}], "oneOf": []},
        "g": {"type": ["string", "string"], "uniqueItems": "yes"},
    }}  # fmt: skip
    doc = oas({"/x": {"post": {"operationId": "op", "requestBody": json_body(body), "responses": OK}}})
    result = ingest(write(tmp_path, doc))
    tool = result.tools[0]
    props = tool.input_schema["properties"]
    assert tool.input_schema["required"] == ["a", "b"]
    # Each dropped value is reported where it is (once).
    base = "/paths/~1x/post/requestBody/content/application~1json/schema/properties"
    pointers = [i.pointer for i in result.issues if i.pointer.startswith(base)]
    assert len(pointers) == len(set(pointers))
    assert {base + "/a/required", base + "/b/minimum", base + "/c/description", base + "/d/examples"} <= set(pointers)
    assert props["a"] == {"type": "string"}
    assert props["b"] == {"type": "integer"}
    assert props["c"] == {}
    assert props["d"] == {"type": "string"}
    assert props["e"] == {}
    assert props["f"] == {"allOf": [{"type": "string"}]}
    assert props["g"] == {"type": ["string"]}


def test_webhooks_only_31_spec(tmp_path: Path) -> None:
    doc = oas(version="3.1.0", webhooks={"newPet": {"post": {"requestBody": json_body({"type": "object"}),
                                                             "responses": OK}}})  # fmt: skip
    result = ingest(write(tmp_path, doc))
    assert result.tools == [] and result.issues == []
    doc["paths"] = {"/a": {"get": {"operationId": "a", "responses": OK}}}
    assert [t.name for t in ingest(write(tmp_path, doc)).tools] == ["a"]


def test_only_referenced_defs_travel_with_a_tool(tmp_path: Path) -> None:
    schemas: dict[str, Any] = {
        f"Unrelated{i}": {"type": "object", "properties": {"v": {"type": "integer"},
                                                           "next": {"$ref": f"#/components/schemas/Unrelated{i + 1}"}}}
        for i in range(50)
    }  # fmt: skip
    schemas["Unrelated50"] = {"type": "object", "properties": {"end": {"type": "boolean"}}}
    schemas["Pet"] = {"type": "object", "properties": {"owner": {"$ref": "#/components/schemas/Owner"}}}
    schemas["Owner"] = {"type": "object", "properties": {"name": {"type": "string"}}}
    schemas["Order"] = {"type": "object", "properties": {"pet": {"$ref": "#/components/schemas/Pet"}}}
    schemas["Name"] = {"type": "string", "minLength": 1}  # a leaf: inlined, no def
    doc = oas({
        "/pets": {"post": {"operationId": "addPet", "requestBody": json_body({
            "type": "object", "properties": {"pet": {"$ref": "#/components/schemas/Pet"},
                                             "name": {"$ref": "#/components/schemas/Name"}}}), "responses": OK}},
        "/orders": {"get": {"operationId": "getOrder", "responses": json_response(ref("Order"))}},
        "/chain": {"get": {"operationId": "chain", "responses": json_response(ref("Unrelated48"))}},
        "/none": {"get": {"operationId": "none", "responses": json_response({"type": "object"})}},
    }, schemas)  # fmt: skip
    tools = by_name(ingest(write(tmp_path, doc)))
    assert set(tools["addPet"].input_schema["$defs"]) == {"Pet", "Owner"}
    assert tools["addPet"].input_schema["properties"]["name"] == {"type": "string", "minLength": 1}
    assert set(tools["getOrder"].output_schema["$defs"]) == {"Order", "Pet", "Owner"}
    assert set(tools["chain"].output_schema["$defs"]) == {"Unrelated48", "Unrelated49", "Unrelated50"}
    assert "$defs" not in tools["none"].output_schema
    assert "$defs" not in tools["none"].input_schema


def test_def_names_are_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, {"Pet": {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}},
          "v1.yaml")  # fmt: skip
    write(tmp_path, {"Pet": {"type": "object", "properties": {"b": {"type": "array", "items": {"type": "string"}}}}},
          "v2.yaml")  # fmt: skip
    doc = oas({"/a": {"get": {"operationId": "a", "responses": json_response({"type": "object", "properties": {
        "one": {"$ref": "v1.yaml#/Pet"}, "two": {"$ref": "v2.yaml#/Pet"}}})}}})  # fmt: skip
    out = ingest(write(tmp_path, doc)).tools[0].output_schema
    assert out["anyOf"][0]["properties"] == {"one": {"$ref": "#/$defs/Pet"}, "two": {"$ref": "#/$defs/Pet_2"}}
    assert set(out["$defs"]["Pet"]["properties"]) == {"a"}
    assert set(out["$defs"]["Pet_2"]["properties"]) == {"b"}


@pytest.mark.parametrize("spec", BUNDLED, ids=lambda p: p.name)
def test_bundled_specs_give_valid_tools(spec: Path) -> None:
    result = ingest(spec)
    assert result.tools
    assert not [i for i in result.issues if "skipped" in i.message], result.issues
    assert result.base_url and result.base_url.startswith("https://")
    again = ingest(spec)
    assert [t.public() for t in result.tools] == [t.public() for t in again.tools]


def test_all_test_specs_give_valid_tools() -> None:
    for spec in [*DATA.glob("*.yaml"), DATA / "multi" / "root.yaml", Path(__file__).parent / "data" / "echo.yaml"]:
        assert ingest(spec).tools, spec


# --------------------------------------------------------------------------- parameters and bodies


def test_required_path_parameter_cannot_be_empty(tmp_path: Path) -> None:
    op = {"parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "kind", "in": "path", "schema": {"type": "string", "minLength": 0}},
        {"name": "any", "in": "path", "required": True},
        {"name": "num", "in": "path", "required": True, "schema": {"type": "integer"}},
        {"name": "q", "in": "query", "allowEmptyValue": True, "schema": {"type": "string"}},
    ]}  # fmt: skip
    tool = one_tool(tmp_path, op, path="/x/{id}/{kind}/{any}/{num}", method="get")
    props = tool.input_schema["properties"]
    assert tool.input_schema["required"] == ["id", "kind", "any", "num"]
    assert props["id"]["minLength"] == 1 and props["kind"]["minLength"] == 1 and props["any"]["minLength"] == 1
    assert "minLength" not in props["q"]  # allowEmptyValue: "" is a value this query parameter takes
    args = {"id": "a", "kind": "b", "any": "c", "num": 1}
    assert tool.validate(args) == []
    for name in ("id", "kind", "any"):
        errors = tool.validate({**args, name: ""})
        assert errors and errors[0].startswith(name + ":"), errors
    assert all(p.required for p in tool.operation.params if p.location == "path")


def test_argument_schemas_say_what_reaches_the_wire(tmp_path: Path) -> None:
    """Values the request builder would refuse, or that would send nothing, are refused by the
    argument schema, so that an agent learns it from the schema (and validation names the field)."""
    op = {"parameters": [
        {"name": "q", "in": "query", "schema": {"type": "string"}},
        {"name": "opt", "in": "query", "schema": {"type": "integer"}},
        {"name": "X-Note", "in": "header", "schema": {"type": "string", "pattern": "^[a-z ]+$"}},
        {"name": "X-Id", "in": "header", "schema": {"type": "string"}},
        {"name": "tags", "in": "query", "required": True, "schema": {"type": "array", "items": {"type": "string"}}},
        {"name": "filter", "in": "query", "required": True, "style": "deepObject",
         "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        {"name": "when", "in": "query", "required": True, "schema": {"type": "string", "nullable": True}},
        {"name": "kind", "in": "query", "required": True,
         "schema": {"type": "string", "nullable": True, "enum": ["a", "b", None]}},
        {"name": "ref", "in": "query", "required": True, "schema": {"$ref": "#/components/schemas/Maybe"}},
        {"name": "X-Meta", "in": "header", "explode": True,
         "schema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}},
        {"name": "X-List", "in": "header", "schema": {"type": "array", "items": {"type": "string"}}},
    ]}  # fmt: skip
    doc = oas({"/x": {"get": {**op, "responses": OK}}})
    doc["components"] = {"schemas": {"Maybe": {"type": "object", "nullable": True, "properties": {}}}}
    tool = by_name(ingest(write(tmp_path, doc)))["get_x"]
    props = tool.input_schema["properties"]
    assert props["q"]["minLength"] == 1 and "minLength" not in props["opt"]
    assert props["X-Id"]["pattern"] == HEADER_TEXT
    assert props["X-Note"] == {"allOf": [{"type": "string", "pattern": "^[a-z ]+$"}, {"pattern": HEADER_TEXT}]}
    # An object sends nothing when empty or when its members are all null (RFC 6570 skips them;
    # a deepObject also skips empty arrays and objects).
    all_null = {"type": "object", "additionalProperties": {"type": "null"}}
    assert props["tags"]["minItems"] == 1 and props["filter"]["not"]["type"] == "object"
    assert props["when"]["type"] == "string"
    assert props["kind"]["type"] == "string" and None not in props["kind"]["enum"]
    assert props["ref"]["not"] == {**all_null, "type": ["object", "null"]}
    good = {"q": "x", "X-Id": "abc", "tags": ["a"], "filter": {"a": "b"}, "when": "now", "kind": "a", "ref": {"k": 1}}
    assert tool.validate(good) == []
    assert tool.validate({**good, "X-Meta": {"a": 1, "b": "ok", "c": "fine"}, "X-List": ["x", "y"]}) == []
    for field, value in (("q", ""), ("X-Id", "caf\u00e9"), ("X-Id", "a\nb"), ("tags", []), ("filter", {}),
                         ("when", None), ("kind", None), ("ref", None), ("ref", {"k": None}),
                         ("filter", {"a": None}), ("filter", {"b": []}), ("X-Meta", {"b": "\u00e9"}),
                         ("X-Meta", {"\u00e9": "x"}), ("X-Meta", {"c": "a\rb"}), ("X-List", ["\u00e9"])):  # fmt: skip
        errors = tool.validate({**good, field: value})
        assert errors and errors[0].startswith(field), (field, value, errors)


def test_multipart_arrays_of_files_and_required_form_arrays(tmp_path: Path) -> None:
    body = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["tags"],
        "properties": {
            "photos": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "avatar": {"type": "string", "contentMediaType": "image/png"},
            "note": {"type": "string", "contentMediaType": "text/plain"},
            "tags": {"type": "array", "items": {"type": "string"}},
        }}}}}  # fmt: skip
    tool = one_tool(tmp_path, {"requestBody": body}, path="/upload", method="post")
    assert tool.operation.body is not None
    assert tool.operation.body.binary_fields == frozenset({"photos", "avatar"})
    assert tool.input_schema["properties"]["tags"]["minItems"] == 1
    assert "minItems" not in tool.input_schema["properties"]["photos"]


def test_parameter_and_body_clashes(tmp_path: Path) -> None:
    op = {
        "parameters": [
            {"name": "id", "in": "cookie", "schema": {"type": "string"}},
            {"name": "id", "in": "header", "schema": {"type": "string"}},
            {"name": "id", "in": "query", "schema": {"type": "string"}},
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "filter[status]", "in": "query", "schema": {"type": "string"}},
            {"name": "Accept", "in": "header", "schema": {"type": "string"}},
            {"name": "Content-Type", "in": "header", "schema": {"type": "string"}},
            {"name": "authorization", "in": "header", "schema": {"type": "string"}},
        ],
        "requestBody": json_body({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"}, "filter_status": {"type": "string"}, "name": {"type": "string"}}}),
    }  # fmt: skip
    tool = one_tool(tmp_path, op, path="/things/{id}")
    params = [(p.arg, p.name, p.location) for p in tool.operation.params]
    assert params == [("id", "id", "path"), ("id_query", "id", "query"), ("filter_status", "filter[status]", "query"),
                      ("id_header", "id", "header"), ("id_cookie", "id", "cookie")]  # fmt: skip
    body = tool.operation.body
    assert body is not None and body.kind == "json" and body.arg is None
    assert dict(body.fields) == {"body_id": "id", "body_filter_status": "filter_status", "name": "name"}
    assert list(tool.input_schema["properties"]) == [
        "id",
        "id_query",
        "filter_status",
        "id_header",
        "id_cookie",
        "body_id",
        "body_filter_status",
        "name",
    ]
    assert tool.input_schema["required"] == ["id", "body_id"]


def test_path_level_parameters_are_overridden_by_operation_ones(tmp_path: Path) -> None:
    doc = oas({"/x/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "v", "in": "query", "schema": {"type": "string"}}],
        "get": {"operationId": "g", "parameters": [{"name": "v", "in": "query", "schema": {"type": "integer"}}],
                "responses": OK}}})  # fmt: skip
    tool = ingest(write(tmp_path, doc)).tools[0]
    assert tool.input_schema["properties"]["v"] == {"type": "integer"}
    assert [p.arg for p in tool.operation.params] == ["id", "v"]


def test_long_clashing_argument_names_stay_within_64(tmp_path: Path) -> None:
    long = "a" * 64
    op = {"parameters": [{"name": long, "in": "query", "schema": {"type": "string"}},
                         {"name": long, "in": "header", "schema": {"type": "string"}},
                         {"name": long, "in": "cookie", "schema": {"type": "string"}}],
          "requestBody": json_body({"type": "object", "properties": {long: {"type": "string"}}})}  # fmt: skip
    tool = one_tool(tmp_path, op)
    assert len(tool.input_schema["properties"]) == 4
    assert all(len(p) <= 64 for p in tool.input_schema["properties"])


@pytest.mark.parametrize(
    ("schema", "media", "expected"),
    [({"type": "array", "items": {"type": "string"}}, "application/json",
      {"type": "array", "items": {"type": "string"}}),
     ({"type": "string"}, "application/json", {"type": "string"}),
     ({"type": "object", "additionalProperties": {"type": "string"}}, "application/json",
      {"type": "object", "additionalProperties": {"type": "string"}}),
     ({"type": "string"}, "text/plain", {"type": "string"}),
     ({}, "text/plain", {"type": "string"}),
     ({"type": "string", "format": "binary"}, "application/octet-stream", None)],
)  # fmt: skip
def test_non_object_bodies_are_one_body_argument(tmp_path: Path, schema: Any, media: str, expected: Any) -> None:
    op = {"requestBody": {"required": True, "description": "The payload.", "content": {media: {"schema": schema}}}}
    tool = one_tool(tmp_path, op)
    body = tool.operation.body
    assert body is not None and body.arg == "body" and not body.fields
    assert body.media_type == media
    assert tool.input_schema["required"] == ["body"]
    prop = tool.input_schema["properties"]["body"]
    if expected is None:
        assert prop["type"] == "string" and prop["contentEncoding"] == "base64"
    else:
        assert prop == {**expected, "description": "The payload."}


def test_body_argument_is_renamed_when_a_parameter_is_called_body(tmp_path: Path) -> None:
    op = {"parameters": [{"name": "body", "in": "query", "schema": {"type": "string"}}],
          "requestBody": json_body({"type": "array", "items": {"type": "integer"}})}  # fmt: skip
    tool = one_tool(tmp_path, op)
    assert tool.operation.body is not None and tool.operation.body.arg == "request_body"


@pytest.mark.parametrize(
    ("offered", "chosen", "kind"),
    [(["application/xml", "multipart/form-data", "application/x-www-form-urlencoded", "application/json"],
      "application/json", "json"),
     (["application/vnd.api+json", "application/json"], "application/json", "json"),
     (["application/xml", "application/vnd.api+json"], "application/vnd.api+json", "json"),
     (["multipart/form-data", "application/x-www-form-urlencoded"], "application/x-www-form-urlencoded", "form"),
     (["text/plain", "multipart/form-data"], "multipart/form-data", "multipart"),
     (["application/octet-stream", "text/plain"], "text/plain", "text"),
     (["application/octet-stream"], "application/octet-stream", "binary"),
     (["*/*"], "application/json", "json")],
)  # fmt: skip
def test_media_type_choice(tmp_path: Path, offered: list[str], chosen: str, kind: str) -> None:
    obj = {"type": "object", "properties": {"a": {"type": "string"}}}
    op = {"requestBody": {"content": {m: {"schema": obj} for m in offered}}}
    body = one_tool(tmp_path, op).operation.body
    assert body is not None and (body.media_type, body.kind) == (chosen, kind)


def test_media_type_choice_is_documented() -> None:
    from mcp_gateway.openapi import tools

    doc = tools.__doc__ or ""
    assert "JSON" in doc and "form-urlencoded" in doc and "multipart" in doc and "binary" in doc
    assert doc.index("form-urlencoded") < doc.index("then multipart") < doc.index("then text")


def test_form_and_multipart_bodies(tmp_path: Path) -> None:
    op = {"requestBody": {"content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "The file."},
            "meta": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "tags": {"type": "array", "items": {"type": "string"}}}},
        "encoding": {"meta": {"contentType": "application/json"},
                     "tags": {"style": "form", "explode": False}}}}}}  # fmt: skip
    tool = one_tool(tmp_path, op)
    body = tool.operation.body
    assert body is not None and body.kind == "multipart"
    assert body.binary_fields == frozenset({"file"})
    assert body.encoding["meta"].content_type == "application/json"
    assert body.encoding["tags"].explode is False
    file_prop = tool.input_schema["properties"]["file"]
    assert file_prop["contentEncoding"] == "base64" and file_prop["description"].startswith("The file. Base64")
    assert tool.input_schema["required"] == ["file"]


def test_content_parameters(tmp_path: Path) -> None:
    op = {"parameters": [{"name": "filter", "in": "query", "content": {
        "application/json": {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}}]}  # fmt: skip
    tool = one_tool(tmp_path, op, method="get")
    plan = tool.operation.params[0]
    assert plan.content_type == "application/json"
    assert tool.input_schema["properties"]["filter"] == {"type": "object", "properties": {"a": {"type": "integer"}}}


# --------------------------------------------------------------------------- Swagger 2.0


def test_swagger2_fixture() -> None:
    result = ingest(DATA / "swagger2.yaml")
    assert not result.issues, result.issues
    assert result.spec_version == "2.0"
    assert result.base_url == "https://store.example.com:8443/v2"
    tools = by_name(result)
    assert set(tools) == {"listPets", "addPet", "uploadPhoto", "updatePetForm", "addNote"}

    # collectionFormat -> style / explode / delimiter.
    plans = {p.name: p for p in tools["listPets"].operation.params}
    assert (plans["csv"].style, plans["csv"].explode, plans["csv"].delimiter) == ("form", False, None)
    assert (plans["ssv"].style, plans["ssv"].explode) == ("spaceDelimited", False)
    assert (plans["pipes"].style, plans["pipes"].explode) == ("pipeDelimited", False)
    assert (plans["tsv"].style, plans["tsv"].explode, plans["tsv"].delimiter) == ("form", False, "\t")
    assert (plans["multi"].style, plans["multi"].explode) == ("form", True)
    assert (plans["ids"].style, plans["ids"].explode, plans["ids"].location) == ("simple", False, "header")
    assert plans["X-Trace"].location == "header"
    props = tools["listPets"].input_schema["properties"]
    assert props["since"] == {"type": ["string", "null"], "format": "date", "minLength": 1}
    assert props["ids"] == {"type": "array", "items": {"type": "integer"}}
    out = tools["listPets"].output_schema
    assert out["anyOf"][0]["properties"]["result"] == {"type": "array", "items": {"$ref": "#/$defs/Pet"}}
    assert tools["listPets"].result_wrapper == "result"

    # A body parameter by $ref to #/parameters: a JSON body, spread; readOnly dropped; x-nullable.
    add = tools["addPet"]
    assert add.operation.body is not None
    assert (add.operation.body.media_type, add.operation.body.kind) == ("application/json", "json")
    assert set(add.input_schema["properties"]) == {"name", "nickname", "owner"}
    assert add.input_schema["required"] == ["name"]
    assert add.input_schema["properties"]["nickname"] == {"type": ["string", "null"]}
    assert add.input_schema["properties"]["owner"] == {"$ref": "#/$defs/Owner"}
    assert add.output_schema["anyOf"][0] == {"$ref": "#/$defs/Pet"}
    assert "id" in add.output_schema["$defs"]["Pet"]["properties"]
    assert add.result_wrapper is None

    # formData + file -> multipart, the file a binary field; a formData $ref is inlined.
    upload = tools["uploadPhoto"]
    assert upload.operation.body is not None
    assert (upload.operation.body.media_type, upload.operation.body.kind) == ("multipart/form-data", "multipart")
    assert upload.operation.body.binary_fields == frozenset({"file"})
    assert set(upload.input_schema["properties"]) == {"petId", "file", "note"}
    assert upload.input_schema["properties"]["file"]["contentEncoding"] == "base64"
    assert upload.input_schema["properties"]["note"]["description"] == "A note about the photo."
    assert upload.input_schema["required"] == ["petId", "file"]

    # formData only -> form-urlencoded (preferred over multipart when both are offered).
    form = tools["updatePetForm"]
    assert form.operation.body is not None
    assert form.operation.body.kind == "form"
    assert form.operation.body.media_type == "application/x-www-form-urlencoded"
    assert form.operation.body.encoding["tags"].explode is True
    # formData with only the global JSON `consumes` is still a form.
    note = tools["addNote"]
    assert note.operation.body is not None and note.operation.body.kind == "form"


def test_swagger2_servers(tmp_path: Path) -> None:
    base = {"swagger": "2.0", "info": {"title": "s", "version": "1"},
            "paths": {"/a": {"get": {"operationId": "a", "responses": {"200": {"description": "ok"}}}}}}  # fmt: skip
    assert ingest(write(tmp_path, {**base, "host": "h.example.com"})).base_url == "https://h.example.com"
    assert ingest(
        write(tmp_path, {**base, "host": "h.example.com", "basePath": "/v1", "schemes": ["http"]})
    ).base_url == ("http://h.example.com/v1")
    # No host: the host that serves the spec.
    result = ingest(write(tmp_path, {**base, "basePath": "/v3"}))
    assert result.base_url is None and any("base_url" in i.message for i in result.issues)
    with serve_in_thread(file_server(files={"specs/s.json": json.dumps({**base, "basePath": "/v3"}),
                                            "specs/t.json": json.dumps(base)})) as url:  # fmt: skip
        assert ingest(url + "/specs/s.json").base_url == url + "/v3"
        assert ingest(url + "/specs/t.json").base_url == url + "/"


def test_swagger2_path_level_body_and_refs(tmp_path: Path) -> None:
    doc = {
        "swagger": "2.0", "info": {"title": "s", "version": "1"}, "host": "h.example.com",
        "parameters": {"Body": {"name": "b", "in": "body", "schema": {"type": "array", "items": {"type": "string"}}},
                       "Limit": {"name": "limit", "in": "query", "type": "integer", "maximum": 10}},
        "responses": {"Ok": {"description": "ok", "schema": {"$ref": "#/definitions/Thing"}}},
        "definitions": {"Thing": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "paths": {"/t": {"parameters": [{"$ref": "#/parameters/Body"}, {"$ref": "#/parameters/Limit"}],
                         "put": {"operationId": "put", "responses": {"200": {"$ref": "#/responses/Ok"}}}}},
    }  # fmt: skip
    tool = ingest(write(tmp_path, doc)).tools[0]
    assert tool.operation.body is not None and tool.operation.body.arg == "body"
    assert tool.input_schema["properties"]["body"] == {"type": "array", "items": {"type": "string"}}
    assert tool.input_schema["properties"]["limit"] == {"type": "integer", "maximum": 10}
    assert tool.output_schema["anyOf"][0] == {"$ref": "#/$defs/Thing"}


def test_bundled_swagger2_petstore() -> None:
    tools = by_name(ingest(Path(__file__).parent.parent / "mcp_gateway" / "openapi_specs" / "petstore-swagger2.yaml"))
    assert len(tools) == 20
    upload = tools["uploadFile"].operation.body
    assert upload is not None and upload.kind == "multipart" and upload.binary_fields == frozenset({"file"})
    form = tools["updatePetWithForm"].operation.body
    assert form is not None and form.kind == "form"
    find = {p.name: p for p in tools["findPetsByStatus"].operation.params}
    assert find["status"].style == "form" and find["status"].explode is True  # collectionFormat: multi


# --------------------------------------------------------------------------- names


def test_tool_names(tmp_path: Path) -> None:
    long_id = "get" + "VeryLongOperationName" * 5
    doc = oas({
        "/repos/{owner}/contents": {"get": {"operationId": "repos/get-content", "responses": OK}},
        "/pets/{petId}": {"get": {"responses": OK}, "delete": {"operationId": "  ", "responses": OK}},
        "/dupe": {"get": {"operationId": "dupe", "responses": OK}, "post": {"operationId": "dupe", "responses": OK},
                  "put": {"operationId": "dupe!", "responses": OK}},
        "/long": {"get": {"operationId": long_id, "responses": OK},
                  "post": {"operationId": long_id + "2", "responses": OK}},
        "/": {"get": {"responses": OK}},
        "/unicode": {"get": {"operationId": "获取", "responses": OK}},
    })  # fmt: skip
    names = [t.name for t in ingest(write(tmp_path, doc)).tools]
    assert names[:5] == ["repos_get-content", "get_pets_petId", "delete_pets_petId", "dupe", "dupe_2"]
    assert names[5] == "dupe_3"
    long_a, long_b = names[6], names[7]
    assert len(long_a) == len(long_b) == 64 and long_a != long_b
    assert long_a.startswith("getVeryLongOperationName")
    assert names[8:] == ["get", "get_unicode"]


def test_prefix_and_determinism(tmp_path: Path) -> None:
    doc = oas({f"/p{i}": {"get": {"operationId": f"op{i % 3}", "responses": OK}} for i in range(6)})
    doc["paths"]["/long"] = {"get": {"operationId": "x" * 80, "responses": OK}}
    path = write(tmp_path, doc)
    first = ingest(path, prefix="gh")
    second = ingest(path, prefix="gh")
    assert [t.name for t in first.tools] == ["gh_op0", "gh_op1", "gh_op2", "gh_op0_2", "gh_op1_2", "gh_op2_2",
                                              first.tools[-1].name]  # fmt: skip
    assert len(first.tools[-1].name) == 64 and first.tools[-1].name.startswith("gh_xxx")
    assert [t.public() for t in first.tools] == [t.public() for t in second.tools]
    assert all(t.api == "test" for t in first.tools)
    # A prefix that is itself too long still gives legal names.
    names = [t.name for t in ingest(path, prefix="p" * 70).tools]
    assert all(TOOL_NAME.match(n) for n in names) and len(set(names)) == len(names)


def test_a_skipped_operation_frees_its_name(tmp_path: Path) -> None:
    doc = oas({"/a": {"get": {"operationId": "same", "parameters": [{"$ref": "#/nope"}], "responses": OK}},
               "/b": {"get": {"operationId": "same", "responses": OK}}})  # fmt: skip
    assert [t.name for t in ingest(write(tmp_path, doc)).tools] == ["same"]


# --------------------------------------------------------------------------- descriptions and annotations


def test_descriptions_titles_and_annotations(tmp_path: Path) -> None:
    long_text = " ".join(f"word{i}" for i in range(100))
    doc = oas({"/r": {
        "get": {"operationId": "g", "summary": "Get it", "description": "Returns\r\n  the   thing.", "responses": OK},
        "head": {"operationId": "h", "description": "Only a description", "responses": OK},
        "put": {"operationId": "p", "summary": "Same", "description": "Same", "responses": OK},
        "post": {"operationId": "c", "summary": "Long", "description": long_text, "responses": OK},
        "delete": {"operationId": "d", "deprecated": True, "responses": OK},
        "patch": {"operationId": "pa", "summary": "S" * 200, "responses": OK},
        "options": {"operationId": "o", "responses": OK},
    }})  # fmt: skip
    tools = by_name(ingest(write(tmp_path, doc), description_max_chars=100))
    assert tools["g"].description == "Get it\n\nReturns\n the thing."
    assert tools["g"].title == "Get it" and tools["g"].annotations["title"] == "Get it"
    assert tools["h"].description == "Only a description" and tools["h"].title is None
    assert "title" not in tools["h"].annotations and "title" not in tools["h"].public()
    assert tools["p"].description == "Same"
    assert tools["d"].description == "[deprecated] DELETE /r"
    c = tools["c"].description
    assert len(c) <= 100 and c.endswith("…") and c.startswith("Long\n\nword0 word1")
    assert re.fullmatch(r"Long\n\n(word\d+ )*word\d+…", c), c
    assert len(tools["pa"].title) <= 120 and tools["pa"].title.endswith("…")

    hints = {n: (t.annotations["readOnlyHint"], t.annotations["destructiveHint"], t.annotations["idempotentHint"],
                 t.annotations["openWorldHint"]) for n, t in tools.items()}  # fmt: skip
    assert hints == {"g": (True, False, True, True), "h": (True, False, True, True), "p": (False, False, True, True),
                     "c": (False, False, False, True), "d": (False, True, True, True),
                     "pa": (False, False, False, True), "o": (True, False, True, True)}  # fmt: skip


def test_trim_text() -> None:
    assert trim_text("short", 100) == "short"
    assert trim_text("a b c", 5) == "a b c"
    cut = trim_text("alpha beta gamma delta", 15)
    assert cut == "alpha beta…" and len(cut) <= 15
    assert trim_text("x" * 50, 10) == "x" * 9 + "…"
    assert trim_text("one\n\n\n\ntwo", 100) == "one\n\ntwo"


def test_tags_and_operation_id_are_kept(tmp_path: Path) -> None:
    tool = one_tool(tmp_path, {"tags": ["pets", "store"]})
    assert tool.tags == ("pets", "store") and tool.operation_id == "op"


# --------------------------------------------------------------------------- filters


@pytest.fixture
def filter_spec(tmp_path: Path) -> Path:
    def op(op_id: str, *tags: str) -> dict[str, Any]:
        return {"operationId": op_id, "tags": list(tags), "responses": OK}

    return write(tmp_path, oas({
        "/pets": {"get": op("listPets", "pets"), "post": op("createPet", "pets", "write")},
        "/pets/{id}": {"get": op("getPet", "pets"), "delete": op("deletePet", "pets", "admin")},
        "/store/orders": {"get": op("listOrders", "store"), "post": op("placeOrder", "store", "write")},
        "/health": {"get": {"responses": OK}},
    }))  # fmt: skip


@pytest.mark.parametrize(
    ("filt", "expected"),
    [({}, ["listPets", "createPet", "getPet", "deletePet", "listOrders", "placeOrder", "get_health"]),
     ({"include_tags": ["pets"]}, ["listPets", "createPet", "getPet", "deletePet"]),
     ({"exclude_tags": ["write", "admin"]}, ["listPets", "getPet", "listOrders", "get_health"]),
     ({"include_tags": ["pets"], "exclude_tags": ["admin"]}, ["listPets", "createPet", "getPet"]),
     ({"include_operations": ["list*"]}, ["listPets", "listOrders"]),
     ({"include_operations": ["get_*"]}, ["get_health"]),
     ({"exclude_operations": ["*Pet", "*Pets"]}, ["listOrders", "placeOrder", "get_health"]),
     ({"include_paths": ["/pets*"]}, ["listPets", "createPet", "getPet", "deletePet"]),
     ({"include_paths": ["/pets/*"]}, ["getPet", "deletePet"]),
     ({"exclude_paths": ["/store/*", "/health"]}, ["listPets", "createPet", "getPet", "deletePet"]),
     ({"methods": ["GET"]}, ["listPets", "getPet", "listOrders", "get_health"]),
     ({"methods": ["post"], "include_tags": ["store"]}, ["placeOrder"]),
     ({"include_operations": ["listPets"], "exclude_operations": ["listPets"]}, []),
     ({"include_paths": ["/pets"], "exclude_tags": ["pets"]}, [])],
)  # fmt: skip
def test_filters(filter_spec: Path, filt: dict[str, Any], expected: list[str]) -> None:
    result = ingest(filter_spec, filter=ToolFilter(**filt))
    assert [t.name for t in result.tools] == expected
    assert result.skipped_by_filter == 7 - len(expected)


def test_filter_sees_names_before_prefix(filter_spec: Path) -> None:
    result = ingest(filter_spec, prefix="api", filter=ToolFilter(include_operations=["get*"]))
    assert [t.name for t in result.tools] == ["api_getPet", "api_get_health"]


# --------------------------------------------------------------------------- output schema


def test_output_schemas(tmp_path: Path) -> None:
    obj = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    doc = oas({"/o": {
        "get": {"operationId": "object", "responses": json_response(obj)},
        "put": {"operationId": "array", "responses": json_response({"type": "array", "items": {"type": "string"}})},
        "post": {"operationId": "scalar", "responses": json_response({"type": "integer"}, "201")},
        "delete": {"operationId": "noContent", "responses": {"204": {"description": "gone"}}},
        "patch": {"operationId": "textOnly", "responses": {"200": {"description": "ok", "content": {
            "text/plain": {"schema": {"type": "string"}}, "text/html": {}}}}},
        "head": {"operationId": "errorsOnly", "responses": {"default": {"description": "x", "content": {
            "application/json": {"schema": obj}}}}},
        "options": {"operationId": "untypedProps",
                    "responses": json_response({"properties": {"a": {"type": "string"}}})},
        "trace": {"operationId": "pickFirst2xx", "responses": {
            "2XX": {"description": "x", "content": {"application/json": {"schema": {"type": "string"}}}},
            "204": {"description": "none"},
            "202": {"description": "accepted", "content": {"application/problem+json": {"schema": obj},
                                                           "application/json": {"schema": obj}}}}},
    }})  # fmt: skip
    tools = by_name(ingest(write(tmp_path, doc)))

    out = tools["object"].output_schema
    assert out == {"type": "object", "anyOf": [obj, {"type": "object"}]}
    assert tools["object"].result_wrapper is None and tools["object"].operation.accept == "application/json"
    assert valid(out, {"id": 1}) and valid(out, {"id": "drifted"}) and not valid(out, [1])

    arr = tools["array"].output_schema
    assert arr["anyOf"][0] == {
        "type": "object",
        "properties": {"result": {"type": "array", "items": {"type": "string"}}},
    }
    assert tools["array"].result_wrapper == "result"
    assert tools["scalar"].output_schema["anyOf"][0]["properties"]["result"] == {"type": "integer"}
    assert tools["noContent"].output_schema is None and tools["noContent"].operation.accept is None
    assert tools["textOnly"].output_schema is None
    assert tools["textOnly"].operation.accept == "text/plain, text/html"
    assert tools["errorsOnly"].output_schema is None
    assert tools["untypedProps"].result_wrapper is None
    pick = tools["pickFirst2xx"]
    assert pick.result_wrapper is None and pick.operation.accept == "application/json"


def test_output_object_by_composition_is_not_wrapped(tmp_path: Path) -> None:
    schemas = {"Base": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    composed = {"allOf": [{"$ref": "#/components/schemas/Base"}, {"properties": {"x": {"type": "string"}}}]}
    tool = one_tool(tmp_path, {"responses": json_response(composed)}, schemas, method="get")
    assert tool.result_wrapper is None
    assert tool.output_schema["anyOf"][0]["allOf"][0] == {"$ref": "#/$defs/Base"}


# --------------------------------------------------------------------------- server URL


def test_server_urls(tmp_path: Path) -> None:
    paths = {"/a": {"get": {"operationId": "a", "responses": OK}}}
    with_vars = oas(paths, server=None, servers=[{
        "url": "https://{region}.api.example.com:{port}/{version}",
        "variables": {"region": {"default": "eu", "enum": ["eu", "us"]}, "port": {"default": "8443"},
                      "version": {"default": "v2"}}}])  # fmt: skip
    assert ingest(write(tmp_path, with_vars)).base_url == "https://eu.api.example.com:8443/v2"

    missing_default = oas(paths, server=None, servers=[{"url": "https://{tenant}.example.com"},
                                                       {"url": "https://fallback.example.com"}])  # fmt: skip
    assert ingest(write(tmp_path, missing_default)).base_url == "https://fallback.example.com"

    relative = write(tmp_path, oas(paths, server="/api/v1"))
    result = ingest(relative)
    assert result.base_url is None
    issue = next(i for i in result.issues if i.pointer == "/servers")
    assert "base_url" in issue.message and issue.source == str(relative)
    overridden = ingest(relative, base_url="https://override.example.com/x")
    assert overridden.base_url == "https://override.example.com/x" and not overridden.issues
    assert ingest(write(tmp_path, oas(paths)), base_url="http://other").base_url == "http://other"

    no_servers = ingest(write(tmp_path, oas(paths, server=None)))
    assert no_servers.base_url is None and any(i.pointer == "/servers" for i in no_servers.issues)
    # No tools, no complaint.
    assert not ingest(write(tmp_path, oas({}, server="/x"))).issues


def test_relative_server_urls_resolve_against_the_spec_url() -> None:
    paths = {"/a": {"get": {"operationId": "a", "responses": OK}}}
    files = {"specs/abs.yaml": yaml.safe_dump(oas(paths, server="/api/v1")),
             "specs/rel.yaml": yaml.safe_dump(oas(paths, server="v2")),
             "specs/none.yaml": yaml.safe_dump(oas(paths, server=None))}  # fmt: skip
    with serve_in_thread(file_server(files=files)) as url:
        assert ingest(url + "/specs/abs.yaml").base_url == url + "/api/v1"
        assert ingest(url + "/specs/rel.yaml").base_url == url + "/specs/v2"
        # No servers: the default server is "/" (OpenAPI 3.x).
        result = ingest(url + "/specs/none.yaml")
        assert result.base_url == url + "/" and not result.issues


# --------------------------------------------------------------------------- the compiled validator


def test_validator_names_the_bad_field(tmp_path: Path) -> None:
    op = {"parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                         {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10}}],
          "requestBody": json_body({"type": "object", "required": ["name"], "properties": {
              "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}})}  # fmt: skip
    tool = one_tool(tmp_path, op, path="/x/{id}")
    assert tool.validate({"id": 1, "name": "n"}) == []
    errors = tool.validate({"id": "one", "name": "n"})
    assert len(errors) == 1 and errors[0].startswith("id:")
    errors = tool.validate({"id": 1})
    assert len(errors) == 1 and "name" in errors[0] and "required" in errors[0]
    errors = tool.validate({"id": 1, "name": "n", "extra": 1})
    assert len(errors) == 1 and "extra" in errors[0]
    errors = tool.validate({"id": 1, "name": "n", "limit": 11, "tags": ["a", 2]})
    assert sorted(e.split(":")[0] for e in errors) == ["limit", "tags/1"]
    errors = tool.validate({"id": "x", "limit": "y"})
    assert len(errors) == 3


def test_validator_with_regexes(tmp_path: Path) -> None:
    op = {"parameters": [
        {"name": "look", "in": "query", "schema": {"type": "string", "pattern": "^(?!x).*$"}},
        # Python-only syntax the Rust regex engine rejects: still a working validator (without the pattern).
        {"name": "quoted", "in": "query", "schema": {"type": "string", "pattern": "^(?P<q>['\"]).*(?P=q)$"}},
        {"name": "n", "in": "query", "schema": {"type": "integer"}},
    ]}  # fmt: skip
    tool = one_tool(tmp_path, op, method="get")
    assert tool.validate({"look": "abc"}) == []
    assert tool.validate({"look": "xyz"})
    assert tool.validate({"quoted": "anything"}) == []
    assert tool.validate({"n": "NaN"})[0].startswith("n:")


def test_uncompilable_pattern_properties_skip_only_the_operation(tmp_path: Path) -> None:
    doc = oas({"/a": {"post": {"operationId": "a", "requestBody": json_body({
        "type": "object", "properties": {"m": {"type": "object", "patternProperties": {"^(?P<n>a)(?P=n)$": {}}}}}),
        "responses": OK}}, "/b": {"get": {"operationId": "b", "responses": OK}}})  # fmt: skip
    tools = by_name(ingest(write(tmp_path, doc)))
    assert set(tools) == {"a", "b"}
    assert tools["a"].validate({"m": {"aa": 1}}) == []
    assert tools["a"].validate({"m": 1})


def test_compile_validator_refuses_a_broken_schema() -> None:
    assert compile_validator({"type": "object", "properties": {"a": {"type": "integer"}}})({"a": "x"})
    with pytest.raises(ValueError):
        compile_validator({"type": "object", "required": True})


# --------------------------------------------------------------------------- corpus findings (bench/ingest_corpus.py)


def test_non_portable_patterns_are_left_out(tmp_path: Path) -> None:
    """`\\p{L}` (Java/.NET, ECMA only with the u flag) and inline flags made the whole schema invalid for
    Python clients (jsonschema's check of `format: regex`) or JavaScript ones: left out, with an issue."""
    op = {"parameters": [
        {"name": "tag", "in": "query", "schema": {"type": "string", "pattern": "^[\\p{L}\\p{N}_.:/=+\\-@]*$"}},
        {"name": "caseless", "in": "query", "schema": {"type": "string", "pattern": "(?i)^abc$"}},
        {"name": "plain", "in": "query", "schema": {"type": "string", "pattern": "^[a-z]+$"}},
    ], "requestBody": json_body({"type": "object", "properties": {"labels": {
        "type": "object", "additionalProperties": False,
        "patternProperties": {"^\\p{Lu}": {"type": "string"}, "^x-": {"type": "integer"}}}}})}  # fmt: skip
    result = ingest(write(tmp_path, oas({"/x": {"post": {"operationId": "op", "responses": OK, **op}}})))
    (tool,) = result.tools
    props = tool.input_schema["properties"]
    assert "pattern" not in props["tag"] and "pattern" not in props["caseless"]
    assert props["plain"]["pattern"] == "^[a-z]+$"
    # The non-portable patternProperties entry goes; names it matched must stay acceptable.
    assert props["labels"] == {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}}
    assert tool.validate({"labels": {"Été": "ok", "x-n": 1}}) == []
    assert tool.validate({"labels": {"x-n": "not an integer"}})
    assert tool.validate({"plain": "ABC"})
    messages = sorted(i.message for i in result.issues)
    assert len(messages) == 3 and all("not a portable" in m or "non-portable" in m for m in messages), messages


def _chain_spec(tmp_path: Path, description: str = "A long description. " * 20) -> Path:
    """A result that reaches a chain of named schemas: Order -> Customer -> Address -> Country."""
    names = ["Order", "Customer", "Address", "Country"]
    schemas: dict[str, Any] = {}
    for i, name in enumerate(names):
        props: dict[str, Any] = {f"{name.lower()}_{k}": {"type": "string", "maxLength": 50, "description": description}
                                 for k in range(6)}  # fmt: skip
        if i + 1 < len(names):
            props["next"] = {"$ref": "#/components/schemas/" + names[i + 1]}
        schemas[name] = {"type": "object", "required": [f"{name.lower()}_0"], "description": description,
                         "properties": props}  # fmt: skip
    doc = oas({"/orders": {"get": {"operationId": "getOrder", "responses": json_response(ref("Order"))},
                           "post": {"operationId": "addOrder", "requestBody": json_body(ref("Order")),
                                    "responses": json_response(ref("Order"))}}}, schemas)  # fmt: skip
    return write(tmp_path, doc)


def test_large_output_schemas_are_cut_to_an_outline(tmp_path: Path) -> None:
    """Stripe's and GitHub's results reach most of their APIs: a result schema over output_schema_max_bytes keeps
    its shape (no descriptions, required or value constraints), then as many levels of $defs as fit; the rest
    are left open. Results are never bound by their schema, so no validation outcome changes."""
    spec = _chain_spec(tmp_path)
    full = by_name(ingest(spec, output_schema_max_bytes=1_000_000))["getOrder"].output_schema
    assert set(full["$defs"]) == {"Order", "Customer", "Address", "Country"}
    assert full["$defs"]["Order"]["properties"]["order_0"]["maxLength"] == 50

    tools = by_name(ingest(spec, output_schema_max_bytes=700))
    out = tools["getOrder"].output_schema
    assert json.dumps(out).count("description") == 0
    assert out["anyOf"][0] == {"$ref": "#/$defs/Order"}
    assert out["$defs"]["Order"]["properties"]["order_0"] == {"type": "string"}
    assert "required" not in out["$defs"]["Order"]
    assert len(json.dumps(out, separators=(",", ":"))) <= 700
    assert set(out["$defs"]) == {"Order", "Customer", "Address"} and out["$defs"]["Address"] == {}

    # The first level stays whatever the budget; the argument schema is never cut.
    tools = by_name(ingest(spec, output_schema_max_bytes=0))
    out = tools["addOrder"].output_schema
    assert out["$defs"]["Customer"] == {} and out["$defs"]["Order"]["properties"]["next"] == {
        "$ref": "#/$defs/Customer"}  # fmt: skip
    inp = tools["addOrder"].input_schema
    assert set(inp["$defs"]) == {"Customer", "Address", "Country"}
    assert inp["$defs"]["Country"]["properties"]["country_0"]["maxLength"] == 50
    bad = {"next": {"next": {"next": {"country_0": "x" * 51}}}}
    assert tools["addOrder"].validate(bad)


def test_descriptions_inside_schemas_are_trimmed(tmp_path: Path) -> None:
    long = "Word " * 100
    op = {"parameters": [{"name": "q", "in": "query", "description": long, "schema": {"type": "string"}},
                         {"name": "empty", "in": "query", "description": " ", "schema": {"type": "string"}}],
          "requestBody": json_body({"type": "object", "properties": {"nested": {
              "type": "object", "description": long,
              "properties": {"deep": {"type": "string", "description": long}}}}}),
          "description": long}  # fmt: skip
    tool = one_tool(tmp_path, op)
    props = tool.input_schema["properties"]
    assert 150 < len(props["q"]["description"]) <= 200 and props["q"]["description"].endswith("Word…")
    assert len(props["nested"]["properties"]["deep"]["description"]) <= 200
    assert "description" not in props["empty"]
    assert len(tool.description) > 200  # the tool's own description has description_max_chars
    bare = one_tool(tmp_path, op, schema_description_max_chars=0)
    assert "description" not in json.dumps(bare.input_schema)
    assert bare.input_schema["properties"]["nested"]["properties"] == {"deep": {"type": "string"}}


def test_nullable_any_of_is_one_level(tmp_path: Path) -> None:
    schemas = {"Customer": {"type": "object", "properties": {"id": {"type": "string"}}}}
    expandable = {"nullable": True, "description": "The customer: an id or the object.",
                  "anyOf": [{"type": "string"}, ref("Customer")]}  # fmt: skip
    tool = one_tool(tmp_path, {"requestBody": json_body({"type": "object", "properties": {"customer": expandable}})},
                    schemas)  # fmt: skip
    customer = tool.input_schema["properties"]["customer"]
    assert customer == {"description": "The customer: an id or the object.",
                        "anyOf": [{"type": "string"}, {"$ref": "#/$defs/Customer"}, {"type": "null"}]}  # fmt: skip
    assert tool.validate({"customer": None}) == [] and tool.validate({"customer": {"id": "c"}}) == []
    assert tool.validate({"customer": 1})


def test_validators_compile_on_first_call() -> None:
    """Compiling every validator at ingest took most of the time and gigabytes for Microsoft Graph."""
    from mcp_gateway.openapi.validation import LazyValidator

    validate = LazyValidator({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert validate._validate is None
    assert validate({"a": 1}) == [] and validate({"a": "x"})
    assert validate._validate is not None
    broken = LazyValidator({"type": "object", "required": True})
    (message,) = broken({})
    assert "cannot be compiled" in message


def test_shared_responses_and_parameters_are_converted_once(tmp_path: Path) -> None:
    doc = oas({f"/r{i}": {"get": {"operationId": f"r{i}", "parameters": [{"$ref": "#/components/parameters/Q"}],
                                  "responses": {"200": {"$ref": "#/components/responses/R"}}}} for i in range(3)},
              {"Thing": {"type": "object", "properties": {"id": {"type": "integer"}}}})  # fmt: skip
    doc["components"]["responses"] = {"R": json_response(ref("Thing"))["200"]}
    doc["components"]["parameters"] = {"Q": {"name": "q", "in": "query", "schema": {"type": "string"}}}
    tools = ingest(write(tmp_path, doc)).tools
    assert len(tools) == 3
    assert all(t.output_schema is tools[0].output_schema for t in tools)
    assert tools[0].output_schema["$defs"] == {"Thing": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    assert all(t.input_schema["properties"]["q"] == {"type": "string", "minLength": 1} for t in tools)


def test_huge_counted_repetitions_do_not_stall_the_first_call() -> None:
    """seldon.local/engine.json: `^.{1,2097152}` on a dozen strings. The Rust engine took 0.15 s to refuse
    each one (too large), about 2 s per tool: at ingest before, then on the tool's first call."""
    import time

    strings = {f"s{i}": {"type": "string", "minLength": 1, "pattern": "^.{1,2097152}"} for i in range(12)}
    started = time.process_time()
    validate = compile_validator({"type": "object", "properties": strings})
    assert time.process_time() - started < 0.5
    assert validate({"s0": "ok"}) == [] and validate({"s0": ""})


def test_swagger2_warnings_name_the_files_own_places() -> None:
    """A Swagger 2.0 file is converted to 3.0 inside the gateway; its warnings still point where the
    fault is in the file as written (no /components, requestBody or content: the file has none)."""
    spec = DATA / "swagger2-faults.yaml"
    result = ingest_api(ApiConfig(name="s", spec=str(spec)))
    pointers = {issue.pointer: issue.message for issue in result.issues}
    pets = "/paths/~1pets~1{id}/post"
    assert set(pointers) == {
        "/definitions/Pet/properties/code/pattern",
        f"{pets}/parameters/0/schema/properties/tag/pattern",  # the body parameter
        f"{pets}/parameters/1/pattern",  # a plain parameter after it: its keys are inline in 2.0
        f"{pets}/responses/200/schema/properties/z/pattern",
        "/paths/~1forms/post/parameters/0/pattern",
        "/paths/~1forms/post/parameters/1/pattern",  # a formData parameter
        "/securityDefinitions",
    }
    # Every message is a whole sentence (the credentials warning was once cut short).
    assert pointers["/securityDefinitions"].endswith("until one is, calls to them fail with a tool error")
