"""The console's limits and budgets page: every rate limit and budget rule (the config file's and
those added at run time); per limit and subject, what is used of the current window (or of the
slots) and when it resets (Limiter.usage(), as GET /admin/limits/usage); per budget and subject,
how much of the current period's cap is spent, reserved by calls in flight and left
(Budgets.everyone(), as GET /admin/budgets)."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.metering.limits import BackendDown
from mcp_gateway.store.rules import RuleStore, public_rule
from mcp_gateway.ui.app import Console, Context

DETAIL_SKIP = ("name", "source", "created_at")


def _rules(store: RuleStore[Any], configured: Any) -> list[dict[str, Any]]:
    stored = store.list()
    rules = [public_rule(r, "config") for r in configured] + [
        public_rule(s.rule, "store", s.created_at) for s in stored
    ]
    for rule in rules:
        rule["detail"] = {k: v for k, v in rule.items() if k not in DETAIL_SKIP}
    return rules


def routes(console: Console) -> list[Route]:
    """/ui/limits."""
    services = console.services

    async def limits(request: Request, ctx: Context) -> Response:
        limit_rules, budget_rules = await anyio.to_thread.run_sync(
            lambda: (
                _rules(services.limit_store, services.limit_rules),
                _rules(services.budget_store, services.budget_rules),
            )
        )
        errors = []
        try:
            balances = [b.public() for b in await services.budgets.everyone()]
        except BackendDown as exc:
            balances = []
            errors.append(f"budgets: {exc}")
        try:
            used = [u.public() for u in await services.limiter.usage()]
        except BackendDown as exc:
            used = []
            errors.append(f"limits: {exc}")
        for u in used:
            u["used_percent"] = round(100 * u["used"] / u["of"], 1) if u["of"] else 0
        for b in balances:
            cap = float(b["cap_usd"])
            b["used_percent"] = round(100 * (float(b["spent_usd"]) + float(b["reserved_usd"])) / cap, 1) if cap else 0
        return console.render(request, ctx, "limits.html", limits=limit_rules, budget_rules=budget_rules,
                              balances=balances, used=used, error="; ".join(errors) or None)  # fmt: skip

    return [Route("/limits", console.get(limits), methods=["GET"])]
