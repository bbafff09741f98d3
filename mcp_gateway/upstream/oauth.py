"""OAuth 2.0 token endpoint calls, through authlib's async client (on httpx2).

Every function returns a `Token` or raises `TokenError` with a message safe to show an
agent: the error code and description from the authorization server, never a secret and
never the raw response body (a misconfigured server may echo the request).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

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

    async def _call(self, coro: Any) -> dict[str, Any]:
        try:
            result = await coro
        except OAuthError as exc:
            description = f": {exc.description}" if exc.description else ""
            raise TokenError(f"token endpoint refused: {exc.error}{description}", exc.error) from None
        except httpx2.TimeoutException:
            raise TokenError(f"token endpoint timed out (limit {TOKEN_TIMEOUT:g}s)") from None
        except httpx2.HTTPError as exc:
            raise TokenError(f"token endpoint unreachable: {type(exc).__name__}") from None
        except ValueError:
            # Not JSON: typically an HTTP error page (authlib parses the body before the status).
            raise TokenError("token endpoint gave no token (a non-JSON answer)") from None
        return dict(result)

    async def client_credentials(
        self, scopes: Sequence[str] | None = None, extra: Mapping[str, str] | None = None
    ) -> Token:
        """RFC 6749 §4.4: a token for the client itself."""
        async with self._client(scopes) as client:
            data = await self._call(
                client.fetch_token(self.token_url, grant_type="client_credentials", **dict(extra or {}))
            )
        return Token.from_response(data)

    async def exchange(
        self, subject_token: str, scopes: Sequence[str] | None = None, extra: Mapping[str, str] | None = None
    ) -> Token:
        """RFC 8693: a token for the upstream, on behalf of the subject of `subject_token`."""
        params = {"subject_token": subject_token, "subject_token_type": ACCESS_TOKEN_TYPE, **dict(extra or {})}
        async with self._client(scopes) as client:
            data = await self._call(client.fetch_token(self.token_url, grant_type=TOKEN_EXCHANGE, **params))
        return Token.from_response(data)

    async def authorization_code(self, code: str, redirect_uri: str, code_verifier: str) -> Token:
        """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636)."""
        async with self._client(redirect_uri=redirect_uri) as client:
            data = await self._call(
                client.fetch_token(
                    self.token_url,
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=redirect_uri,
                    code_verifier=code_verifier,
                )
            )
        return Token.from_response(data)

    async def refresh(self, refresh_token: str) -> Token:
        """RFC 6749 §6; the old refresh token is kept when the server does not rotate it."""
        async with self._client() as client:
            data = await self._call(client.refresh_token(self.token_url, refresh_token=refresh_token))
        return Token.from_response(data, previous_refresh=refresh_token)

    async def revoke(self, revocation_url: str, token: str, hint: str = "refresh_token") -> None:
        """RFC 7009, best effort: a failure is reported but the local tokens are gone either way."""
        async with self._client() as client:
            try:
                response = await client.revoke_token(revocation_url, token=token, token_type_hint=hint)
            except httpx2.HTTPError as exc:
                raise TokenError(f"revocation endpoint unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise TokenError(f"revocation endpoint answered HTTP {response.status_code}")
