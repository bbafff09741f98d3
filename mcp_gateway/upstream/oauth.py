"""OAuth 2.0 token endpoint calls, through authlib's async client (on httpx2).

Every function returns a `Token` or raises `TokenError` with a message safe to show an
agent: the error code and description from the authorization server, never the raw
response body. A server that echoes the request into its error description would quote
the client secret, a refresh token, a subject token or a code: every failure goes through
`_failure`, which scrubs the message of every secret in play for that client and call.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from mcp_gateway.upstream.scrub import scrubber

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TIMEOUT = 15.0


class TokenError(Exception):
    """The authorization server did not issue a token. `error` is the OAuth error code, if any."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass(slots=True)
class Token:
    """An access token (and maybe a refresh token) with its expiry. The repr hides both tokens."""

    access_token: str = field(repr=False)
    expires_at: float | None = None  # epoch seconds; None when the server did not say
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    issued_at: float = field(default_factory=time.time)

    def fresh(self, now: float | None = None) -> bool:
        """Usable for a while yet: refreshed before expiry by a tenth of its life (at most 60 s)."""
        if self.expires_at is None:
            return True
        now = time.time() if now is None else now
        margin = min(60.0, max(0.0, (self.expires_at - self.issued_at) * 0.1))
        return now < self.expires_at - margin

    @classmethod
    def from_response(cls, data: Mapping[str, Any], previous_refresh: str | None = None) -> Token:
        """From a token endpoint's JSON; keeps the old refresh token when none is issued (RFC 6749 §6)."""
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenError("the token endpoint answered without an access_token")
        token_type = str(data.get("token_type") or "bearer").lower()
        if token_type not in ("bearer", "n_a"):  # n_a: RFC 8693 tokens that are not access tokens
            raise TokenError(f"unsupported token_type {token_type!r} (only Bearer is supported)")
        now = time.time()
        expires_in = data.get("expires_in")
        expires_at: float | None = None
        if isinstance(expires_in, int | float) or (isinstance(expires_in, str) and expires_in.isdigit()):
            expires_at = now + float(expires_in)
        elif isinstance(data.get("expires_at"), int | float):
            expires_at = float(data["expires_at"])
        refresh = data.get("refresh_token")
        return cls(
            access_token=access,
            expires_at=expires_at,
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            scope=str(data["scope"]) if data.get("scope") else None,
            issued_at=now,
        )


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A registered OAuth client of one authorization server (the gateway's, per upstream API)."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    token_url: str = ""
    auth_method: str = "client_secret_basic"
    user_agent: str = "mcp-gateway"
    # Made once (it reads CA files), where the client is made: not on the event loop per request.
    tls: ssl.SSLContext = field(default_factory=lambda: httpx2.create_ssl_context(trust_env=False), repr=False)

    def _client(self, scope: Sequence[str] | None = None, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        method = "none" if self.auth_method == "none" or not self.client_secret else self.auth_method
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method=method,
            revocation_endpoint_auth_method=method,
            scope=" ".join(scope) if scope else None,
            redirect_uri=redirect_uri,
            timeout=TOKEN_TIMEOUT,
            verify=self.tls,
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": self.user_agent},
        )

    async def _grant(
        self,
        fetch: Callable[[AsyncOAuth2Client], Awaitable[Any]],
        in_play: Sequence[str | None],
        previous_refresh: str | None = None,
        **client_args: Any,
    ) -> Token:
        """One token request. Every failure, whatever raised it, leaves as a TokenError scrubbed
        of the client secret, the call's own secrets and any token the server did hand out."""
        secrets = [self.client_secret, *in_play]
        try:
            async with self._client(**client_args) as client:
                data = dict(await fetch(client))
            secrets += [v for k in ("access_token", "refresh_token") if isinstance(v := data.get(k), str)]
            return Token.from_response(data, previous_refresh)
        except Exception as exc:
            raise _failure(exc, secrets) from None

    async def client_credentials(
        self, scopes: Sequence[str] | None = None, extra: Mapping[str, str] | None = None
    ) -> Token:
        """RFC 6749 §4.4: a token for the client itself."""
        params = dict(extra or {})
        return await self._grant(
            lambda c: c.fetch_token(self.token_url, grant_type="client_credentials", **params),
            [],
            scope=scopes,
        )

    async def exchange(
        self, subject_token: str, scopes: Sequence[str] | None = None, extra: Mapping[str, str] | None = None
    ) -> Token:
        """RFC 8693: a token for the upstream, on behalf of the subject of `subject_token`."""
        params = {"subject_token": subject_token, "subject_token_type": ACCESS_TOKEN_TYPE, **dict(extra or {})}
        return await self._grant(
            lambda c: c.fetch_token(self.token_url, grant_type=TOKEN_EXCHANGE, **params),
            [subject_token],
            scope=scopes,
        )

    async def authorization_code(self, code: str, redirect_uri: str, code_verifier: str) -> Token:
        """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636)."""
        return await self._grant(
            lambda c: c.fetch_token(
                self.token_url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
            ),
            [code, code_verifier],
            redirect_uri=redirect_uri,
        )

    async def refresh(self, refresh_token: str) -> Token:
        """RFC 6749 §6; the old refresh token is kept when the server does not rotate it."""
        return await self._grant(
            lambda c: c.refresh_token(self.token_url, refresh_token=refresh_token),
            [refresh_token],
            previous_refresh=refresh_token,
        )

    async def revoke(self, revocation_url: str, token: str, hint: str = "refresh_token") -> None:
        """RFC 7009, best effort: a failure is reported but the local tokens are gone either way."""
        try:
            async with self._client() as client:
                response = await client.revoke_token(revocation_url, token=token, token_type_hint=hint)
        except Exception as exc:
            raise _failure(exc, [self.client_secret, token], "revocation endpoint") from None
        if response.status_code >= 400:
            raise TokenError(f"revocation endpoint answered HTTP {response.status_code}")


def _failure(exc: Exception, secrets: Sequence[str | None], endpoint: str = "token endpoint") -> TokenError:
    """The one way an OAuth failure leaves: its message (and error code) scrubbed of `secrets`."""
    if isinstance(exc, OAuthError):
        description = f": {exc.description}" if exc.description else ""
        message, error = f"{endpoint} refused: {exc.error}{description}", exc.error
    elif isinstance(exc, TokenError):
        message, error = str(exc), exc.error
    elif isinstance(exc, httpx2.TimeoutException):
        message, error = f"{endpoint} timed out (limit {TOKEN_TIMEOUT:g}s)", None
    elif isinstance(exc, httpx2.HTTPError):
        message, error = f"{endpoint} unreachable: {type(exc).__name__}", None
    elif isinstance(exc, ValueError):
        # Not JSON: typically an HTTP error page (authlib parses the body before the status).
        message, error = f"{endpoint} gave no token (a non-JSON answer)", None
    else:
        message, error = f"{endpoint} request failed: {type(exc).__name__}", None
    scrub = scrubber(secrets)
    return TokenError(scrub.text(message), scrub.text(error) if error else None)
