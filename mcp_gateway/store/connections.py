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

from mcp_gateway.store.database import Database

COUNTER = "connections"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_connections (
    consumer      TEXT NOT NULL,
    api           TEXT NOT NULL,
    access_token  BLOB NOT NULL,
    refresh_token BLOB,
    expires_at    REAL,
    issued_at     REAL NOT NULL,
    scope         TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    PRIMARY KEY (consumer, api)
);
CREATE TABLE IF NOT EXISTS oauth_pending (
    key_hash   TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    consumer   TEXT NOT NULL,
    api        TEXT NOT NULL,
    verifier   BLOB,
    expires_at REAL NOT NULL
);
"""
TABLE = "oauth_connections"
ROW_ID_SQL = "consumer || char(0) || api"
# (table, row-id SQL, columns) of every sealed value here: master-key rotation re-encrypts them.
SEALED = ((TABLE, ROW_ID_SQL, ("access_token", "refresh_token")), ("oauth_pending", "key_hash", ("verifier",)))


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
        db.migrate(_SCHEMA, COUNTER)

    @staticmethod
    def _row_id(consumer: str, api: str) -> str:
        return f"{consumer}\0{api}"

    def save(self, consumer: str, api: str, token: StoredToken) -> None:
        """Store (or replace) a consumer's token for an API."""
        row = self._row_id(consumer, api)
        access = self.sealer.seal(TABLE, row, "access_token", token.access_token)
        refresh = self.sealer.seal(TABLE, row, "refresh_token", token.refresh_token) if token.refresh_token else None
        now = time.time()
        with self.db.transaction(COUNTER) as tx:
            tx.execute(
                """INSERT INTO oauth_connections (consumer, api, access_token, refresh_token, expires_at, issued_at,
                       scope, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (consumer, api) DO UPDATE SET access_token = excluded.access_token,
                       refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
                       issued_at = excluded.issued_at, scope = excluded.scope, updated_at = excluded.updated_at""",
                (consumer, api, access, refresh, token.expires_at, token.issued_at, token.scope, now, now),
            )

    def load(self, consumer: str, api: str) -> StoredToken | None:
        """The consumer's token for `api` (VaultError if it cannot be decrypted)."""
        rows = self.db.query(
            "SELECT access_token, refresh_token, expires_at, issued_at, scope FROM oauth_connections "
            "WHERE consumer = ? AND api = ?",
            (consumer, api),
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
        with self.db.transaction(COUNTER) as tx:
            cursor = tx.execute("DELETE FROM oauth_connections WHERE consumer = ? AND api = ?", (consumer, api))
            return cursor.rowcount > 0

    def list(self, consumer: str | None = None) -> list[ConnectionInfo]:
        """Connections (of one consumer, or all), without their tokens."""
        sql = "SELECT consumer, api, scope, expires_at, created_at, updated_at FROM oauth_connections"
        rows = (
            self.db.query(sql + " WHERE consumer = ? ORDER BY api", (consumer,))
            if consumer
            else self.db.query(sql + " ORDER BY consumer, api")
        )
        return [ConnectionInfo(*row) for row in rows]

    def revision(self) -> int:
        """Bumped by every connection change (so other processes drop their cached tokens)."""
        return self.db.revision(COUNTER)

    # -- the connect flow's single-use keys ---------------------------------

    def add_pending(
        self, kind: str, key: str, consumer: str, api: str, ttl: float, verifier: str | None = None
    ) -> None:
        """Remember a ticket or state (only its hash is stored) for `ttl` seconds."""
        sealed = self.sealer.seal("oauth_pending", _hash(key), "verifier", verifier) if verifier else None
        now = time.time()
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM oauth_pending WHERE expires_at < ?", (now,))
            tx.execute(
                "INSERT INTO oauth_pending (key_hash, kind, consumer, api, verifier, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(key), kind, consumer, api, sealed, now + ttl),
            )

    def peek(self, kind: str, key: str) -> Pending | None:
        """A live ticket or state, left in place (without its verifier)."""
        rows = self.db.query(
            "SELECT consumer, api FROM oauth_pending WHERE key_hash = ? AND kind = ? AND expires_at >= ?",
            (_hash(key), kind, time.time()),
        )
        return Pending(*rows[0]) if rows else None

    def redeem(self, kind: str, key: str) -> Pending | None:
        """Take a ticket or state: valid once, before it expires."""
        digest = _hash(key)
        with self.db.transaction() as tx:
            row = tx.execute(
                "SELECT consumer, api, verifier, expires_at FROM oauth_pending WHERE key_hash = ? AND kind = ?",
                (digest, kind),
            ).fetchone()
            if row is None:
                return None
            tx.execute("DELETE FROM oauth_pending WHERE key_hash = ?", (digest,))
        consumer, api, sealed, expires_at = row
        if expires_at < time.time():
            return None
        verifier = self.sealer.unseal("oauth_pending", digest, "verifier", sealed) if sealed else None
        return Pending(consumer, api, verifier)
