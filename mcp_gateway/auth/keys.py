"""Gateway-issued API keys: `mgw_<12-character id>_<secret>`.

The id is public (it finds the key and shows in listings); the secret is 32
random bytes, shown once and stored only as its SHA-256. A slow password hash
is not needed: the secret has 256 bits of entropy, so nothing can be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time

from mcp_gateway.store.identities import ApiKey, IdentityError, IdentityStore

PREFIX = "mgw_"
ID_LENGTH = 12
_ID_ALPHABET = string.ascii_lowercase + string.digits


def generate() -> tuple[str, str, str]:
    """A new key: (key id, secret hash to store, the full key to show once)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    return key_id, hash_secret(secret), f"{PREFIX}{key_id}_{secret}"


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """(key id, secret) of something shaped like a gateway key, else None."""
    if not token.startswith(PREFIX) or len(token) < len(PREFIX) + ID_LENGTH + 2:
        return None
    key_id = token[len(PREFIX) : len(PREFIX) + ID_LENGTH]
    if token[len(PREFIX) + ID_LENGTH] != "_":
        return None
    return key_id, token[len(PREFIX) + ID_LENGTH + 1 :]


def matches(secret: str, secret_hash: str) -> bool:
    """Constant-time check of a presented secret against a stored hash."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)


def issue(
    store: IdentityStore, consumer: str, *, expires_in: float | None = None, description: str | None = None
) -> tuple[ApiKey, str]:
    """Create and store a key for `consumer`; returns it and the full key (shown once)."""
    key_id, secret_hash, full = generate()
    expires_at = time.time() + expires_in if expires_in else None
    key = store.add_key(key_id, consumer, secret_hash, expires_at=expires_at, description=description)
    return key, full


def rotate(store: IdentityStore, key_id: str, *, grace: float) -> tuple[ApiKey, str]:
    """A new key for the same consumer, with the old one's policies; the old one keeps working for
    `grace` seconds."""
    old = store.key(key_id)
    if old is None or old.revoked_at is not None:
        raise IdentityError(f"no active key {key_id!r}")
    remaining = old.expires_at - time.time() if old.expires_at is not None else None
    key, full = issue(store, old.consumer, expires_in=remaining, description=old.description)
    store.copy_key_policies(key_id, key.key_id)  # a limited key stays limited
    store.expire_key(key_id, time.time() + grace)
    return key, full
