"""API-key authentication with a cache that a revocation empties.

Look-ups go to the store once per key id and then come from memory; every
identity change made in this process empties the cache at once, and changes
made elsewhere (CLI, other replicas) are seen within one store poll.
"""

from __future__ import annotations

import time

import anyio.to_thread

from mcp_gateway.auth import keys
from mcp_gateway.auth.principal import Principal, token_digest
from mcp_gateway.store.identities import ApiKey, Consumer, IdentityStore

MAX_CACHED = 10_000


class AuthFailure(Exception):
    """A credential that was refused; `error` is the RFC 6750 error code.

    `insufficient_scope` is answered with 403 and `scope` (the scopes needed), anything else with 401.
    """

    def __init__(self, description: str, error: str = "invalid_token", scope: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.scope = scope

    @property
    def status(self) -> int:
        """The HTTP status to answer with (RFC 6750 §3.1)."""
        return 403 if self.error == "insufficient_scope" else 401


class ApiKeyAuthenticator:
    """Turns `mgw_...` keys into principals."""

    def __init__(self, store: IdentityStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[ApiKey | None, Consumer | None]] = {}
        # Keys already checked, by the presented key's digest (never the key itself): a known
        # key costs one hash and a lookup. Dropped with the cache on any identity change.
        self._verified: dict[bytes, tuple[ApiKey, Principal]] = {}

    def invalidate(self) -> None:
        """Forget everything cached (after any identity change)."""
        self._cache = {}
        self._verified = {}

    def _load(self, key_id: str) -> tuple[ApiKey | None, Consumer | None]:
        key = self.store.key(key_id)
        return key, (self.store.consumer(key.consumer) if key is not None else None)

    def known(self, token: bytes) -> Principal | None:
        """The principal of a key (as sent, in bytes) that already passed and is still usable,
        without a wait; None when `authenticate` must decide (an unknown, changed or lapsed key)."""
        found = self._verified.get(token_digest(token))
        if found is not None and found[0].usable(time.time()):
            return found[1]
        return None

    async def authenticate(self, token: str) -> Principal:
        """The principal of a presented key; AuthFailure when it is not a usable key."""
        raw = token.encode()
        known = self.known(raw)
        if known is not None:
            return known
        verified = self._verified
        digest = token_digest(raw)
        parsed = keys.parse(token)
        if parsed is None:
            raise AuthFailure("not a gateway API key")
        key_id, secret = parsed
        cache = self._cache
        entry = cache.get(key_id)
        if entry is None:
            entry = await anyio.to_thread.run_sync(self._load, key_id)
            # Kept only if no invalidation came while it was read: it may predate a revocation.
            if cache is self._cache:
                if len(cache) >= MAX_CACHED:
                    cache = self._cache = {}  # bounded: unknown ids cannot grow it without limit
                cache[key_id] = entry
        key, consumer = entry
        # The same answer for an unknown id and a wrong secret: which ids exist is not told.
        if key is None or consumer is None or not keys.matches(secret, key.secret_hash):
            raise AuthFailure("unknown API key")
        if key.revoked_at is not None:
            raise AuthFailure("API key revoked")
        if not key.usable(time.time()):
            raise AuthFailure("API key expired")
        if consumer.disabled:
            raise AuthFailure("consumer disabled")
        principal = Principal(consumer.name, consumer.team, consumer.org, "api_key", key.key_id)
        if verified is self._verified:  # no invalidation came while the key was read
            if len(verified) >= MAX_CACHED:
                verified.clear()
            verified[digest] = (key, principal)
        return principal
