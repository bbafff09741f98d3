"""What budgets and limits hold now (the admin token): `GET /admin/budgets`, every budget's state
for each subject in the current period; `GET /admin/limits/usage`, each limit's counters."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.metering.budgets import Budgets
from mcp_gateway.metering.limits import BackendDown, Limiter
from mcp_gateway.server.admin import Endpoint


def budget_routes(budgets: Budgets, guard: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """`/admin/budgets`: per budget and subject, the cap, spent, reserved, remaining and the period's bounds."""

    async def listing(request: Request) -> Response:
        try:
            balances = await budgets.everyone()
        except BackendDown as exc:
            return JSONResponse({"error": f"budgets: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"budgets": [b.public() for b in balances]})

    return [Route("/admin/budgets", guard(listing), methods=["GET"])]


def limit_usage_routes(limiter: Limiter, guard: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """`/admin/limits/usage`: per rule and subject with something counted now, what is used of the
    limit, what remains and when the window resets."""

    async def listing(request: Request) -> Response:
        try:
            used = await limiter.usage()
        except BackendDown as exc:
            return JSONResponse({"error": f"limits: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"limits": [u.public() for u in used]})

    return [Route("/admin/limits/usage", guard(listing), methods=["GET"])]
