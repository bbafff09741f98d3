"""Drift: responses of a real upstream that break its spec, called through a real gateway with the
MCP client, are reported by `apis drift` and the admin API, with paths and without their values."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.config import ApiConfig, GatewayConfig
from mcp_gateway.drift import monitor
from mcp_gateway.gateway import Gateway
from tests.conftest import ADMIN_TOKEN, GatewayFactory, running_gateway
from tests.servers import serve_in_thread
from tests.test_cli import cli

pytestmark = pytest.mark.anyio

SHOP_SPEC = """\
openapi: 3.0.3
info: {title: Shop, version: "1"}
paths:
  /good:
    get:
      operationId: getGood
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
  /wrong-type:
    get:
      operationId: wrongType
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
  /missing-field:
    get:
      operationId: missingField
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
  /undeclared-status:
    get:
      operationId: undeclaredStatus
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
  /wrong-content-type:
    get:
      operationId: wrongContentType
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}}
  /nested:
    get:
      operationId: nested
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  items: {type: array, items: {$ref: "#/components/schemas/Item"}}
                  byOwner: {type: object, additionalProperties: {$ref: "#/components/schemas/Item"}}
                  strict: {type: object, additionalProperties: false, properties: {ok: {type: boolean}}}
  /header:
    get:
      operationId: badHeader
      responses:
        "200":
          description: ok
          headers:
            X-Rate-Limit: {schema: {type: integer}}
          content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}
components:
  schemas:
    Item:
      type: object
      required: [id, name]
      properties:
        id: {type: integer}
        name: {type: string}
        price: {type: number}
"""

GOOD = {"id": 1, "name": "widget", "price": 2.5}
# Distinctive values in the bad responses: none of them may appear in any report.
SECRETS = (
    "card-4111-SECRET-VALUE",
    "SECRET-HTML-7731",
    "SECRET-404-BODY",
    "SECRET-PRICE-9090",
    "owner-SECRET@example.com",
    "SECRET-OWNER-ID",
    "SECRET-KEY-NAME",
    "SECRET-RATE-555",
)


def shop_upstream() -> Starlette:
    async def good(request: Request) -> Response:
        return JSONResponse(GOOD)

    async def wrong_type(request: Request) -> Response:
        return JSONResponse({"id": "card-4111-SECRET-VALUE", "name": "widget"})

    async def missing_field(request: Request) -> Response:
        return JSONResponse({"id": 7})

    async def undeclared_status(request: Request) -> Response:
        return JSONResponse({"error": "SECRET-404-BODY"}, status_code=404)

    async def wrong_content_type(request: Request) -> Response:
        return Response("<html>SECRET-HTML-7731</html>", media_type="text/html")

    async def nested(request: Request) -> Response:
        bad_item = {"id": 2, "name": "b", "price": "SECRET-PRICE-9090"}
        return JSONResponse(
            {
                "items": [GOOD, bad_item, bad_item],
                "byOwner": {"owner-SECRET@example.com": {"id": "SECRET-OWNER-ID", "name": "x"}},
                "strict": {"ok": True, "SECRET-KEY-NAME": 1},
            }
        )

    async def header(request: Request) -> Response:
        return JSONResponse(GOOD, headers={"X-Rate-Limit": "SECRET-RATE-555"})

    return Starlette(
        routes=[
            Route("/good", good),
            Route("/wrong-type", wrong_type),
            Route("/missing-field", missing_field),
            Route("/undeclared-status", undeclared_status),
            Route("/wrong-content-type", wrong_content_type),
            Route("/nested", nested),
            Route("/header", header),
        ]
    )


@contextmanager
def shop_gateway(tmp_path: Path, spec: str, **api: Any) -> Iterator[tuple[str, Gateway, str]]:
    """A gateway over the shop upstream; yields its /mcp URL, the Gateway and its /admin URL."""
    with serve_in_thread(shop_upstream()) as upstream:
        config = GatewayConfig(
            data_dir=tmp_path / "data",
            admin_token=ADMIN_TOKEN,
            apis=[ApiConfig(name="shop", spec=spec, base_url=upstream, **api)],
        )
        with running_gateway(config) as (url, gateway):
            yield url, gateway, url.rsplit("/mcp", 1)[0] + "/admin"


def admin_drift(admin: str, api: str = "shop") -> httpx2.Response:
    return httpx2.get(f"{admin}/apis/{api}/drift", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


async def wait_for(admin: str, done: Any, timeout: float = 20.0, api: str = "shop") -> dict[str, Any]:
    """Poll the admin drift report until `done(report)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        report = admin_drift(admin, api).json()
        if done(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"drift report not complete in time: {report}")
        await asyncio.sleep(0.05)


def by_tool(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["tool"]: t for t in report["tools"]}


def problems(tool: dict[str, Any]) -> set[tuple[int, str, str, str]]:
    return {(f["status"], f["kind"], f["path"], f["message"]) for f in tool["findings"]}


EXPECTED = {
    "getGood": set(),
    "wrongType": {(200, "body", "$.id", "expected integer, got string")},
    "missingField": {(200, "body", "$.name", "required property missing")},
    "undeclaredStatus": {(404, "status", "", "status 404 is not declared for this operation")},
    "wrongContentType": {(200, "content_type", "", "text/html is not declared (declared: application/json)")},
    "nested": {
        (200, "body", "$.items[*].price", "expected number, got string"),
        # A key the spec does not name is data: it is shown as *.
        (200, "body", "$.byOwner.*.id", "expected integer, got string"),
        (200, "body", "$.strict", "1 property the spec does not declare (additionalProperties: false)"),
    },
    "badHeader": {(200, "header", "X-Rate-Limit", "cannot be read as integer")},
}


async def test_drift_reports_each_mismatch_with_its_path_and_no_values(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP_SPEC)
    with shop_gateway(tmp_path, str(spec), drift_sample_seconds=0) as (url, _gateway, admin):
        async with Client(url, mode="legacy") as client:
            for tool in EXPECTED:
                for _ in range(2):
                    result = await client.call_tool(tool, {})
                    # Drift is only reported: the agent gets the upstream's answer as before.
                    assert result.is_error == (tool == "undeclaredStatus")
        report = await wait_for(admin, lambda r: sum(t["checked"] for t in r["tools"]) == 2 * len(EXPECTED))
        tools = by_tool(report)
        assert report["served"] is True and report["drift_sample_seconds"] == 0
        assert set(tools) == set(EXPECTED)
        for name, expected in EXPECTED.items():
            assert problems(tools[name]) == expected, name
            assert tools[name]["checked"] == 2 and tools[name]["dropped"] == 0
            assert all(f["count"] == 2 for f in tools[name]["findings"]), name
        cli_out = cli("apis", "drift", "shop", data_dir=tmp_path / "data")
        cli_json = cli("apis", "drift", "shop", "--json", data_dir=tmp_path / "data")
        db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("gateway.db*"))
    assert cli_out.returncode == 0, cli_out.stderr
    assert "$.items[*].price" in cli_out.stdout and "expected integer, got string" in cli_out.stdout
    assert "status 404 is not declared" in cli_out.stdout and "matching the spec: getGood (2)" in cli_out.stdout
    assert {t["tool"]: problems(t) for t in json.loads(cli_json.stdout)["tools"]} == EXPECTED
    reports = (json.dumps(report), cli_out.stdout, cli_json.stdout)
    for secret in SECRETS:
        assert not any(secret in text for text in reports), secret
        assert secret.encode() not in db_bytes, secret


SWAGGER2_SPEC = """\
swagger: "2.0"
info: {title: Shop, version: "1"}
produces: [application/json]
paths:
  /good:
    get:
      operationId: getGood
      responses: {200: {description: ok, schema: {$ref: "#/definitions/Item"}}}
  /missing-field:
    get:
      operationId: missingField
      responses: {200: {description: ok, schema: {$ref: "#/definitions/Item"}}}
  /undeclared-status:
    get:
      operationId: undeclaredStatus
      responses: {200: {description: ok, schema: {$ref: "#/definitions/Item"}}}
definitions:
  Item:
    type: object
    required: [id, name]
    properties: {id: {type: integer}, name: {type: string}}
"""


async def test_swagger2_specs_are_checked_too(tmp_path: Path) -> None:
    spec = tmp_path / "shop2.yaml"
    spec.write_text(SWAGGER2_SPEC)
    tools = ("getGood", "missingField", "undeclaredStatus")
    with shop_gateway(tmp_path, str(spec), drift_sample_seconds=0) as (url, _gateway, admin):
        async with Client(url, mode="legacy") as client:
            for tool in tools:
                await client.call_tool(tool, {})
        report = await wait_for(admin, lambda r: sum(t["checked"] for t in r["tools"]) == len(tools))
    assert {t["tool"]: problems(t) for t in report["tools"]} == {name: EXPECTED[name] for name in tools}


async def test_a_tool_is_sampled_once_per_interval(gateway_factory: GatewayFactory) -> None:
    with gateway_factory() as (url, _gateway):  # the default: drift_sample_seconds 60
        admin = url.rsplit("/mcp", 1)[0] + "/admin"
        async with Client(url, mode="legacy") as client:
            for i in range(5):
                assert not (await client.call_tool("getItem", {"id": str(i)})).is_error
        report = await wait_for(admin, lambda r: any(t["checked"] for t in r["tools"]), api="echo")
        await asyncio.sleep(1.5)  # more checks would have been recorded by now
        assert {t["tool"]: t["checked"] for t in admin_drift(admin, "echo").json()["tools"]} == {"getItem": 1}
        assert report["drift_sample_seconds"] == 60


async def test_drift_check_off_checks_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP_SPEC)
    with shop_gateway(tmp_path, str(spec), drift_check=False, drift_sample_seconds=0) as (url, gateway, admin):
        async with Client(url, mode="legacy") as client:
            assert not (await client.call_tool("wrongType", {})).is_error
        await asyncio.sleep(1.5)
        assert admin_drift(admin).json() == {"api": "shop", "served": True, "drift_check": False,
                                             "drift_sample_seconds": 0.0, "tools": []}  # fmt: skip
        assert gateway.drift._thread is None  # no worker either


def blocking_spec_server(release: threading.Event, fetches: list[float]) -> Starlette:
    """Serves SHOP_SPEC; every fetch after the first (ingest's) waits for `release`."""

    async def spec(request: Request) -> Response:
        fetches.append(time.monotonic())
        if len(fetches) > 1:
            await asyncio.to_thread(release.wait, 25)
        return Response(SHOP_SPEC, media_type="application/yaml")

    return Starlette(routes=[Route("/shop.yaml", spec)])


WRONG_TYPE_BODY = len(json.dumps({"id": "card-4111-SECRET-VALUE", "name": "widget"}, separators=(",", ":")))


@pytest.mark.parametrize(
    ("setting", "value", "room"),
    [("QUEUE_SIZE", 4, 4), ("QUEUE_BYTES", 3 * WRONG_TYPE_BODY, 3)],  # full by count; full by body bytes
)
async def test_a_full_queue_drops_samples_and_never_blocks_a_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, value: int, room: int
) -> None:
    monkeypatch.setattr(monitor, setting, value)
    release, fetches = threading.Event(), []
    calls = 20
    with serve_in_thread(blocking_spec_server(release, fetches)) as spec_base:
        spec_url = f"{spec_base}/shop.yaml"
        with shop_gateway(tmp_path, spec_url, drift_sample_seconds=0) as (url, _gateway, admin):
            try:
                async with Client(url, mode="legacy") as client:
                    # The first sampled response sends the worker to load the spec (its second fetch).
                    assert not (await client.call_tool("wrongType", {})).is_error
                    deadline = time.monotonic() + 15
                    while len(fetches) < 2 and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)
                    assert len(fetches) == 2, "the drift worker did not start loading the spec"
                    slowest = 0.0
                    for _ in range(calls - 1):
                        started = time.monotonic()
                        assert not (await client.call_tool("wrongType", {})).is_error
                        slowest = max(slowest, time.monotonic() - started)
                # The worker is stuck loading the spec all along, yet no call waited for it.
                assert len(fetches) == 2 and not release.is_set()
                assert slowest < 2.0
            finally:
                release.set()
            report = await wait_for(admin, lambda r: sum(t["checked"] + t["dropped"] for t in r["tools"]) == calls)
    tool = by_tool(report)["wrongType"]
    # One sample is with the worker, `room` wait in the queue, the rest are dropped and counted.
    assert tool["checked"] == 1 + room and tool["dropped"] == calls - 1 - room
    assert problems(tool) == EXPECTED["wrongType"]


async def test_replacing_an_api_clears_its_findings_and_clear_forgets(gateway_factory: GatewayFactory,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP_SPEC)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serve_in_thread(shop_upstream()) as upstream, gateway_factory() as (url, _gateway):
        admin = url.rsplit("/mcp", 1)[0] + "/admin"
        body = {"spec_content": SHOP_SPEC, "base_url": upstream, "prefix": "s", "drift_sample_seconds": 0}
        assert httpx2.put(f"{admin}/apis/shop", headers=headers, json=body).status_code == 201
        async with Client(url, mode="legacy") as client:
            assert not (await client.call_tool("s_wrongType", {})).is_error
        # An uploaded spec is checked too (its text comes from the registration store).
        report = await wait_for(admin, lambda r: bool(r["tools"]))
        assert problems(by_tool(report)["s_wrongType"]) == EXPECTED["wrongType"]
        assert httpx2.put(f"{admin}/apis/shop", headers=headers, json=body).status_code == 200
        await wait_for(admin, lambda r: r["tools"] == [], timeout=5)
        async with Client(url, mode="legacy") as client:
            assert not (await client.call_tool("s_missingField", {})).is_error
        await wait_for(admin, lambda r: bool(r["tools"]))
        cleared = httpx2.delete(f"{admin}/apis/shop/drift", headers=headers)
        assert cleared.status_code == 204
        assert admin_drift(admin).json()["tools"] == []
        assert admin_drift(admin, "nosuch").status_code == 404
        assert httpx2.delete(f"{admin}/apis/nosuch/drift", headers=headers).status_code == 404
        assert httpx2.get(f"{admin}/apis/shop/drift").status_code == 401


def test_cli_drift_needs_a_known_api(tmp_path: Path) -> None:
    out = cli("apis", "drift", "nosuch", data_dir=tmp_path)
    assert out.returncode == 1 and "no API named 'nosuch'" in out.stderr
    config = tmp_path / "gateway.yaml"
    config.write_text(f"apis:\n  - name: shop\n    spec: {tmp_path / 'shop.yaml'}\n    drift_sample_seconds: 30\n")
    out = cli("apis", "drift", "shop", "--config", str(config), data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "0 responses checked (each tool's first response, then at most one every 30 s)" in out.stdout
    assert "no response checked yet" in out.stdout
