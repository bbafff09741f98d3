"""ASGI middleware that requires a bearer credential and records who presented it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.auth.apikeys import AuthFailure
from mcp_gateway.auth.principal import Principal

Authenticate = Callable[[str], Awaitable[Principal]]
Known = Callable[[bytes], Principal | None]  # the token as sent
REALM = "mcp-gateway"
MAX_USERS = 10_000  # principals whose user object is kept (then all are dropped)


def challenge(
    error: str | None = None,
    description: str | None = None,
    resource_metadata: str | None = None,
    scope: str | None = None,
) -> str:
    """A `WWW-Authenticate: Bearer ...` value (RFC 6750, with RFC 9728's resource_metadata)."""
    parts = [f'realm="{REALM}"']
    if resource_metadata:
        parts.append(f'resource_metadata="{resource_metadata}"')
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return "Bearer " + ", ".join(parts)


class RequireCredential:
    """401 without a valid bearer credential (403 for a token lacking a required scope);
    otherwise the Principal rides in `scope["state"]`.

    `resource_metadata` (the RFC 9728 metadata URL) and `scope` (the scopes a token needs)
    go into every challenge, so that an OAuth client can find the authorization server.

    `scope["user"]` is set too, in the SDK's shape, so that a stateful MCP session
    only ever answers the principal that opened it.
    """

    def __init__(
        self,
        app: ASGIApp,
        authenticate: Authenticate,
        *,
        known: Known | None = None,
        resource_metadata: str | None = None,
        scope: str | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.known = known  # a credential already checked, answered in place (no coroutine to await)
        self.resource_metadata = resource_metadata
        self.scope = scope
        # The SDK's user object per principal (a pydantic model, read-only once made): built once.
        # Keyed by identity, not by value: a principal's hash is computed anew on every lookup,
        # and a checked credential's principal is the same object each time. The entry keeps its
        # principal alive, so the id cannot be reused while it is cached.
        self._users: dict[int, tuple[Principal, AuthenticatedUser]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope["headers"]:  # a plain loop: this runs on every request
            if name == b"authorization":
                header = value
                break
        # Sliced rather than split and decoded: each object made here is paid on every request.
        raw = header[7:].strip()  # strip() returns the value itself when there is nothing to strip
        if header[:7].lower() != b"bearer " or not raw:
            await self._refuse(scope, receive, send, None)
            return
        principal = self.known(raw) if self.known is not None else None
        if principal is None:
            try:
                principal = await self.authenticate(raw.decode("latin-1"))
            except AuthFailure as failure:
                await self._refuse(scope, receive, send, failure)
                return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        if principal.via in ("jwt", "oauth"):
            # Kept only for RFC 8693 token exchange: sent to a configured token endpoint as the
            # subject token, never to an upstream API (MCP forbids token passthrough).
            state["subject_token"] = raw.decode("latin-1")
        cached = self._users.get(id(principal))
        if cached is not None and cached[0] is principal:
            user = cached[1]
        else:
            # A session is owned by (issuer, consumer): the same name from another issuer is someone else.
            issuer = principal.issuer or f"{REALM}:{principal.via}"
            user = AuthenticatedUser(
                AccessToken(token="", client_id=principal.consumer, scopes=sorted(principal.scopes),
                            subject=principal.consumer, claims={"iss": issuer})
            )  # fmt: skip
            if len(self._users) >= MAX_USERS:
                self._users.clear()
            self._users[id(principal)] = (principal, user)
        scope["user"] = user
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, failure: AuthFailure | None) -> None:
        if failure is None:
            # No credential at all: a bare challenge, without an error code (RFC 6750 §3.1).
            body = {"error": "invalid_request", "error_description": "a bearer credential is required"}
            header = challenge(None, None, self.resource_metadata, self.scope)
            status = 401
        else:
            body = {"error": failure.error, "error_description": failure.description}
            header = challenge(failure.error, failure.description, self.resource_metadata, failure.scope or self.scope)
            status = failure.status
        await JSONResponse(body, status_code=status, headers={"WWW-Authenticate": header})(scope, receive, send)
