"""Opaque access tokens, checked at the issuer's RFC 7662 introspection endpoint.

Tokens that are not JWTs cannot be verified locally: the gateway asks each issuer that has
an introspection endpoint, as a confidential client of it, and applies the same rules as to
a JWT's claims (issuer, audience, expiry, required scopes, the consumer/team/org claims).
An active answer is reused for `introspection_cache_seconds` at most (and never past the
token's expiry), so a revocation at the issuer takes effect within that time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httpx2

from mcp_gateway.auth.apikeys import AuthFailure
from mcp_gateway.auth.jwt import principal_from_claims, same_resource
from mcp_gateway.auth.principal import Principal, Remembered
from mcp_gateway.config import AuthConfig, IssuerConfig

logger = logging.getLogger(__name__)
MAX_REMEMBERED = 10_000
TIMEOUT = 10.0


class Introspector:
    """Checks opaque tokens at the introspection endpoints of the trusted issuers that have one."""

    def __init__(self, auth: AuthConfig, resolve: Callable[[str], str], *, user_agent: str = "mcp-gateway") -> None:
        self.resource = auth.resource
        self.required_scopes = frozenset(auth.required_scopes)
        self.issuers = [i for i in auth.issuers if i.introspection_endpoint]
        self.resolve = resolve
        self.user_agent = user_agent
        self._secrets: dict[str, str] = {}
        self._client: httpx2.AsyncClient | None = None
        self._active = Remembered(MAX_REMEMBERED)  # active answers, reused until their deadline

    def forget_secrets(self) -> None:
        """The vault changed: read the client secrets again at their next use."""
        self._secrets = {}

    async def authenticate(self, token: str) -> Principal:
        """The principal of an active token; AuthFailure otherwise."""
        remembered = self._active.get(token)
        if remembered is not None:
            return remembered
        unreachable = False
        for issuer in self.issuers:
            try:
                claims = await self._ask(issuer, token)
            except Exception as exc:  # unreachable, a bad answer, its client secret not in the vault...
                logger.warning("introspection at %s failed: %s", issuer.introspection_endpoint, type(exc).__name__)
                unreachable = True
                continue
            if claims is None:
                continue
            principal, until = self._admit(claims, issuer)
            self._active.put(token, principal, until)
            return principal
        raise AuthFailure("token could not be checked" if unreachable else "token is not active")

    async def _ask(self, issuer: IssuerConfig, token: str) -> dict[str, Any] | None:
        """The issuer's claims for an active token; None when it says the token is not active (or not its)."""
        assert issuer.introspection_endpoint and issuer.introspection_client_id
        secrets = self._secrets  # a secret read while they are forgotten is not kept (it may be the old one)
        secret = secrets.get(issuer.issuer)
        if secret is None:
            ref = issuer.introspection_client_secret or ""
            secret = secrets[issuer.issuer] = await anyio.to_thread.run_sync(self.resolve, ref)
        if self._client is None:
            self._client = await anyio.to_thread.run_sync(
                lambda: httpx2.AsyncClient(
                    timeout=TIMEOUT, trust_env=False, follow_redirects=False, headers={"User-Agent": self.user_agent}
                )
            )
        response = await self._client.post(
            issuer.introspection_endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            auth=(issuer.introspection_client_id, secret),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        claims = response.json()
        if not isinstance(claims, dict):
            raise ValueError("not a JSON object")
        if claims.get("active") is not True:
            return None
        if "iss" in claims and claims["iss"] != issuer.issuer:
            return None
        return claims

    def _admit(self, claims: dict[str, Any], issuer: IssuerConfig) -> tuple[Principal, float]:
        """The same rules as for a JWT's claims; returns the principal and how long to reuse it."""
        now = time.time()
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp <= now:
            raise AuthFailure("token expired")
        audience = issuer.audience or self.resource
        aud = claims.get("aud")
        if aud is not None:
            audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and same_resource(a, audience) for a in audiences):
                raise AuthFailure("token audience is not this resource")
        principal = principal_from_claims(claims, issuer, via="oauth")
        if self.required_scopes - principal.scopes:
            raise AuthFailure(
                "token lacks a required scope", error="insufficient_scope", scope=" ".join(sorted(self.required_scopes))
            )
        until = now + issuer.introspection_cache_seconds
        if isinstance(exp, int | float):
            until = min(until, float(exp))
        return principal, until

    async def aclose(self) -> None:
        """Release the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
