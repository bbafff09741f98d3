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

from sqlalchemy import case, delete, exists, or_, select, update

from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import api_keys
from mcp_gateway.store.schema import consumers as consumer_table
from mcp_gateway.store.schema import policies as policy_table

COUNTER = "identities"

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


def _key(row: Any) -> ApiKey:
    return ApiKey(*row)


def _consumer(row: Any) -> Consumer:
    name, team, org, disabled, created_at = row
    return Consumer(name, team, org, bool(disabled), created_at)


def _policy(row: Any) -> Policy:
    policy_id, kind, subject, effect, selector, description = row
    return Policy(policy_id, kind, subject, effect, Selector.from_json(selector), description)


_CONSUMER = (
    consumer_table.c.name,
    consumer_table.c.team,
    consumer_table.c.org,
    consumer_table.c.disabled,
    consumer_table.c.created_at,
)
_KEY = tuple(api_keys.c)
_POLICY = (
    policy_table.c.id,
    policy_table.c.subject_kind,
    policy_table.c.subject,
    policy_table.c.effect,
    policy_table.c.selector,
    policy_table.c.description,
)


class IdentityStore:
    """Consumers, keys and policies in the gateway's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def revision(self) -> int:
        """Changes whenever a consumer, key or policy changes."""
        return self.db.revision(COUNTER)

    # -- consumers -------------------------------------------------------------

    def add_consumer(self, name: str, team: str | None = None, org: str | None = None) -> Consumer:
        """Create a consumer; IdentityError if the name is taken."""
        consumer = Consumer(name, team, org, False, time.time())
        with self.db.transaction(COUNTER) as tx:
            if tx.scalar(select(exists().where(consumer_table.c.name == name))):
                raise IdentityError(f"consumer {name!r} exists")
            tx.execute(
                consumer_table.insert().values(
                    name=name, team=team, org=org, disabled=0, created_at=consumer.created_at
                )
            )
        return consumer

    def consumers(self) -> list[Consumer]:
        """All consumers, by name."""
        return [_consumer(row) for row in self.db.query(select(*_CONSUMER).order_by(consumer_table.c.name))]

    def consumer(self, name: str) -> Consumer | None:
        """One consumer, or None."""
        rows = self.db.query(select(*_CONSUMER).where(consumer_table.c.name == name))
        return _consumer(rows[0]) if rows else None

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (or enable again) a consumer: its keys and tokens are refused meanwhile. False if unknown."""
        with self.db.transaction(COUNTER) as tx:
            stmt = update(consumer_table).where(consumer_table.c.name == name).values(disabled=int(disabled))
            return tx.execute(stmt).rowcount > 0

    def disabled_consumers(self) -> frozenset[str]:
        """Names of the disabled consumers."""
        return frozenset(
            row[0] for row in self.db.query(select(consumer_table.c.name).where(consumer_table.c.disabled == 1))
        )

    def remove_consumer(self, name: str) -> tuple[int, int] | None:
        """Delete a consumer with its keys, its consumer-level policies and its keys' policies;
        returns how many keys and policies went with it, or None when there is no such consumer."""
        p = policy_table.c
        own_keys = select(api_keys.c.key_id).where(api_keys.c.consumer == name)
        with self.db.transaction(COUNTER) as tx:
            removed_policies = tx.execute(
                delete(policy_table).where(
                    or_(
                        (p.subject_kind == "consumer") & (p.subject == name),
                        (p.subject_kind == "key") & p.subject.in_(own_keys),
                    )
                )
            ).rowcount
            keys = tx.execute(delete(api_keys).where(api_keys.c.consumer == name)).rowcount
            if tx.execute(delete(consumer_table).where(consumer_table.c.name == name)).rowcount == 0:
                return None
            return keys, removed_policies

    # -- keys ------------------------------------------------------------------

    def add_key(
        self, key_id: str, consumer: str, secret_hash: str, *, expires_at: float | None, description: str | None
    ) -> ApiKey:
        """Store a new key for an existing consumer."""
        key = ApiKey(key_id, consumer, secret_hash, description, time.time(), expires_at, None)
        with self.db.transaction(COUNTER) as tx:
            if not tx.scalar(select(exists().where(consumer_table.c.name == consumer))):
                raise IdentityError(f"no consumer named {consumer!r}")
            tx.execute(
                api_keys.insert().values(
                    key_id=key.key_id,
                    consumer=consumer,
                    secret_hash=secret_hash,
                    description=description,
                    created_at=key.created_at,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
        return key

    def key(self, key_id: str) -> ApiKey | None:
        """One key by its public id, or None."""
        rows = self.db.query(select(*_KEY).where(api_keys.c.key_id == key_id))
        return _key(rows[0]) if rows else None

    def keys(self, consumer: str | None = None) -> list[ApiKey]:
        """All keys (of one consumer), oldest first."""
        stmt = select(*_KEY).order_by(api_keys.c.created_at)
        if consumer:
            stmt = stmt.where(api_keys.c.consumer == consumer)
        return [_key(r) for r in self.db.query(stmt)]

    def expire_key(self, key_id: str, at: float) -> None:
        """Make a key stop working at `at` (never later than it already would)."""
        expires = api_keys.c.expires_at
        sooner = case((or_(expires.is_(None), expires > at), at), else_=expires)
        with self.db.transaction(COUNTER) as tx:
            tx.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(expires_at=sooner))

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key now; False when there is no such key."""
        stmt = (
            update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        with self.db.transaction(COUNTER) as tx:
            return tx.execute(stmt).rowcount > 0

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
            if subject_kind == "key" and not tx.scalar(select(exists().where(api_keys.c.key_id == subject))):
                raise IdentityError(f"no API key with id {subject!r} (see `mcp-gateway keys list`)")
            result = tx.execute(
                policy_table.insert().values(
                    subject_kind=subject_kind,
                    subject=subject,
                    effect=effect,
                    selector=selector.to_json(),
                    description=description,
                    created_at=time.time(),
                )
            )
            policy_id = int(result.inserted_primary_key[0])
        return Policy(policy_id, subject_kind, subject, effect, selector, description)

    def copy_key_policies(self, from_key: str, to_key: str) -> int:
        """Give `to_key` the policies of `from_key` (a rotated key keeps its limits); returns how many."""
        p = policy_table.c
        source = (
            select(p.subject_kind, p.effect, p.selector, p.description)
            .where(p.subject_kind == "key", p.subject == from_key)
            .order_by(p.id)
        )
        now = time.time()
        with self.db.transaction(COUNTER) as tx:
            rows = [{**row._asdict(), "subject": to_key, "created_at": now} for row in tx.execute(source)]
            if rows:
                tx.execute(policy_table.insert(), rows)
        return len(rows)

    def policies(self) -> list[Policy]:
        """All policies, oldest first."""
        return [_policy(row) for row in self.db.query(select(*_POLICY).order_by(policy_table.c.id))]

    def remove_policy(self, policy_id: int) -> Policy | None:
        """Delete a policy; returns it, or None when there is none with that id."""
        with self.db.transaction(COUNTER) as tx:
            row = tx.execute(select(*_POLICY).where(policy_table.c.id == policy_id)).first()
            if row is None:
                return None
            tx.execute(delete(policy_table).where(policy_table.c.id == policy_id))
            return _policy(row)
