"""Ingest results are copied into fresh memory (openapi/compact.py): the copy must be the same
tools, keep what tools share shared, and leave the cyclic collector as it found it."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_gateway.config import ApiConfig
from mcp_gateway.openapi import compact
from mcp_gateway.openapi.compact import compacted
from mcp_gateway.openapi.load import load_spec
from mcp_gateway.openapi.tools import ingest, ingest_api

PET = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "friend": {"$ref": "#/components/schemas/Pet"}},
}


def spec_file(tmp_path: Path) -> Path:
    """Two operations sharing a recursive schema (a `$defs` entry of both) and a response."""
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}
    ok = {"200": {"$ref": "#/components/responses/Pet"}}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "pets", "version": "1"},
        "servers": [{"url": "http://127.0.0.1:1"}],
        "paths": {
            "/pets": {"post": {"operationId": "addPet", "requestBody": body, "responses": ok}},
            "/pets/{id}": {
                "put": {
                    "operationId": "putPet",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "requestBody": body,
                    "responses": ok,
                }
            },
        },
        "components": {
            "schemas": {"Pet": PET},
            "responses": {"Pet": {"description": "a pet", **body}},
        },
    }
    path = tmp_path / "pets.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_copy_is_the_same_tools(tmp_path: Path) -> None:
    config = ApiConfig(name="pets", spec=str(spec_file(tmp_path)))
    original = ingest(load_spec(config.spec), config)
    copy = ingest_api(config)
    assert copy is not original and copy.tools[0] is not original.tools[0]
    assert [t.public() for t in copy.tools] == [t.public() for t in original.tools]
    assert [t.operation for t in copy.tools] == [t.operation for t in original.tools]
    assert (copy.security_schemes, copy.issues, copy.base_url) == (
        original.security_schemes, original.issues, original.base_url
    )  # fmt: skip
    # The validator is rebuilt from the copied schema, and checks arguments as before.
    put = next(t for t in copy.tools if t.name == "putPet")
    assert put.validate({"id": 1, "name": "Rex"}) == []
    assert any("id" in e for e in put.validate({"id": "one", "name": "Rex"}))
    assert put.validate.__reduce__()[1][0] is put.input_schema


def test_a_used_validator_is_copied_as_its_schema(tmp_path: Path) -> None:
    """A compiled validator is native memory that cannot be copied: it is compiled again on use."""
    config = ApiConfig(name="pets", spec=str(spec_file(tmp_path)))
    original = ingest(load_spec(config.spec), config)
    assert original.tools[0].validate({}) != []  # compiled now
    copy = compacted(lambda: original)
    assert copy.tools[0].validate({}) == original.tools[0].validate({})


def test_what_tools_share_stays_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compact, "BATCH", 1)  # each tool in its own batch: sharing across batches
    config = ApiConfig(name="pets", spec=str(spec_file(tmp_path)))
    original = ingest(load_spec(config.spec), config)
    copy = ingest_api(config)
    for result in (original, copy):
        add, put = result.tools
        # (What makes the copy as small as the original: one object per shared schema.)
        assert add.input_schema["$defs"]["Pet"] is put.input_schema["$defs"]["Pet"]
        assert add.output_schema is put.output_schema


def test_the_collector_is_left_as_found(tmp_path: Path) -> None:
    config = ApiConfig(name="pets", spec=str(spec_file(tmp_path)))
    assert gc.isenabled()
    ingest_api(config)
    assert gc.isenabled()
    gc.disable()
    try:
        compacted(lambda: ingest(load_spec(config.spec), config))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_equal_schema_parts_become_one(tmp_path: Path) -> None:
    """Equal inline schemas of different operations are one object after ingest; numbers that
    Python finds equal but a schema does not (`1`, `1.0`, `true`) stay apart."""
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "s", "version": "1"},
        "paths": {
            f"/{name}": {
                "get": {
                    "operationId": name,
                    "parameters": [
                        {"name": "mode", "in": "query", "schema": {"type": "string", "enum": ["a", "b"]}},
                        {"name": "n", "in": "query", "schema": {"enum": [value]}},
                    ],
                    "responses": {"204": {"description": "done"}},
                }
            }
            for name, value in (("one", 1), ("float", 1.0), ("true", True), ("again", 1))
        },
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    tools = {t.name: t for t in ingest_api(ApiConfig(name="s", spec=str(path))).tools}
    modes = [t.input_schema["properties"]["mode"] for t in tools.values()]
    assert all(m is modes[0] for m in modes) and modes[0]["enum"] == ["a", "b"]
    n = {name: t.input_schema["properties"]["n"]["enum"] for name, t in tools.items()}
    assert n["one"] is n["again"]
    assert [type(n[k][0]) for k in ("one", "float", "true")] == [int, float, bool]
    for name, tool in tools.items():
        assert tool.validate({"mode": "a", "n": n[name][0]}) == []
    assert tools["true"].validate({"n": 1}) != []  # (a schema's `true` is not 1)
