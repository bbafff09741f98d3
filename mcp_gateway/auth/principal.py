"""The identity a request runs as, whatever credential proved it."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Literal

Via = Literal["api_key", "jwt", "oauth", "local"]  # oauth: an opaque token, checked by introspection


@dataclass(frozen=True, slots=True)
class Principal:
    """A consumer, with the team and organisation its policies are looked up by."""

    consumer: str
    team: str | None = None
    org: str | None = None
    via: Via = "api_key"
    credential_id: str | None = None  # the API key id or token subject, for logs; never a secret
    scopes: frozenset[str] = frozenset()
    issuer: str | None = None  # the `iss` of a JWT; None for gateway keys and stdio


class Remembered:
    """Principals of bearer tokens already checked, by the tokens' SHA-256, each until its deadline.

    Bounded: when full, lapsed entries go, and if none has lapsed, all do.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._entries: dict[bytes, tuple[Principal, float]] = {}

    def get(self, token: str) -> Principal | None:
        """The principal remembered for `token`, if its deadline has not passed."""
        digest = hashlib.sha256(token.encode()).digest()
        found = self._entries.get(digest)
        if found is None:
            return None
        if time.time() < found[1]:
            return found[0]
        del self._entries[digest]
        return None

    def put(self, token: str, principal: Principal, until: float) -> None:
        """Remember `principal` for `token` until `until` (epoch seconds)."""
        now = time.time()
        if until <= now:
            return
        if len(self._entries) >= self.limit:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self.limit:
                self._entries.clear()
        self._entries[hashlib.sha256(token.encode()).digest()] = (principal, until)
