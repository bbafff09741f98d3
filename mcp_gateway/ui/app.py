"""The console at `/ui`: login, the session guard and CSRF check around every page, and the
pages' routes (ui/pages_*.py). Mounted only when an admin token is set."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from mcp_gateway.auth.service import AccessControl
from mcp_gateway.llm.registrations import ModelRegistry
from mcp_gateway.metering.budgets import Budgets
from mcp_gateway.metering.limits import Limiter
from mcp_gateway.registry import Registry
from mcp_gateway.store.ledger import LedgerStore
from mcp_gateway.store.logouts import LogoutStore
from mcp_gateway.store.rules import RuleStore
from mcp_gateway.ui.forms import FormError, read_form
from mcp_gateway.ui.render import SECURITY_HEADERS, environment, page
from mcp_gateway.ui.session import Session, Sessions, clear_cookie, set_cookie

logger = logging.getLogger(__name__)

NAV = (
    ("overview", "Overview"),
    ("usage", "Usage"),
    ("calls", "Calls"),
    ("apis", "APIs"),
    ("models", "Models"),
    ("consumers", "Consumers & keys"),
    ("policies", "Policies"),
    ("limits", "Limits & budgets"),
)


@dataclass(frozen=True)
class Services:
    """What the console reads and changes: the same objects the admin API uses."""

    ledger: LedgerStore
    registry: Registry
    models: ModelRegistry
    access: AccessControl
    budgets: Budgets
    limiter: Limiter
    limit_store: RuleStore[Any]
    limit_rules: Sequence[Any]  # the config file's
    budget_store: RuleStore[Any]
    budget_rules: Sequence[Any]
    logouts: LogoutStore
    key_grace: float = 86400.0


@dataclass
class Context:
    """A page request's session and (for a POST) its form."""

    session: Session
    form: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request, Context], Awaitable[Response]]


class Console:
    """Renders pages for logged-in operators and guards every route."""

    def __init__(self, admin_token: str, services: Services) -> None:
        self.sessions = Sessions(admin_token, services.logouts)
        self.services = services
        self.env: Environment = environment()

    def render(self, request: Request, ctx: Context, template: str, status: int = 200, **values: Any) -> Response:
        """A page inside the console's layout (navigation, the CSRF token for its forms)."""
        active = request.url.path.removeprefix("/ui/").split("/")[0] or "overview"
        return page(self.env, template, status, nav=NAV, active=active, csrf=ctx.session.csrf, **values)

    def get(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A page: the login page instead without a valid session."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request)
            if session is None:
                return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
            return await handler(request, Context(session))

        return endpoint

    def post(self, handler: Handler, limit: int | None = None) -> Callable[[Request], Awaitable[Response]]:
        """A state-changing form: a valid session and its CSRF token, or 403 and nothing changes."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request)
            if session is None:
                return self.refused("your session has ended: log in again", 403)
            try:
                form = await read_form(request, limit) if limit else await read_form(request)
            except FormError as exc:
                return self.refused(str(exc), exc.status)
            if not self.sessions.csrf_ok(session, form.get("csrf")):
                return self.refused("the form's CSRF token is missing or wrong: reload the page and try again", 403)
            return await handler(request, Context(session, form))

        return endpoint

    def refused(self, message: str, status: int) -> Response:
        """A plain error page (no session needed)."""
        return page(self.env, "refused.html", status, message=message)


def console_routes(admin_token: str, services: Services) -> list[BaseRoute]:
    """The `/ui` mount: login and logout, the pages, and the static files."""
    from mcp_gateway.ui import pages_access, pages_catalog, pages_rules, pages_usage

    console = Console(admin_token, services)
    sessions = console.sessions

    async def login_form(request: Request) -> Response:
        if sessions.read(request) is not None:
            return RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
        return page(console.env, "login.html", error=None)

    async def login(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as exc:
            return console.refused(str(exc), exc.status)
        # The token travels in the POST body only, never in a URL (no GET login, no redirect with it).
        if not sessions.check_token(form.get("token", "")):
            logger.warning("console: a login with a wrong admin token from %s", request.client and request.client.host)
            return page(console.env, "login.html", 401, error="That is not the admin token.")
        cookie, _ = sessions.start()
        response = RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
        set_cookie(response, request, cookie)
        return response

    async def logout(request: Request, ctx: Context) -> Response:
        await anyio.to_thread.run_sync(sessions.end, ctx.session)
        response = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
        clear_cookie(response, request)
        return response

    routes: list[BaseRoute] = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", console.post(logout), methods=["POST"]),
        Mount("/static", app=StaticFiles(packages=[("mcp_gateway.ui", "static")]), name="static"),
    ]
    for module in (pages_usage, pages_catalog, pages_access, pages_rules):
        routes += module.routes(console)
    return [Mount("/ui", routes=routes)]
