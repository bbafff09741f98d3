"""A real upstream API for tests: echoes exactly what it received, and misbehaves on request.

Its OpenAPI description is `tests/data/echo.yaml`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

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
            # Every header line as received, in order (repeated headers stay separate).
            "raw_headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
        }
    )


async def set_cookie(request: Request) -> Response:
    response = JSONResponse({"set": True})
    response.set_cookie("upstream_session", "cookie-from-upstream-7f3a", path="/")
    return response


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


async def big_stream(request: Request) -> Response:
    """Like `big`, but chunked: no Content-Length to judge the size by."""
    size = int(request.query_params.get("size", "100000"))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, size, 256):
            yield b"a" * min(256, size - start)

    return StreamingResponse(chunks(), media_type="text/plain")


async def drip(request: Request) -> Response:
    """A response that trickles in: one byte every `interval` seconds, `count` times."""
    count = int(request.query_params.get("count", "20"))
    interval = float(request.query_params.get("interval", "0.2"))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"."
            await asyncio.sleep(interval)

    return StreamingResponse(chunks(), media_type="text/plain")


async def redirect_to(request: Request) -> Response:
    """Redirect to the `location` query value verbatim (relative or absolute)."""
    return Response(status_code=302, headers={"location": request.query_params["location"]})


class RequestLog:
    """ASGI middleware: records the raw path of every request the upstream receives.

    `GET /__requests` answers `{"count": N, "paths": [...]}` and is not itself recorded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope["raw_path"].decode("latin-1")
            if raw == "/__requests":
                response = JSONResponse({"count": len(self.paths), "paths": list(self.paths)})
                await response(scope, receive, send)
                return
            self.paths.append(raw)
        await self.app(scope, receive, send)


def create_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        middleware=[Middleware(RequestLog)],
        routes=[
            Route("/api/big-stream", big_stream),
            Route("/api/drip", drip),
            Route("/api/redirect-to", redirect_to),
            Route("/api/status/{code:int}", status),
            Route("/api/set-cookie", set_cookie),
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
        ],
    )


def parse_echo(text: str) -> dict:
    """The echo payload from a tool result's text."""
    return json.loads(text)
