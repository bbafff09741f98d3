"""The credential vault: upstream secrets encrypted at rest, referenced from config as `secret:NAME`.

Values are sealed with AES-256-GCM under a master key (see `keyring`), bound to
where they are stored (table, row id, column), so a blob copied onto another row
does not open. Each entry stands alone: a corrupted or wrongly keyed entry breaks
reads of that entry only. The master key is loaded on first need, so a gateway
with no secrets starts without one.

Values never appear in logs, exceptions or reprs; `get`, `resolve` and `unseal`
return them to code, and that is all.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_gateway.store.database import Database
from mcp_gateway.store.secrets import COLUMN, COUNTER, NAME_PATTERN, TABLE, SecretRow, SecretStore, valid_name
from mcp_gateway.vault.keyring import (
    ENV_KEY,
    Keyring,
    MasterKeyError,
    UnknownKeyError,
    VaultError,
    blob_key_id,
    encode_key,
    generate_key,
    key_id,
    write_key_file,
)

__all__ = [
    "MAX_SECRET_BYTES",
    "InvalidSecret",
    "Keyring",
    "MasterKeyError",
    "SecretInfo",
    "SecretNotFound",
    "Vault",
    "VaultError",
    "encode_key",
    "generate_key",
    "is_reference",
]

logger = logging.getLogger(__name__)

SECRET_PREFIX = "secret:"
ENV_PREFIX = "env:"
MAX_SECRET_BYTES = 64 * 1024


class SecretNotFound(VaultError):
    """No secret has that name."""


class InvalidSecret(VaultError, ValueError):
    """A name or value the vault refuses (bad name, empty or oversized value)."""


def is_reference(value: str) -> bool:
    """Whether a config value names a credential (`secret:NAME`, `env:NAME`) rather than holding one."""
    return value.startswith((SECRET_PREFIX, ENV_PREFIX))


def _aad(table: str, row_id: str, column: str) -> bytes:
    return f"{table}\0{row_id}\0{column}".encode()


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: everything but its value."""

    name: str
    description: str | None
    created_at: float
    updated_at: float
    key_id: str | None  # the master key it is sealed under; None when the entry is malformed

    @classmethod
    def of(cls, row: SecretRow) -> SecretInfo:
        return cls(row.name, row.description, row.created_at, row.updated_at, blob_key_id(row.value))

    def public(self) -> dict[str, Any]:
        """JSON-ready metadata."""
        return {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "key_id": self.key_id,
        }


class Vault:
    """Secrets in the database, sealed under the master keyring. Blocking: async callers use a thread."""

    def __init__(
        self, store: SecretStore, data_dir: Path, environ: Mapping[str, str], keyring: Keyring | None = None
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.environ = environ
        self._keyring = keyring
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, db: Database, data_dir: Path, environ: Mapping[str, str] = os.environ, *, create_key: bool = False
    ) -> Vault:
        """The vault of `db`. The master key is read on first need, unless `create_key` asks for it now
        (creating `<data_dir>/master.key` when no key is configured)."""
        vault = cls(SecretStore(db), data_dir, environ)
        if create_key:
            vault.keyring(create=True)
        return vault

    def __repr__(self) -> str:
        return f"Vault(db={self.store.db.display!r}, keyring={self._keyring!r})"

    # -- keys ------------------------------------------------------------------

    def keyring(self, *, create: bool = False) -> Keyring:
        """The master keyring, loaded on first use; `create` makes the default key file if needed."""
        with self._lock:
            if self._keyring is None:
                self._keyring = Keyring.load(self.data_dir, self.environ, create=create)
            return self._keyring

    def _writing_keyring(self) -> Keyring:
        # Before sealing, pick up a rotation another process made: values sealed under a key
        # it has since dropped would be lost.
        keyring = self.keyring(create=True)
        if keyring.from_file:
            keyring.reload()
        return keyring

    def _open(self, blob: bytes, aad: bytes) -> bytes:
        keyring = self.keyring()
        try:
            return keyring.decrypt(blob, aad)
        except UnknownKeyError:
            # Another process may have rotated the master key since we loaded it: look once more.
            with self._lock:
                keyring.reload()
            return keyring.decrypt(blob, aad)

    # -- generic sealing, for any table ------------------------------------------

    def seal(self, table: str, row_id: str, column: str, plaintext: str) -> bytes:
        """Encrypt a value to store in `table`.`column` of the row `row_id` (it opens only there)."""
        return self._writing_keyring().encrypt(plaintext.encode(), _aad(table, row_id, column))

    def unseal(self, table: str, row_id: str, column: str, blob: bytes) -> str:
        """Decrypt a value sealed by `seal` for the same place; VaultError when it cannot be."""
        try:
            return self._open(bytes(blob), _aad(table, row_id, column)).decode()
        except MasterKeyError:
            raise
        except VaultError as exc:
            raise VaultError(f"sealed value {table}.{column} of row {row_id!r} cannot be decrypted: {exc}") from None

    # -- secrets ----------------------------------------------------------------

    def revision(self) -> int:
        """Changes whenever a secret is written, removed or re-encrypted."""
        return self.store.revision()

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not valid_name(name):
            raise InvalidSecret(f"invalid secret name {name!r}: it must match {NAME_PATTERN}")

    def put(self, name: str, value: str, description: str | None = None) -> tuple[SecretInfo, bool]:
        """Create or replace a secret; returns its metadata and whether it was created."""
        self._check_name(name)
        if not isinstance(value, str) or not value:
            raise InvalidSecret("a secret value must be a non-empty string")
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise InvalidSecret(f"a secret value is at most {MAX_SECRET_BYTES} bytes")
        row, created = self.store.put(name, self.seal(TABLE, name, COLUMN, value), description)
        logger.info("secret %s %s", name, "created" if created else "replaced")
        return SecretInfo.of(row), created

    def set(self, name: str, value: str, description: str | None = None) -> SecretInfo:
        """Create or replace a secret (a replacement without `description` keeps the old one)."""
        return self.put(name, value, description)[0]

    def get(self, name: str) -> str:
        """The value of a secret; SecretNotFound, or VaultError when it cannot be decrypted."""
        self._check_name(name)
        row = self.store.get(name)
        if row is None:
            raise SecretNotFound(f"no secret named {name!r}")
        try:
            return self._open(row.value, _aad(TABLE, name, COLUMN)).decode()
        except MasterKeyError:
            raise
        except VaultError as exc:
            raise VaultError(
                f"secret {name!r} cannot be decrypted: wrong master key or corrupted entry ({exc})"
            ) from None

    def info(self, name: str) -> SecretInfo | None:
        """The metadata of one secret, or None."""
        row = self.store.get(name) if valid_name(name) else None
        return SecretInfo.of(row) if row is not None else None

    def list(self) -> list[SecretInfo]:
        """Metadata of every secret, by name (never their values)."""
        return [SecretInfo.of(row) for row in self.store.list()]

    def remove(self, name: str) -> bool:
        """Delete a secret; False when there is none."""
        gone = valid_name(name) and self.store.delete(name)
        if gone:
            logger.info("secret %s removed", name)
        return gone

    def resolve(self, ref: str) -> str:
        """A credential from config: `secret:NAME` from the vault, `env:NAME` from the environment,
        anything else is a plain value, returned as it is (callers warn about those)."""
        if ref.startswith(SECRET_PREFIX):
            return self.get(ref[len(SECRET_PREFIX) :])
        if ref.startswith(ENV_PREFIX):
            variable = ref[len(ENV_PREFIX) :]
            if variable.upper().startswith("MCP_GATEWAY_MASTER_KEY"):
                # The master key unseals every secret: never something to send to an upstream.
                raise VaultError(f"{ref!r} names the vault's master key, which is never a credential")
            value = self.environ.get(variable)
            if value is None:
                raise VaultError(f"environment variable {variable!r} (referenced as {ref!r}) is not set")
            return value
        return ref

    # -- master-key rotation ------------------------------------------------------

    def rotate_master(self, new_key: bytes | None = None) -> int:
        """Re-encrypt every sealed value under a new primary master key; returns how many were.

        Key-file mode: a new key (or `new_key`) is written first in the file, the old ones
        kept after it, so other processes open both old and new blobs (they re-read the
        file on an unknown key id). Env mode: the operator has already put the new key
        first in `MCP_GATEWAY_MASTER_KEY`; everything not under it is re-encrypted.
        All values change in one transaction. Entries that cannot be opened are left as
        they are and logged (by place, never by value).
        """
        keyring = self.keyring(create=True)
        with self._lock, self.store.db.transaction(COUNTER, exclusive=True) as tx:
            # Inside the write transaction: a concurrent rotation elsewhere has finished or waits.
            keyring.reload()
            if keyring.from_file:
                assert keyring.source is not None and keyring.source.file is not None
                key = new_key if new_key is not None else generate_key()
                write_key_file(keyring.source.file, [key, *keyring.all_keys()])
                keyring.reload()
                logger.warning("master key %s is now primary in %s", keyring.key_id, keyring.source.file)
            elif new_key is not None:
                raise MasterKeyError(f"keys come from ${ENV_KEY}: put the new key first there, then rotate")
            count = 0
            for cell in self.store.scan(tx):
                if blob_key_id(cell.blob) == keyring.key_id:
                    continue
                aad = _aad(cell.table, cell.row_id, cell.column)
                try:
                    plaintext = keyring.decrypt(cell.blob, aad)
                except VaultError as exc:
                    logger.warning("left %s.%s of row %r as it is: %s", cell.table, cell.column, cell.row_id, exc)
                    continue
                self.store.update_cell(tx, cell, keyring.encrypt(plaintext, aad))
                count += 1
        return count

    def drop_old_keys(self) -> int:
        """Key-file mode: remove secondary keys no sealed value uses any more; returns how many."""
        keyring = self.keyring()
        if not keyring.from_file:
            raise MasterKeyError(f"keys come from ${ENV_KEY}: remove old keys from it yourself")
        assert keyring.source is not None and keyring.source.file is not None
        with self._lock, self.store.db.transaction(exclusive=True) as tx:  # holds off writers while we look
            keyring.reload()
            used = {blob_key_id(cell.blob) for cell in self.store.scan(tx)}
            keep = [k for k in keyring.all_keys() if k == keyring.primary or key_id(k) in used]
            dropped = len(keyring.all_keys()) - len(keep)
            if dropped:
                write_key_file(keyring.source.file, keep)
                keyring.reload()
                logger.warning("dropped %d old master key(s) from %s", dropped, keyring.source.file)
        return dropped
