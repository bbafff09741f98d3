"""The console's access pages: consumers and their keys (create, rotate, revoke; a new key is
shown once, on the answer to the form that made it, never stored or shown again) and policies.
Changes go through the identity store and auth/keys.py as the admin API's do, and reload the
access control at once so that a revoked key is refused from the next request on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mcp_gateway.auth import keys
from mcp_gateway.durations import DurationError, parse_duration
from mcp_gateway.store.identities import SUBJECT_KINDS, IdentityError, Selector
from mcp_gateway.ui.app import Console, Context
from mcp_gateway.ui.forms import field
from mcp_gateway.ui.render import SECURITY_HEADERS

NOTES = {
    "consumer-added": "The consumer was added.",
    "consumer-disabled": "The consumer is disabled: its keys are refused.",
    "consumer-enabled": "The consumer is enabled again.",
    "revoked": "The key was revoked: it is refused from now on.",
    "policy-added": "The policy was added.",
    "policy-removed": "The policy was removed.",
}


def _listed(values: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (values or "").split(",") if v.strip())


def routes(console: Console) -> list[Route]:
    """/ui/consumers (with keys) and /ui/policies, and their forms."""
    access = console.services.access
    store = access.store

    async def change(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store change in a worker thread, then reload the access control (as the admin API)."""
        result = await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        await access.reload()
        return result

    def back(page: str, done: str) -> Response:
        return RedirectResponse(f"/ui/{page}?done={done}", status_code=303, headers=SECURITY_HEADERS)

    async def consumers_page(request: Request, ctx: Context, status: int = 200, **values: Any) -> Response:
        found, all_keys = await anyio.to_thread.run_sync(lambda: (store.consumers(), store.keys()))
        values.setdefault("error", None)
        values.setdefault("new_key", None)
        values.setdefault("note", NOTES.get(request.query_params.get("done", "")))
        by_consumer: dict[str, list[Any]] = {}
        for key in all_keys:
            by_consumer.setdefault(key.consumer, []).append(key)
        return console.render(request, ctx, "consumers.html", status, consumers=found, keys=by_consumer,
                              access_on=access.enabled, **values)  # fmt: skip

    async def consumers(request: Request, ctx: Context) -> Response:
        return await consumers_page(request, ctx)

    async def add_consumer(request: Request, ctx: Context) -> Response:
        name = field(ctx.form, "name")
        if name is None:
            return await consumers_page(request, ctx, 400, error="A consumer needs a name.")
        try:
            await change(store.add_consumer, name, field(ctx.form, "team"), field(ctx.form, "org"))
        except IdentityError as exc:
            return await consumers_page(request, ctx, 400, error=str(exc))
        return back("consumers", "consumer-added")

    async def set_disabled(request: Request, ctx: Context) -> Response:
        disabled = ctx.form.get("disabled") == "1"
        if not await change(store.set_disabled, request.path_params["name"], disabled):
            return await consumers_page(request, ctx, 404, error="No such consumer.")
        return back("consumers", "consumer-disabled" if disabled else "consumer-enabled")

    async def create_key(request: Request, ctx: Context) -> Response:
        consumer = field(ctx.form, "consumer")
        if consumer is None:
            return await consumers_page(request, ctx, 400, error="Pick the consumer the key is for.")
        try:
            expires = field(ctx.form, "expires_in")
            expires_in = parse_duration(expires) if expires is not None else None
            key, full = await change(keys.issue, store, consumer, expires_in=expires_in,
                                     description=field(ctx.form, "description"))  # fmt: skip
        except (IdentityError, DurationError) as exc:
            return await consumers_page(request, ctx, 400, error=str(exc))
        # The only time the full key is ever shown (the page is not cached: no-store).
        return await consumers_page(
            request, ctx, 201, new_key={"key_id": key.key_id, "consumer": consumer, "key": full}
        )

    async def rotate_key(request: Request, ctx: Context) -> Response:
        key_id = request.path_params["key_id"]
        try:
            key, full = await change(keys.rotate, store, key_id, grace=console.services.key_grace)
        except IdentityError as exc:
            return await consumers_page(request, ctx, 400, error=str(exc))
        new = {"key_id": key.key_id, "consumer": key.consumer, "key": full, "replaces": key_id}
        return await consumers_page(request, ctx, 201, new_key=new)

    async def revoke_key(request: Request, ctx: Context) -> Response:
        if not await change(store.revoke_key, request.path_params["key_id"]):
            return await consumers_page(request, ctx, 404, error="No such active key.")
        return back("consumers", "revoked")

    async def policies_page(request: Request, ctx: Context, status: int = 200, **values: Any) -> Response:
        found = await anyio.to_thread.run_sync(store.policies)
        values.setdefault("error", None)
        values.setdefault("note", NOTES.get(request.query_params.get("done", "")))
        return console.render(request, ctx, "policies.html", status, policies=[p.public() for p in found],
                              kinds=SUBJECT_KINDS, **values)  # fmt: skip

    async def policies(request: Request, ctx: Context) -> Response:
        return await policies_page(request, ctx)

    async def add_policy(request: Request, ctx: Context) -> Response:
        form = ctx.form
        kind = form.get("subject_kind", "")
        subject = "*" if kind == "everyone" else field(form, "subject")
        if subject is None:
            return await policies_page(
                request, ctx, 400, error="A policy needs a subject (a key id, consumer, team or org)."
            )
        selector = Selector(apis=_listed(form.get("apis")), tools=_listed(form.get("tools")),
                            models=_listed(form.get("models")))  # fmt: skip
        if selector.models and selector.names_tools:
            return await policies_page(request, ctx, 400, error="A policy is about models or about tools, not both.")
        try:
            await change(store.add_policy, kind, subject, form.get("effect", ""), selector, field(form, "description"))
        except IdentityError as exc:
            return await policies_page(request, ctx, 400, error=str(exc))
        return back("policies", "policy-added")

    async def remove_policy(request: Request, ctx: Context) -> Response:
        raw = request.path_params["policy_id"]
        if not raw.isdigit() or await change(store.remove_policy, int(raw)) is None:
            return await policies_page(request, ctx, 404, error="No such policy.")
        return back("policies", "policy-removed")

    return [
        Route("/consumers", console.get(consumers), methods=["GET"]),
        Route("/consumers", console.post(add_consumer), methods=["POST"]),
        Route("/consumers/{name}/disabled", console.post(set_disabled), methods=["POST"]),
        Route("/keys", console.post(create_key), methods=["POST"]),
        Route("/keys/{key_id}/rotate", console.post(rotate_key), methods=["POST"]),
        Route("/keys/{key_id}/revoke", console.post(revoke_key), methods=["POST"]),
        Route("/policies", console.get(policies), methods=["GET"]),
        Route("/policies", console.post(add_policy), methods=["POST"]),
        Route("/policies/{policy_id}/remove", console.post(remove_policy), methods=["POST"]),
    ]
