"""Master keys and the authenticated encryption that seals stored credentials.

A master key is 32 random bytes, written as base64url. Values are sealed with
AES-256-GCM under the primary key; older keys stay in the keyring so values
sealed before a rotation still open. A sealed blob names its key by id, so the
right key is picked without trying each one:

    b"v1" | key id (8 bytes: SHA-256(key)[:8]) | nonce (12 bytes) | ciphertext + tag

Keys come from `MCP_GATEWAY_MASTER_KEY` (comma-separated, primary first), else the
file named by `MCP_GATEWAY_MASTER_KEY_FILE`, else `<data_dir>/master.key` (one key
a line, primary first, `#` comments), which is created on first need so the
embedded default needs no set-up. Messages never carry key material or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

ENV_KEY = "MCP_GATEWAY_MASTER_KEY"
ENV_KEY_FILE = "MCP_GATEWAY_MASTER_KEY_FILE"
KEY_FILE_NAME = "master.key"
KEY_BYTES = 32
VERSION = b"v1"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_FILE_HEADER = (
    "# mcp-gateway master keys. The first key seals new values; the others still open older ones.\n"
    "# Keep this file secret (mode 0600) and back it up: without it, stored secrets are lost.\n"
)


class VaultError(Exception):
    """A credential cannot be stored or read. The message never holds a secret or a key."""


class MasterKeyError(VaultError):
    """No usable master key: none configured, none on disk, or one that is malformed."""


class UnknownKeyError(VaultError):
    """A blob was sealed under a master key this keyring does not hold (yet: see `Keyring.reload`)."""


def key_id(key: bytes) -> str:
    """The public id of a key: 16 hex characters of its SHA-256."""
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES].hex()


def blob_key_id(blob: bytes) -> str | None:
    """The id of the key a blob was sealed under, or None when it is not a v1 blob."""
    if len(blob) < HEADER_BYTES + TAG_BYTES or not blob.startswith(VERSION):
        return None
    return blob[len(VERSION) : len(VERSION) + KEY_ID_BYTES].hex()


def generate_key() -> bytes:
    """32 fresh random bytes."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """The text form of a key: unpadded base64url."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_key(text: str, where: str) -> bytes:
    """A key from its base64url text (padding optional); `where` names its source in errors."""
    text = text.strip()
    if not _B64URL.match(text):
        raise MasterKeyError(f"master key in {where} is not base64url text")
    try:
        key = base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"master key in {where} is not base64url text") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"master key in {where} is {len(key)} bytes; it must be {KEY_BYTES}")
    return key


def _unique(keys: Sequence[bytes]) -> list[bytes]:
    return list(dict.fromkeys(keys))


def write_key_file(path: Path, keys: Sequence[bytes], *, replace: bool = True) -> bool:
    """Write a key file (mode 0600) atomically: a temp file, then a rename.

    With `replace=False` an existing file wins (two processes creating the default key
    at once must end with one key, not each with its own): returns False then.
    """
    try:
        return _write_key_file(path, keys, replace)
    except OSError as exc:  # a read-only mount, a full disk...
        raise MasterKeyError(f"cannot write master key file {path}: {exc.strerror or exc}") from None


def _write_key_file(path: Path, keys: Sequence[bytes], replace: bool) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".master.key.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(_FILE_HEADER + "".join(encode_key(k) + "\n" for k in keys))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails when the file exists: no clobbering
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: a narrow race beats no key
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):  # gone after a successful os.replace
            os.unlink(tmp)


def read_key_file(path: Path) -> list[bytes]:
    """The keys of a key file, primary first; warns when others may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MasterKeyError(f"no master key file at {path}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("master key file %s is readable by other users: chmod 600 it", path)
    keys = [
        decode_key(line, f"{path} line {number}")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise MasterKeyError(f"master key file {path} holds no key")
    return _unique(keys)


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a keyring's keys come from: the environment, or a key file."""

    environ: Mapping[str, str]
    file: Path | None  # None: the `MCP_GATEWAY_MASTER_KEY` variable
    default_file: bool = False  # the file is `<data_dir>/master.key`, which may be created

    @classmethod
    def find(cls, environ: Mapping[str, str], data_dir: Path) -> KeySource:
        """The first configured source: env key, env key file, then `<data_dir>/master.key`."""
        if environ.get(ENV_KEY, "").strip():
            return cls(environ, None)
        if environ.get(ENV_KEY_FILE, "").strip():
            return cls(environ, Path(environ[ENV_KEY_FILE].strip()).expanduser())
        return cls(environ, data_dir / KEY_FILE_NAME, default_file=True)

    def describe(self) -> str:
        return f"${ENV_KEY}" if self.file is None else str(self.file)

    def read(self) -> list[bytes]:
        """The keys, primary first."""
        if self.file is None:
            parts = [p for p in self.environ.get(ENV_KEY, "").split(",") if p.strip()]
            if not parts:
                raise MasterKeyError(f"${ENV_KEY} is empty")
            return _unique([decode_key(p, f"${ENV_KEY} (entry {n})") for n, p in enumerate(parts, 1)])
        return read_key_file(self.file)


@dataclass(frozen=True, slots=True)
class _Ring:
    keys: tuple[bytes, ...]  # primary first
    ids: tuple[str, ...]
    ciphers: dict[bytes, AESGCM]  # raw key id -> cipher


class Keyring:
    """A primary master key that seals, and older keys that still open."""

    def __init__(self, keys: Sequence[bytes], source: KeySource | None = None) -> None:
        self.source = source
        self._ring = self._build(keys)

    @staticmethod
    def _build(keys: Sequence[bytes]) -> _Ring:
        keys = _unique(keys)
        if not keys:
            raise MasterKeyError("a keyring needs at least one key")
        if any(len(k) != KEY_BYTES for k in keys):
            raise MasterKeyError(f"master keys are {KEY_BYTES} bytes")
        ids = tuple(key_id(k) for k in keys)
        # One immutable object, swapped whole: a concurrent call sees the old ring or the new one.
        return _Ring(tuple(keys), ids, {bytes.fromhex(i): AESGCM(k) for i, k in zip(ids, keys, strict=True)})

    def __repr__(self) -> str:
        where = self.source.describe() if self.source else None
        return f"Keyring(key_ids={list(self._ring.ids)!r}, source={where!r})"

    @classmethod
    def load(cls, data_dir: Path, environ: Mapping[str, str] = os.environ, *, create: bool = False) -> Keyring:
        """The keyring configured by `environ`; `create` makes `<data_dir>/master.key` when missing.

        A key file named by `MCP_GATEWAY_MASTER_KEY_FILE` is never created: a missing one
        is more likely an unmounted secret than a fresh install.
        """
        source = KeySource.find(environ, data_dir)
        path = source.file
        if create and source.default_file and path is not None and not path.exists():
            created = write_key_file(path, [generate_key()], replace=False)
            if created:
                logger.warning("created master key file %s: back it up, stored secrets need it", path)
        try:
            return cls(source.read(), source)
        except MasterKeyError as exc:
            if source.file is not None and not source.file.exists():
                raise MasterKeyError(
                    f"no master key: ${ENV_KEY} and ${ENV_KEY_FILE} are unset and {source.file} does not exist "
                    "(`mcp-gateway secrets set` creates it, or set one of those variables)"
                    if source.default_file
                    else f"no master key: {source.file} (from ${ENV_KEY_FILE}) does not exist"
                ) from None
            raise exc from None

    @property
    def primary(self) -> bytes:
        """The key that seals new values."""
        return self._ring.keys[0]

    @property
    def key_id(self) -> str:
        """The id of the primary key."""
        return self._ring.ids[0]

    @property
    def key_ids(self) -> list[str]:
        """Ids of every key, primary first."""
        return list(self._ring.ids)

    @property
    def from_file(self) -> bool:
        """Whether the keys come from a key file (which rotation may rewrite)."""
        return self.source is not None and self.source.file is not None

    def all_keys(self) -> list[bytes]:
        """Every key, primary first (for rewriting the key file)."""
        return list(self._ring.keys)

    def reload(self) -> None:
        """Read the keys again from their source (another process may have rotated)."""
        if self.source is not None:
            self._ring = self._build(self.source.read())

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal `plaintext` under the primary key, bound to `aad`."""
        ring, nonce = self._ring, os.urandom(NONCE_BYTES)
        kid = bytes.fromhex(ring.ids[0])
        return VERSION + kid + nonce + ring.ciphers[kid].encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Open a blob sealed with the same `aad`; VaultError when that is impossible."""
        kid_hex = blob_key_id(blob)
        if kid_hex is None:
            raise VaultError("not a sealed value (unknown format or truncated)")
        aead = self._ring.ciphers.get(bytes.fromhex(kid_hex))
        if aead is None:
            raise UnknownKeyError(f"sealed under master key {kid_hex}, which is not loaded")
        nonce = blob[len(VERSION) + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return aead.decrypt(nonce, blob[HEADER_BYTES:], aad)
        except InvalidTag:
            raise VaultError("authentication failed (corrupted, or moved from another entry)") from None
