"""Consumers, their API keys, and access policies.

A consumer (a person, an app or an agent) belongs to a team and an organisation,
both plain names. API keys are stored as SHA-256 hashes of their secret with a
short public id to find them; the secret itself is shown once, at creation.
Every write bumps the `identities` revision, which gateways poll to drop caches.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_gateway.store.database import Database

COUNTER = "identities"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS consumers (
    name        TEXT PRIMARY KEY,
    team        TEXT,
    org         TEXT,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id       TEXT PRIMARY KEY,
    consumer     TEXT NOT NULL REFERENCES consumers(name) ON DELETE CASCADE,
    secret_hash  TEXT NOT NULL,
    description  TEXT,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked_at   REAL
);
CREATE INDEX IF NOT EXISTS api_keys_consumer ON api_keys(consumer);
CREATE TABLE IF NOT EXISTS policies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_kind TEXT NOT NULL,
    subject      TEXT NOT NULL,
    effect       TEXT NOT NULL,
    selector     TEXT NOT NULL,
    description  TEXT,
    created_at   REAL NOT NULL
);
"""

SubjectKind = Literal["key", "consumer", "team", "org", "everyone"]
SUBJECT_KINDS: tuple[str, ...] = ("key", "consumer", "team", "org", "everyone")
Effect = Literal["allow", "deny"]


class IdentityError(ValueError):
    """A request about identities that cannot be carried out (unknown consumer, duplicate...)."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """Someone or something that calls the gateway."""

    name: str
    team: str | None = None
    org: str | None = None
    disabled: bool = False
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its secret)."""

    key_id: str
    consumer: str
    secret_hash: str
    description: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def usable(self, now: float) -> bool:
        """Not revoked and not expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, Any]:
        """What may be shown about the key: everything but its hash."""
        return {
            "key_id": self.key_id,
            "consumer": self.consumer,
            "description": self.description,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class Selector:
    """Which tools and models a policy speaks of. Empty lists match everything.

    A selector with tool criteria (apis, tools, tags, methods, read_only) selects only tools; one
    with `models` selects only models; an empty one selects every tool and every model."""

    apis: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    read_only: bool | None = None
    models: tuple[str, ...] = ()  # model name globs; a selector naming models selects no tool

    @property
    def names_tools(self) -> bool:
        """Whether a tool criterion is given (then it selects no model)."""
        return bool(self.apis or self.tools or self.tags or self.methods or self.read_only is not None)

    @property
    def speaks_of_tools(self) -> bool:
        """Whether it can select tools (it names no model)."""
        return not self.models

    @property
    def speaks_of_models(self) -> bool:
        """Whether it can select models (it names no tool criterion)."""
        return not self.names_tools

    def to_json(self) -> str:
        data: dict[str, object] = {
            "apis": list(self.apis),
            "tools": list(self.tools),
            "tags": list(self.tags),
            "methods": list(self.methods),
            "read_only": self.read_only,
        }
        if self.models:
            data["models"] = list(self.models)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Selector:
        data = json.loads(text)
        return cls(
            apis=tuple(data.get("apis") or ()),
            tools=tuple(data.get("tools") or ()),
            tags=tuple(data.get("tags") or ()),
            methods=tuple(m.upper() for m in data.get("methods") or ()),
            read_only=data.get("read_only"),
            models=tuple(data.get("models") or ()),
        )


@dataclass(frozen=True, slots=True)
class Policy:
    """Allow or deny a subject (one API key, a consumer, team, org, or everyone) the tools and
    models a selector matches."""

    id: int
    subject_kind: SubjectKind
    subject: str
    effect: Effect
    selector: Selector = field(default_factory=Selector)
    description: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject_kind": self.subject_kind,
            "subject": self.subject,
            "effect": self.effect,
            "selector": json.loads(self.selector.to_json()),
            "description": self.description,
        }


def unknown_consumer_warning(name: str) -> str:
    """What to say about a policy for a consumer that does not exist (yet)."""
    return (
        f"there is no consumer named {name!r} yet: the policy applies once one exists, or to JWTs whose "
        "consumer claim names it (check the spelling otherwise)"
    )


def _key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(*row)


class IdentityStore:
    """Consumers, keys and policies in the gateway's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(_SCHEMA, COUNTER)
        db.query("PRAGMA foreign_keys = ON")

    def revision(self) -> int:
        """Changes whenever a consumer, key or policy changes."""
        return self.db.revision(COUNTER)

    # -- consumers -------------------------------------------------------------

    def add_consumer(self, name: str, team: str | None = None, org: str | None = None) -> Consumer:
        """Create a consumer; IdentityError if the name is taken."""
        consumer = Consumer(name, team, org, False, time.time())
        with self.db.transaction(COUNTER) as tx:
            if tx.execute("SELECT 1 FROM consumers WHERE name = ?", (name,)).fetchone():
                raise IdentityError(f"consumer {name!r} exists")
            tx.execute(
                "INSERT INTO consumers (name, team, org, disabled, created_at) VALUES (?, ?, ?, 0, ?)",
                (name, team, org, consumer.created_at),
            )
        return consumer

    def consumers(self) -> list[Consumer]:
        """All consumers, by name."""
        rows = self.db.query("SELECT name, team, org, disabled, created_at FROM consumers ORDER BY name")
        return [Consumer(n, t, o, bool(d), c) for n, t, o, d, c in rows]

    def consumer(self, name: str) -> Consumer | None:
        """One consumer, or None."""
        rows = self.db.query("SELECT name, team, org, disabled, created_at FROM consumers WHERE name = ?", (name,))
        return Consumer(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3]), rows[0][4]) if rows else None

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (or enable again) a consumer: its keys and tokens are refused meanwhile. False if unknown."""
        with self.db.transaction(COUNTER) as tx:
            cursor = tx.execute("UPDATE consumers SET disabled = ? WHERE name = ?", (int(disabled), name))
            return cursor.rowcount > 0

    def disabled_consumers(self) -> frozenset[str]:
        """Names of the disabled consumers."""
        return frozenset(row[0] for row in self.db.query("SELECT name FROM consumers WHERE disabled = 1"))

    def remove_consumer(self, name: str) -> tuple[int, int] | None:
        """Delete a consumer with its keys, its consumer-level policies and its keys' policies;
        returns how many keys and policies went with it, or None when there is no such consumer."""
        with self.db.transaction(COUNTER) as tx:
            policies = tx.execute(
                "DELETE FROM policies WHERE (subject_kind = 'consumer' AND subject = ?) OR (subject_kind = 'key' "
                "AND subject IN (SELECT key_id FROM api_keys WHERE consumer = ?))",
                (name, name),
            ).rowcount
            keys = tx.execute("DELETE FROM api_keys WHERE consumer = ?", (name,)).rowcount
            if tx.execute("DELETE FROM consumers WHERE name = ?", (name,)).rowcount == 0:
                return None
            return keys, policies

    # -- keys ------------------------------------------------------------------

    def add_key(
        self, key_id: str, consumer: str, secret_hash: str, *, expires_at: float | None, description: str | None
    ) -> ApiKey:
        """Store a new key for an existing consumer."""
        key = ApiKey(key_id, consumer, secret_hash, description, time.time(), expires_at, None)
        with self.db.transaction(COUNTER) as tx:
            if not tx.execute("SELECT 1 FROM consumers WHERE name = ?", (consumer,)).fetchone():
                raise IdentityError(f"no consumer named {consumer!r}")
            tx.execute(
                "INSERT INTO api_keys (key_id, consumer, secret_hash, description, created_at, expires_at, "
                "revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (key.key_id, consumer, secret_hash, description, key.created_at, expires_at),
            )
        return key

    def key(self, key_id: str) -> ApiKey | None:
        """One key by its public id, or None."""
        rows = self.db.query(
            "SELECT key_id, consumer, secret_hash, description, created_at, expires_at, revoked_at FROM api_keys "
            "WHERE key_id = ?",
            (key_id,),
        )
        return _key(rows[0]) if rows else None

    def keys(self, consumer: str | None = None) -> list[ApiKey]:
        """All keys (of one consumer), oldest first."""
        sql = "SELECT key_id, consumer, secret_hash, description, created_at, expires_at, revoked_at FROM api_keys"
        rows = (
            self.db.query(sql + " WHERE consumer = ? ORDER BY created_at", (consumer,))
            if consumer
            else (self.db.query(sql + " ORDER BY created_at"))
        )
        return [_key(r) for r in rows]

    def expire_key(self, key_id: str, at: float) -> None:
        """Make a key stop working at `at` (never later than it already would)."""
        with self.db.transaction(COUNTER) as tx:
            tx.execute(
                "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > ? THEN ? "
                "ELSE expires_at END WHERE key_id = ?",
                (at, at, key_id),
            )

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key now; False when there is no such key."""
        with self.db.transaction(COUNTER) as tx:
            return (
                tx.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (time.time(), key_id)
                ).rowcount
                > 0
            )

    # -- policies --------------------------------------------------------------

    def add_policy(
        self, subject_kind: SubjectKind, subject: str, effect: Effect, selector: Selector, description: str | None
    ) -> Policy:
        """Store a policy; returns it with its id. A key policy needs the key to exist."""
        if subject_kind not in SUBJECT_KINDS:
            raise IdentityError(f"unknown subject kind {subject_kind!r} (one of: {', '.join(SUBJECT_KINDS)})")
        if effect not in ("allow", "deny"):
            raise IdentityError(f"effect must be allow or deny, not {effect!r}")
        with self.db.transaction(COUNTER) as tx:
            if (
                subject_kind == "key"
                and not tx.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (subject,)).fetchone()
            ):
                raise IdentityError(f"no API key with id {subject!r} (see `mcp-gateway keys list`)")
            cursor = tx.execute(
                "INSERT INTO policies (subject_kind, subject, effect, selector, description, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (subject_kind, subject, effect, selector.to_json(), description, time.time()),
            )
            policy_id = int(cursor.lastrowid or 0)
        return Policy(policy_id, subject_kind, subject, effect, selector, description)

    def copy_key_policies(self, from_key: str, to_key: str) -> int:
        """Give `to_key` the policies of `from_key` (a rotated key keeps its limits); returns how many."""
        with self.db.transaction(COUNTER) as tx:
            return tx.execute(
                "INSERT INTO policies (subject_kind, subject, effect, selector, description, created_at) "
                "SELECT subject_kind, ?, effect, selector, description, ? FROM policies "
                "WHERE subject_kind = 'key' AND subject = ? ORDER BY id",
                (to_key, time.time(), from_key),
            ).rowcount

    def policies(self) -> list[Policy]:
        """All policies, oldest first."""
        rows = self.db.query(
            "SELECT id, subject_kind, subject, effect, selector, description FROM policies ORDER BY id"
        )
        return [Policy(i, k, s, e, Selector.from_json(sel), d) for i, k, s, e, sel, d in rows]

    def remove_policy(self, policy_id: int) -> Policy | None:
        """Delete a policy; returns it, or None when there is none with that id."""
        with self.db.transaction(COUNTER) as tx:
            row = tx.execute(
                "SELECT id, subject_kind, subject, effect, selector, description FROM policies WHERE id = ?",
                (policy_id,),
            ).fetchone()
            if row is None:
                return None
            tx.execute("DELETE FROM policies WHERE id = ?", (policy_id,))
            i, k, sub, e, sel, d = row
            return Policy(i, k, sub, e, Selector.from_json(sel), d)
