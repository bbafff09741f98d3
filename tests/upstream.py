"""A real upstream API for tests: echoes exactly what it received, and misbehaves on request.

Its OpenAPI description is `tests/data/echo.yaml`.
"""

from __future__ import annotations

import asyncio
import base64
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def echo(request: Request) -> Response:
    body = await request.body()
    form: dict[str, list[str]] | None = None
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        parsed = await request.form()
        form = {}
        for key, value in parsed.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                text = f"file:{value.filename}:{value.content_type}:{base64.b64encode(data).decode()}"
            else:
                text = str(value)
            form.setdefault(key, []).append(text)
    return JSONResponse(
        {
            "method": request.method,
            "path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]},
            "body": body.decode("utf-8", errors="replace") if not form else None,
            "body_b64": base64.b64encode(body).decode(),
            "form": form,
        }
    )


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return JSONResponse({"error": f"status {code} as requested", "detail": "x" * 5000}, status_code=code)


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "5")))
    return JSONResponse({"slept": True})


async def big(request: Request) -> Response:
    return Response(b"a" * int(request.query_params.get("size", "100000")), media_type="text/plain")


async def plain(request: Request) -> Response:
    return Response("just text", media_type="text/plain")


async def not_json(request: Request) -> Response:
    return Response("<html>oops</html>", media_type="application/json")


async def image(request: Request) -> Response:
    return Response(PNG_1PX, media_type="image/png")


async def binary(request: Request) -> Response:
    return Response(b"%PDF-1.4 fake", media_type="application/pdf")


async def drift(request: Request) -> Response:
    shape = request.query_params.get("shape", "object")
    if shape == "array":
        return JSONResponse([1, "two", None])
    if shape == "scalar":
        return JSONResponse("surprise")
    return JSONResponse({"id": "not-an-integer", "unexpected": {"nested": True}}, status_code=203)


async def empty(request: Request) -> Response:
    return Response(status_code=204)


async def redirect(request: Request) -> Response:
    where = request.query_params.get("to", "inside")
    if where == "inside":
        return RedirectResponse("/api/plain", status_code=302)
    return RedirectResponse("http://127.0.0.2:9/elsewhere", status_code=302)


async def spec(request: Request) -> Response:
    from pathlib import Path

    return Response((Path(__file__).parent / "data" / "echo.yaml").read_text(), media_type="application/yaml")


def create_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/api/status/{code:int}", status),
            Route("/api/slow", slow),
            Route("/api/big", big),
            Route("/api/plain", plain),
            Route("/api/not-json", not_json),
            Route("/api/image", image),
            Route("/api/binary", binary),
            Route("/api/drift", drift),
            Route("/api/empty", empty, methods=["DELETE"]),
            Route("/api/redirect", redirect),
            Route("/openapi.yaml", spec),
            Route("/{path:path}", echo, methods=methods),
        ]
    )


def parse_echo(text: str) -> dict:
    """The echo payload from a tool result's text."""
    return json.loads(text)
