"""HTTP routes of the per-user OAuth connect flow, and of a consumer's own connections.

GET  /oauth/connect/<api>?ticket=T   confirmation page naming the consumer
POST /oauth/connect/<api>            (form: ticket) -> 303 to the provider's authorize URL
GET  /oauth/callback                 the provider returns here: code -> tokens, sealed
GET  /oauth/connections              the caller's connections (bearer credential)
DELETE /oauth/connections/<api>      disconnect (revokes at the provider when it can)
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_gateway.auth.connections import ConnectError, Connections
from mcp_gateway.auth.principal import Principal

logger = logging.getLogger(__name__)

# The ticket rides in the URL: keep it out of caches, referrers and frames.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}

Authenticate = Callable[[str], Awaitable[Principal]]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:3em auto'><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_PAGE_HEADERS)


def connect_routes(connections: Connections, authenticate: Authenticate | None) -> list[BaseRoute]:
    """The routes, bound to one gateway's connections; `authenticate` checks a consumer's bearer
    credential (None when access control is off: then only tickets identify consumers)."""

    async def confirm(request: Request) -> Response:
        api = request.path_params["api"]
        ticket = request.query_params.get("ticket")
        if not ticket:
            return _page("Link incomplete", "<p>This connect link has no ticket.</p>", 400)
        try:
            consumer = await connections.peek_ticket(api, ticket)
        except ConnectError as exc:
            return _page("Cannot connect", f"<p>{html.escape(str(exc))}</p>", 400)
        body = (
            f"<p>Connect your account at <b>{html.escape(api)}</b> to the gateway consumer "
            f"<b>{html.escape(consumer)}</b>? Tool calls made as <b>{html.escape(consumer)}</b> will then act "
            "with your account. Continue only if you asked for this link yourself.</p>"
            f"<form method='post' action='/oauth/connect/{html.escape(api)}'>"
            f"<input type='hidden' name='ticket' value='{html.escape(ticket)}'>"
            "<button type='submit'>Continue to sign in</button></form>"
        )
        return _page(f"Connect {api}", body)

    async def start(request: Request) -> Response:
        api = request.path_params["api"]
        form = await request.form()
        ticket = form.get("ticket")
        try:
            if isinstance(ticket, str) and ticket:
                url = await connections.begin(api, ticket=ticket)
            else:
                principal = await _principal(request)
                if principal is None:
                    return _page("Cannot connect", "<p>Open the link the tool gave you.</p>", 401)
                url = await connections.begin(api, consumer=principal.consumer)
        except ConnectError as exc:
            return _page("Cannot connect", f"<p>{html.escape(str(exc))}</p>", 400)
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    async def callback(request: Request) -> Response:
        params = request.query_params
        state, code = params.get("state"), params.get("code")
        if params.get("error"):
            # The user declined or the provider refused: spend the state so it cannot be replayed.
            if state:
                await connections.finish_declined(state)
            reason = html.escape(params.get("error_description") or params["error"])
            return _page("Not connected", f"<p>The provider did not authorize the connection: {reason}</p>", 400)
        if not state or not code:
            return _page("Not connected", "<p>The callback lacks its state or code.</p>", 400)
        try:
            consumer, api = await connections.finish(state, code)
        except ConnectError as exc:
            return _page("Not connected", f"<p>{html.escape(str(exc))}</p>", 400)
        logger.info("consumer %s connected API %s", consumer, api)
        return _page(
            "Connected",
            f"<p>Your <b>{html.escape(api)}</b> account is connected for <b>{html.escape(consumer)}</b>. "
            "You can close this window and call the tool again.</p>",
        )

    async def _principal(request: Request) -> Principal | None:
        if authenticate is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return await authenticate(token.strip())
        except Exception:  # AuthFailure and friends: just "not authenticated" here
            return None

    async def mine(request: Request) -> Response:
        principal = await _principal(request)
        if principal is None:
            return JSONResponse({"error": "a consumer bearer credential is required"}, 401)
        if request.method == "DELETE":
            gone = await connections.disconnect(principal.consumer, request.path_params["api"])
            return Response(status_code=204) if gone else JSONResponse({"error": "not connected"}, 404)
        return JSONResponse([c.public() for c in await connections.list(principal.consumer)])

    return [
        Route("/oauth/connect/{api}", confirm, methods=["GET"]),
        Route("/oauth/connect/{api}", start, methods=["POST"]),
        Route("/oauth/callback", callback, methods=["GET"]),
        Route("/oauth/connections", mine, methods=["GET"]),
        Route("/oauth/connections/{api}", mine, methods=["DELETE"]),
    ]
