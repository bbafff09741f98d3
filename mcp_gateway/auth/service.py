"""Access control for one gateway: authenticate credentials, hold the current policies.

Identity data lives in the store; this keeps what the hot path needs in memory
(key look-ups, the indexed policies, per-principal tool views) and reloads it
when the store's identity revision moves: at once after a change made through
this process, within one poll after a change made elsewhere.
"""

from __future__ import annotations

import anyio.to_thread

from mcp_gateway.auth import keys
from mcp_gateway.auth.apikeys import ApiKeyAuthenticator, AuthFailure
from mcp_gateway.auth.introspection import Introspector
from mcp_gateway.auth.jwt import JwtVerifier
from mcp_gateway.auth.principal import Principal
from mcp_gateway.policy.access import AccessPolicy
from mcp_gateway.store.identities import IdentityStore


class AccessControl:
    """Credentials in, principals out; and the policy that filters what they see."""

    def __init__(
        self,
        store: IdentityStore,
        *,
        enabled: bool,
        jwt: JwtVerifier | None = None,
        introspector: Introspector | None = None,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.keys = ApiKeyAuthenticator(store)
        self.jwt = jwt  # None: no trusted issuers, only gateway keys
        self.introspector = introspector  # None: no issuer with an introspection endpoint
        self.policy = AccessPolicy(())
        self.disabled: frozenset[str] = frozenset()
        self._revision = -1

    async def reload(self) -> None:
        """Read policies again and forget cached keys."""
        revision = await anyio.to_thread.run_sync(self.store.revision)
        policies = await anyio.to_thread.run_sync(self.store.policies)
        self.policy = AccessPolicy(policies)
        self.disabled = await anyio.to_thread.run_sync(self.store.disabled_consumers)
        self.keys.invalidate()
        self._revision = revision

    async def refresh(self) -> bool:
        """Reload when another process changed identities; True if it did."""
        if await anyio.to_thread.run_sync(self.store.revision) == self._revision:
            return False
        await self.reload()
        return True

    def known(self, token: bytes) -> Principal | None:
        """The principal of a gateway key that already passed, answered without a wait (the
        common case: a client presents its key on every request); None: ask `authenticate`."""
        return self.keys.known(token)

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a bearer credential (AuthFailure when refused).

        `mgw_...` is a gateway key; a JWT (three dot-separated parts) is verified against the
        trusted issuers' keys; any other token goes to their introspection endpoints.
        A JWT principal is not looked up in the consumers table: its policies are found by the
        consumer, team and org its claims name, exactly as for a key's consumer.
        """
        if token.startswith(keys.PREFIX) or (self.jwt is None and self.introspector is None):
            return await self.keys.authenticate(token)
        if self.introspector is not None and (self.jwt is None or token.count(".") != 2):
            principal = await self.introspector.authenticate(token)  # opaque: only its issuer can tell
        else:
            assert self.jwt is not None
            principal = await self.jwt.authenticate(token)
        # A disabled consumer is refused whatever proves its name, an issuer's token included.
        if principal.consumer in self.disabled:
            raise AuthFailure("consumer disabled")
        return principal

    async def aclose(self) -> None:
        """Release the JWT verifier's HTTP client."""
        if self.jwt is not None:
            await self.jwt.aclose()
        if self.introspector is not None:
            await self.introspector.aclose()

    async def local_principal(self, consumer: str) -> Principal:
        """The principal stdio runs as: a configured consumer, without network auth."""
        found = await anyio.to_thread.run_sync(self.store.consumer, consumer)
        if found is None:
            raise AuthFailure(f"stdio consumer {consumer!r} does not exist (create it with mcp-gateway consumers add)")
        if found.disabled:
            raise AuthFailure(f"stdio consumer {consumer!r} is disabled (mcp-gateway consumers enable {consumer})")
        return Principal(found.name, found.team, found.org, "local")
