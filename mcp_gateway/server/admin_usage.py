"""`GET /admin/usage`: calls, tokens and cost from the ledger, grouped one way (the admin token)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.durations import parse_moment
from mcp_gateway.store.ledger import GROUPS, LedgerStore

Endpoint = Callable[[Request], Any]


class UsageQueryError(ValueError):
    """A query parameter that cannot be read; the message names it."""


def usage_query(params: Mapping[str, str], default_by: str = "consumer") -> dict[str, Any]:
    """`by`, `since` and `until` of a usage request (times: `7d`, epoch seconds or ISO 8601)."""
    by = params.get("by", default_by)
    if by not in GROUPS:
        raise UsageQueryError(f"by: one of {', '.join(GROUPS)}")
    query: dict[str, Any] = {"by": by}
    now = time.time()
    for name in ("since", "until"):
        if name in params:
            try:
                query[name] = parse_moment(params[name], now)
            except ValueError as exc:
                raise UsageQueryError(f"{name}: {exc}") from None
    return query


async def usage_answer(
    ledger: LedgerStore, query: dict[str, Any], *, more: dict[str, Any] | None = None, **only: str | None
) -> JSONResponse:
    """The usage rows of `query` as JSON (read in a worker thread), and `more` fields."""
    by, since, until = query["by"], query.get("since"), query.get("until")
    rows = await anyio.to_thread.run_sync(lambda: ledger.usage(by, since=since, until=until, **only))
    return JSONResponse({"by": by, "since": since, "until": until, "rows": [r.public() for r in rows], **(more or {})})


def usage_routes(ledger: LedgerStore, guard: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """`/admin/usage?by=consumer|team|...&since=7d&until=...&consumer=NAME`."""

    async def usage(request: Request) -> Response:
        try:
            query = usage_query(request.query_params)
        except UsageQueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await usage_answer(ledger, query, consumer=request.query_params.get("consumer"))

    return [Route("/admin/usage", guard(usage), methods=["GET"])]
