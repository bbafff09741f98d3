"""Per-user OAuth: the connect flow (authorization code + PKCE) and each consumer's tokens.

A consumer who calls an operation needing their own account gets a connect link holding a
single-use ticket (ten minutes). Opening it shows a confirmation page naming the consumer
(so a link sent by someone else is not followed blindly), whose button starts the flow at
the provider; the callback exchanges the code, with the PKCE verifier, and stores the
tokens sealed by the vault. Tokens are read and written only under (consumer, API).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio.to_thread
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from mcp_gateway.config import UserOAuthCredential
from mcp_gateway.store.connections import ConnectionInfo, ConnectionStore, StoredToken
from mcp_gateway.upstream.oauth import OAuthClient, Token, TokenError

TICKET_SECONDS = 600.0
STATE_SECONDS = 600.0


class ConnectError(Exception):
    """The connect flow cannot go on; the message is safe to show the user."""


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """How one API's per-user OAuth works: the credential and its endpoints (secret resolved)."""

    api: str
    credential: UserOAuthCredential
    authorization_url: str
    client: OAuthClient


def _token(stored: StoredToken) -> Token:
    return Token(stored.access_token, stored.expires_at, stored.refresh_token, stored.scope, stored.issued_at)


def _stored(token: Token) -> StoredToken:
    return StoredToken(token.access_token, token.refresh_token, token.expires_at, token.issued_at, token.scope)


class Connections:
    """Consumers' upstream tokens (the `UserTokens` of upstream/credentials) and the connect flow."""

    def __init__(self, store: ConnectionStore, public_url: str, apps: Callable[[str], OAuthApp | None]) -> None:
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.apps = apps  # API name -> its per-user OAuth app (blocking: resolves the client secret)
        self._cache: dict[tuple[str, str], Token] = {}
        self._revision = -1

    @property
    def redirect_uri(self) -> str:
        """The callback URL to register with each provider."""
        return f"{self.public_url}/oauth/callback"

    # -- UserTokens ---------------------------------------------------------

    async def load(self, consumer: str, api: str, cached: bool = True) -> Token | None:
        key = (consumer, api)
        cache = self._cache  # a read that a refresh_cache overtakes may be stale: kept in the old cache only
        if cached and key in cache:
            return cache[key]
        stored = await anyio.to_thread.run_sync(self.store.load, consumer, api)
        token = _token(stored) if stored is not None else None
        if token is None:
            cache.pop(key, None)
        else:
            cache[key] = token
        return token

    async def save(self, consumer: str, api: str, token: Token) -> None:
        await anyio.to_thread.run_sync(self.store.save, consumer, api, _stored(token))
        self._cache[(consumer, api)] = token

    async def forget(self, consumer: str, api: str) -> None:
        self._cache.pop((consumer, api), None)
        await anyio.to_thread.run_sync(self.store.delete, consumer, api)

    async def connect_url(self, consumer: str, api: str) -> str | None:
        ticket = secrets.token_urlsafe(32)
        await anyio.to_thread.run_sync(lambda: self.store.add_pending("ticket", ticket, consumer, api, TICKET_SECONDS))
        return f"{self.public_url}/oauth/connect/{api}?{urlencode({'ticket': ticket})}"

    async def refresh_cache(self) -> None:
        """Drop cached tokens when another process changed connections (poll of the store)."""
        revision = await anyio.to_thread.run_sync(self.store.revision)
        if revision != self._revision:
            self._revision = revision
            self._cache = {}  # a new dict: loads still in flight fill the old one

    # -- the flow -------------------------------------------------------------

    async def _app(self, api: str) -> OAuthApp:
        try:
            app = await anyio.to_thread.run_sync(self.apps, api)
        except Exception as exc:  # a vault or binding fault: its message names it, never a secret
            raise ConnectError(f"per-user OAuth of API {api!r} is misconfigured: {exc}") from None
        if app is None:
            raise ConnectError(f"API {api!r} does not use per-user OAuth")
        return app

    async def peek_ticket(self, api: str, ticket: str) -> str:
        """The consumer a ticket is for (the confirmation page), without spending it."""
        pending = await anyio.to_thread.run_sync(self.store.peek, "ticket", ticket)
        if pending is None or pending.api != api:
            raise ConnectError("this connect link is invalid or has expired: call the tool again for a new one")
        return pending.consumer

    async def begin(self, api: str, *, ticket: str | None = None, consumer: str | None = None) -> str:
        """Spend a ticket (or act for an authenticated consumer); returns the provider's authorize URL."""
        if ticket is not None:
            pending = await anyio.to_thread.run_sync(self.store.redeem, "ticket", ticket)
            if pending is None or pending.api != api:
                raise ConnectError("this connect link is invalid or has expired: call the tool again for a new one")
            consumer = pending.consumer
        if consumer is None:
            raise ConnectError("no consumer: open the link the tool gave you")
        app = await self._app(api)
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        await anyio.to_thread.run_sync(
            lambda: self.store.add_pending("state", state, consumer, api, STATE_SECONDS, verifier)
        )
        scopes = app.credential.scopes or []
        query = {
            "response_type": "code",
            "client_id": app.client.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            **({"scope": " ".join(scopes)} if scopes else {}),
        }
        sep = "&" if "?" in app.authorization_url else "?"
        return f"{app.authorization_url}{sep}{urlencode(query)}"

    async def finish(self, state: str, code: str) -> tuple[str, str]:
        """The callback: spend the state, exchange the code; returns (consumer, api)."""
        pending = await anyio.to_thread.run_sync(self.store.redeem, "state", state)
        if pending is None or pending.verifier is None:
            raise ConnectError("unknown or expired authorization state: start again from the connect link")
        app = await self._app(pending.api)
        try:
            token = await app.client.authorization_code(code, self.redirect_uri, pending.verifier)
        except TokenError as exc:
            raise ConnectError(f"the provider did not issue a token: {exc}") from None
        await self.save(pending.consumer, pending.api, token)
        return pending.consumer, pending.api

    async def finish_declined(self, state: str) -> None:
        """The provider sent an error instead of a code: spend the state."""
        await anyio.to_thread.run_sync(self.store.redeem, "state", state)

    async def disconnect(self, consumer: str, api: str) -> bool:
        """Forget a consumer's connection, revoking its tokens at the provider when it can."""
        stored = await self.load(consumer, api, cached=False)
        if stored is None:
            return False
        await self.forget(consumer, api)
        app = await anyio.to_thread.run_sync(self.apps, api)
        if app is not None and app.credential.revocation_url:
            token, hint = (
                (stored.refresh_token, "refresh_token")
                if stored.refresh_token
                else (stored.access_token, "access_token")
            )
            # Gone here either way; if the provider cannot be told, its copy expires on its own.
            with contextlib.suppress(TokenError):
                await app.client.revoke(app.credential.revocation_url, token, hint)
        return True

    async def list(self, consumer: str | None = None) -> list[ConnectionInfo]:
        """Connections without their tokens."""
        return await anyio.to_thread.run_sync(self.store.list, consumer)
