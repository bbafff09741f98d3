"""Per-user OAuth connections: each consumer's upstream tokens, sealed by the vault, and the
short-lived, single-use tickets and states of the connect flow.

Tokens are kept per (consumer, API) and only ever read by that key, so one consumer's
call cannot pick up another's token. Calls are blocking: async callers use a thread.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import delete, select

from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import oauth_connections, oauth_pending, row_id

COUNTER = "connections"
TABLE = oauth_connections.name
PENDING = oauth_pending.name


class Sealer(Protocol):
    """Encrypts values bound to their row (the vault)."""

    def seal(self, table: str, row_id: str, column: str, plaintext: str) -> bytes: ...

    def unseal(self, table: str, row_id: str, column: str, blob: bytes) -> str: ...


@dataclass(slots=True)
class StoredToken:
    """A consumer's token as stored; the repr hides the tokens."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    issued_at: float = 0.0
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What may be shown about a connection: never its tokens."""

    consumer: str
    api: str
    scope: str | None
    expires_at: float | None
    created_at: float
    updated_at: float

    def public(self) -> dict[str, object]:
        return {
            "consumer": self.consumer,
            "api": self.api,
            "scope": self.scope,
            "expires_at": self.expires_at,
            "connected_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Pending:
    """A connect ticket or an authorization state, once redeemed."""

    consumer: str
    api: str
    verifier: str | None = field(default=None, repr=False)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ConnectionStore:
    """The `oauth_connections` and `oauth_pending` tables."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer

    @staticmethod
    def _row_id(consumer: str, api: str) -> str:
        return row_id(consumer, api)

    def save(self, consumer: str, api: str, token: StoredToken) -> None:
        """Store (or replace) a consumer's token for an API."""
        row = self._row_id(consumer, api)
        access = self.sealer.seal(TABLE, row, "access_token", token.access_token)
        refresh = self.sealer.seal(TABLE, row, "refresh_token", token.refresh_token) if token.refresh_token else None
        now = time.time()
        changes = {
            "access_token": access,
            "refresh_token": refresh,
            "expires_at": token.expires_at,
            "issued_at": token.issued_at,
            "scope": token.scope,
            "updated_at": now,
        }
        with self.db.transaction(COUNTER) as tx:
            self.db.upsert(
                tx, oauth_connections, {"consumer": consumer, "api": api, "created_at": now, **changes}, changes
            )

    def load(self, consumer: str, api: str) -> StoredToken | None:
        """The consumer's token for `api` (VaultError if it cannot be decrypted)."""
        c = oauth_connections.c
        rows = self.db.query(
            select(c.access_token, c.refresh_token, c.expires_at, c.issued_at, c.scope).where(
                c.consumer == consumer, c.api == api
            )
        )
        if not rows:
            return None
        access, refresh, expires_at, issued_at, scope = rows[0]
        row = self._row_id(consumer, api)
        return StoredToken(
            access_token=self.sealer.unseal(TABLE, row, "access_token", access),
            refresh_token=self.sealer.unseal(TABLE, row, "refresh_token", refresh) if refresh else None,
            expires_at=expires_at,
            issued_at=issued_at,
            scope=scope,
        )

    def delete(self, consumer: str, api: str) -> bool:
        """Forget a connection; True if there was one."""
        c = oauth_connections.c
        with self.db.transaction(COUNTER) as tx:
            return tx.execute(delete(oauth_connections).where(c.consumer == consumer, c.api == api)).rowcount > 0

    def list(self, consumer: str | None = None) -> list[ConnectionInfo]:
        """Connections (of one consumer, or all), without their tokens."""
        c = oauth_connections.c
        stmt = select(c.consumer, c.api, c.scope, c.expires_at, c.created_at, c.updated_at)
        stmt = stmt.where(c.consumer == consumer).order_by(c.api) if consumer else stmt.order_by(c.consumer, c.api)
        return [ConnectionInfo(*row) for row in self.db.query(stmt)]

    def revision(self) -> int:
        """Bumped by every connection change (so other processes drop their cached tokens)."""
        return self.db.revision(COUNTER)

    # -- the connect flow's single-use keys ---------------------------------

    def add_pending(
        self, kind: str, key: str, consumer: str, api: str, ttl: float, verifier: str | None = None
    ) -> None:
        """Remember a ticket or state (only its hash is stored) for `ttl` seconds."""
        sealed = self.sealer.seal(PENDING, _hash(key), "verifier", verifier) if verifier else None
        now = time.time()
        with self.db.transaction() as tx:
            tx.execute(delete(oauth_pending).where(oauth_pending.c.expires_at < now))
            tx.execute(
                oauth_pending.insert().values(
                    key_hash=_hash(key), kind=kind, consumer=consumer, api=api, verifier=sealed, expires_at=now + ttl
                )
            )

    def peek(self, kind: str, key: str) -> Pending | None:
        """A live ticket or state, left in place (without its verifier)."""
        p = oauth_pending.c
        rows = self.db.query(
            select(p.consumer, p.api).where(p.key_hash == _hash(key), p.kind == kind, p.expires_at >= time.time())
        )
        return Pending(*rows[0]) if rows else None

    def redeem(self, kind: str, key: str) -> Pending | None:
        """Take a ticket or state: valid once, before it expires."""
        digest = _hash(key)
        p = oauth_pending.c
        with self.db.transaction() as tx:
            row = tx.execute(
                select(p.consumer, p.api, p.verifier, p.expires_at).where(p.key_hash == digest, p.kind == kind)
            ).first()
            if row is None:
                return None
            # Only the transaction whose DELETE removed the row redeems it: on PostgreSQL a concurrent
            # one may have read it too, and its DELETE then waits and removes nothing.
            if tx.execute(delete(oauth_pending).where(p.key_hash == digest)).rowcount == 0:
                return None
        consumer, api, sealed, expires_at = row
        if expires_at < time.time():
            return None
        verifier = self.sealer.unseal(PENDING, digest, "verifier", sealed) if sealed else None
        return Pending(consumer, api, verifier)
