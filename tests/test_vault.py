"""The credential vault: encryption at rest, key sources, rotation, the `secrets` CLI and admin API.

Real SQLite files, real key files, real subprocesses, real HTTP.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_gateway.catalog import Catalog
from mcp_gateway.registry import Registry
from mcp_gateway.server.admin import admin_routes
from mcp_gateway.store.connections import ConnectionStore, StoredToken
from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import oauth_connections
from mcp_gateway.store.schema import secrets as secrets_table
from mcp_gateway.vault import (
    MasterKeyError,
    SecretNotFound,
    Vault,
    VaultError,
    encode_key,
    generate_key,
    is_reference,
)
from mcp_gateway.vault import keyring as keyring_module
from mcp_gateway.vault.keyring import ENV_KEY, ENV_KEY_FILE, Keyring, decode_key, key_id, write_key_file
from tests.conftest import ADMIN_TOKEN
from tests.servers import serve_in_thread

REPO = Path(__file__).resolve().parent.parent


def new_value() -> str:
    """A distinctive secret, easy to search for wherever it must not be."""
    return "sk-test-" + secrets.token_hex(16)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The store's database, SQLite then PostgreSQL."""
    database = Database(database_url)
    yield database
    database.close()


def raw_blob(db: Database, name: str) -> bytes:
    return db.query(select(secrets_table.c.value).where(secrets_table.c.name == name))[0][0]


def write_blob(db: Database, name: str, blob: bytes) -> None:
    with db.transaction() as tx:
        tx.execute(update(secrets_table).where(secrets_table.c.name == name).values(value=blob))


def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


# -- storage and encryption ------------------------------------------------------------


def test_round_trip_and_metadata(db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vault = Vault.open(db, tmp_path, {})
    value = new_value()
    before = vault.revision()
    info = vault.set("github.token", value, "GitHub PAT")
    assert vault.get("github.token") == value
    assert vault.revision() == before + 1
    assert info.key_id == vault.keyring().key_id and len(info.key_id) == 16
    listed = vault.list()
    assert [i.name for i in listed] == ["github.token"] and listed[0].description == "GitHub PAT"
    assert value not in repr(listed) and value not in repr(vault) and value not in str(listed[0].public())

    # A replacement keeps the creation time and (when none is given) the description.
    again = vault.set("github.token", "other")
    assert vault.get("github.token") == "other"
    assert again.created_at == info.created_at and again.updated_at >= info.updated_at
    assert again.description == "GitHub PAT"
    assert vault.remove("github.token") and not vault.remove("github.token")
    with pytest.raises(SecretNotFound, match=re.escape("no secret named 'github.token'")):
        vault.get("github.token")
    assert "secret github.token created" in caplog.text and value not in caplog.text


def test_names_and_values_are_checked(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    for bad in ("", "-lead", "has space", "x" * 129, "semi;colon"):
        with pytest.raises(VaultError, match="invalid secret name"):
            vault.set(bad, "v")
    with pytest.raises(VaultError, match="non-empty"):
        vault.set("ok", "")
    vault.set("A1_b.c-d", "v")
    assert vault.get("A1_b.c-d") == "v"


def files_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_values_are_not_stored_in_plaintext(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = Database(database_url)
    vault = Vault.open(db, tmp_path / "keys", {})
    values = [new_value() for _ in range(5)]
    for n, value in enumerate(values):
        vault.set(f"s{n}", value, "a description")
    if db.path is not None:  # SQLite: the file and its WAL, before and after the checkpoint at close
        uncheckpointed = files_under(db.path.parent)
        db.close()
        on_disk = uncheckpointed + files_under(db.path.parent)
    else:  # PostgreSQL: every file of the server, its WAL included, once the pages are written too
        with db.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
        db.close()
        on_disk = files_under(request.getfixturevalue("postgres").data)
    assert b"a description" in on_disk  # the search does find what is stored in clear
    for value in values:
        assert value.encode() not in on_disk
        assert value.encode().hex().encode() not in on_disk


def test_a_blob_moved_to_another_row_does_not_open(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    vault.set("alpha", "alpha-value")
    vault.set("beta", "beta-value")
    write_blob(db, "beta", raw_blob(db, "alpha"))
    with pytest.raises(VaultError, match="secret 'beta' cannot be decrypted") as caught:
        vault.get("beta")
    assert "alpha-value" not in str(caught.value)
    assert vault.get("alpha") == "alpha-value"
    # Generic sealing is bound to table, row and column alike.
    blob = vault.seal("tokens", "alice", "access", "t0k3n")
    assert vault.unseal("tokens", "alice", "access", blob) == "t0k3n"
    for place in (("tokens", "bob", "access"), ("tokens", "alice", "refresh"), ("other", "alice", "access")):
        with pytest.raises(VaultError, match="cannot be decrypted"):
            vault.unseal(*place, blob)


def test_wrong_master_key_breaks_only_its_entries(db: Database, tmp_path: Path) -> None:
    k1, k2 = encode_key(generate_key()), encode_key(generate_key())
    right = Vault.open(db, tmp_path, {ENV_KEY: k1})
    right.set("one", "value-one")
    right.set("two", "value-two")
    wrong = Vault.open(db, tmp_path, {ENV_KEY: k2})
    with pytest.raises(VaultError) as caught:
        wrong.get("one")
    message = str(caught.value)
    assert message.startswith("secret 'one' cannot be decrypted: wrong master key or corrupted entry")
    assert "value-one" not in message and k1 not in message and k2 not in message
    # An entry written under the other key breaks only itself for the correctly keyed vault.
    wrong.set("three", "value-three")
    assert right.get("one") == "value-one" and right.get("two") == "value-two"
    with pytest.raises(VaultError, match="secret 'three' cannot be decrypted"):
        right.get("three")
    assert {i.name: i.key_id for i in right.list()}["three"] == key_id(decode_key(k2, "test"))


def test_a_corrupted_entry_breaks_only_itself(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    for name in ("a", "b", "c"):
        vault.set(name, f"value-{name}")
    blob = bytearray(raw_blob(db, "b"))
    blob[-1] ^= 1
    write_blob(db, "b", bytes(blob))
    write_blob(db, "c", raw_blob(db, "c")[:20])
    for name in ("b", "c"):
        with pytest.raises(VaultError, match=f"secret '{name}' cannot be decrypted"):
            vault.get(name)
    assert vault.get("a") == "value-a"
    assert {i.name: i.key_id for i in vault.list()}["c"] is None


# -- master keys ----------------------------------------------------------------------------


def test_no_key_needed_until_a_secret_is(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    assert vault.list() == [] and vault.resolve("plain") == "plain"
    with pytest.raises(SecretNotFound):
        vault.get("missing")
    assert not (tmp_path / "master.key").exists()

    # Written by another process whose key this one cannot find.
    Vault.open(db, tmp_path / "elsewhere", {}).set("x", "value-x")
    with pytest.raises(MasterKeyError, match=str(tmp_path / "master.key")):
        vault.get("x")


def test_key_file_is_created_private_and_reused(db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    vault = Vault.open(db, data_dir, {}, create_key=True)
    path = data_dir / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in data_dir.iterdir() if p.name != "master.key"]  # no temp file left
    vault.set("s", "v")
    assert Vault.open(db, data_dir, {}).get("s") == "v"
    assert Keyring.load(data_dir, {}, create=True).key_id == vault.keyring().key_id  # not regenerated

    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        Keyring.load(data_dir, {})
    assert "readable by other users" in caplog.text
    assert key_lines(path)[0] not in caplog.text


def test_creating_the_key_file_never_clobbers_one(tmp_path: Path) -> None:
    first, second = generate_key(), generate_key()
    assert write_key_file(tmp_path / "master.key", [first], replace=False)
    assert not write_key_file(tmp_path / "master.key", [second], replace=False)  # the loser of a race
    assert Keyring.load(tmp_path, {}, create=True).key_ids == [key_id(first)]
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_rotation_that_cannot_write_the_key_file_changes_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = Vault.open(db, tmp_path, {})
    vault.set("s", "value")
    blob, keys_before = raw_blob(db, "s"), (tmp_path / "master.key").read_text()

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(keyring_module.tempfile, "mkstemp", read_only)  # a read-only mount, even for root
    with pytest.raises(MasterKeyError, match="cannot write master key file"):
        vault.rotate_master()
    monkeypatch.undo()
    assert raw_blob(db, "s") == blob and (tmp_path / "master.key").read_text() == keys_before
    assert vault.get("s") == "value"


def test_key_file_from_env_and_comments(db: Database, tmp_path: Path) -> None:
    k1, k2 = generate_key(), generate_key()
    path = tmp_path / "keys.txt"
    # Padded and unpadded base64url, a comment and blank lines.
    padded = encode_key(k2) + "=" * (-len(encode_key(k2)) % 4)
    path.write_text(f"# primary first\n{encode_key(k1)}\n\n  {padded}\n")
    path.chmod(0o600)
    keyring = Keyring.load(tmp_path / "unused", {ENV_KEY_FILE: str(path)})
    assert keyring.key_ids == [key_id(k1), key_id(k2)] and keyring.from_file
    # A named key file is never invented.
    with pytest.raises(MasterKeyError, match=re.escape("missing.key")):
        Keyring.load(tmp_path, {ENV_KEY_FILE: str(tmp_path / "missing.key")}, create=True)


def test_env_key_list(db: Database, tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    Vault.open(db, tmp_path, {ENV_KEY: encode_key(old)}).set("legacy", "from-old")
    vault = Vault.open(db, tmp_path, {ENV_KEY: f"{encode_key(new)}, {encode_key(old)}"})
    assert vault.keyring().key_ids == [key_id(new), key_id(old)]
    assert vault.get("legacy") == "from-old"  # opened with the secondary key
    assert vault.set("fresh", "v").key_id == key_id(new)  # sealed with the primary
    assert not (tmp_path / "master.key").exists()

    text = encode_key(generate_key())[:-4]
    with pytest.raises(MasterKeyError, match="must be 32") as caught:
        Keyring.load(tmp_path, {ENV_KEY: text})
    assert text not in str(caught.value)
    with pytest.raises(MasterKeyError, match="not base64url"):
        Keyring.load(tmp_path, {ENV_KEY: "not a key!"})


def test_resolve_references(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {"STRIPE_KEY": "from-env"})
    vault.set("stripe", "from-vault")
    assert vault.resolve("secret:stripe") == "from-vault"
    assert vault.resolve("env:STRIPE_KEY") == "from-env"
    assert vault.resolve("literal-value") == "literal-value"
    with pytest.raises(VaultError, match="'NOPE'"):
        vault.resolve("env:NOPE")
    with pytest.raises(SecretNotFound):
        vault.resolve("secret:nope")
    assert is_reference("secret:x") and is_reference("env:X") and not is_reference("sk-live-123")


# -- rotation ----------------------------------------------------------------------------------


def make_tokens(db: Database, vault: Vault) -> None:
    """Consumers' OAuth tokens: sealed values in another table than `secrets`."""
    store = ConnectionStore(db, vault)
    store.save("alice", "github", StoredToken("at-alice", "rt-alice"))
    store.save("bob", "github", StoredToken("at-bob"))


def token_blobs(db: Database) -> dict[str, tuple[bytes, bytes | None]]:
    c = oauth_connections.c
    return {c: (a, r) for c, a, r in db.query(select(c.consumer, c.access_token, c.refresh_token))}


def test_rotate_master_in_key_file_mode(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    values = {f"s{n}": new_value() for n in range(4)}
    for name, value in values.items():
        vault.set(name, value)
    make_tokens(db, vault)
    old_id = vault.keyring().key_id
    blobs = {name: raw_blob(db, name) for name in values}
    tokens = token_blobs(db)
    revision = vault.revision()

    # 4 secrets + 3 token values (bob has no refresh token).
    assert vault.rotate_master() == 7
    new_id = vault.keyring().key_id
    assert new_id != old_id and vault.revision() == revision + 1
    assert vault.keyring().key_ids == [new_id, old_id]
    assert len(key_lines(tmp_path / "master.key")) == 2
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    for name, value in values.items():
        assert raw_blob(db, name) != blobs[name]
        assert vault.get(name) == value
    assert {i.key_id for i in vault.list()} == {new_id}
    rotated = token_blobs(db)
    assert rotated["alice"][0] != tokens["alice"][0] and rotated["alice"][1] != tokens["alice"][1]
    assert rotated["bob"][1] is None
    assert vault.unseal("oauth_connections", "alice\0github", "refresh_token", rotated["alice"][1]) == "rt-alice"

    assert vault.drop_old_keys() == 1
    assert len(key_lines(tmp_path / "master.key")) == 1
    fresh = Vault.open(db, tmp_path, {})  # a new process, only the new key on disk
    assert fresh.keyring().key_ids == [new_id]
    for name, value in values.items():
        assert fresh.get(name) == value
    assert fresh.unseal("oauth_connections", "bob\0github", "access_token", token_blobs(db)["bob"][0]) == "at-bob"
    loaded = ConnectionStore(db, fresh).load("alice", "github")
    assert loaded is not None and (loaded.access_token, loaded.refresh_token) == ("at-alice", "rt-alice")


def test_drop_old_keys_keeps_keys_still_in_use(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    vault.set("good", "v")
    vault.set("bad", "v")
    old_id = vault.keyring().key_id
    write_blob(db, "bad", raw_blob(db, "bad")[:-1] + b"\x00")  # cannot be re-encrypted...
    assert vault.rotate_master() == 1
    assert vault.drop_old_keys() == 0  # ...so the key it names stays
    assert old_id in vault.keyring().key_ids


def test_a_running_gateway_reads_after_another_process_rotated(db: Database, database_url: str, tmp_path: Path) -> None:
    cli_vault = Vault.open(db, tmp_path, {})
    cli_vault.set("api", "value-1")
    other_db = Database(database_url)
    gateway = Vault.open(other_db, tmp_path, {})
    assert gateway.get("api") == "value-1"  # its keyring now holds the old key only
    old_ring = gateway.keyring()

    assert cli_vault.rotate_master() == 1
    assert cli_vault.drop_old_keys() == 1
    assert gateway.keyring() is old_ring and cli_vault.keyring().key_id not in old_ring.key_ids
    assert gateway.get("api") == "value-1"  # unknown key id: re-read the key file once
    # And it seals new values with the new primary, not the dropped key.
    assert gateway.set("api", "value-2").key_id == cli_vault.keyring().key_id
    assert cli_vault.get("api") == "value-2"
    other_db.close()


def test_rotate_master_in_env_mode(db: Database, tmp_path: Path) -> None:
    old, new = encode_key(generate_key()), encode_key(generate_key())
    before = Vault.open(db, tmp_path, {ENV_KEY: old})
    for n in range(3):
        before.set(f"s{n}", f"value-{n}")
    during = Vault.open(db, tmp_path, {ENV_KEY: f"{new},{old}"})
    during.set("s0", "value-0b")  # already under the new key
    assert during.rotate_master() == 2
    assert during.rotate_master() == 0
    with pytest.raises(MasterKeyError, match=ENV_KEY):
        during.drop_old_keys()
    after = Vault.open(db, tmp_path, {ENV_KEY: new})
    assert [after.get(f"s{n}") for n in range(3)] == ["value-0b", "value-1", "value-2"]
    assert not (tmp_path / "master.key").exists()


# -- CLI ----------------------------------------------------------------------------------------


def cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_KEY, ENV_KEY_FILE)}
    env["MCP_GATEWAY_DATA_DIR"] = str(data_dir)
    argv = [sys.executable, "-m", "mcp_gateway.cli", "secrets", *args]
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    for line in stdin.splitlines():
        if len(line) > 8:  # the value is in no argument and no output
            assert line not in " ".join(argv) and line not in out.stdout and line not in out.stderr
    return out


def test_cli_set_list_remove(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    value = new_value()
    out = cli(data_dir, "set", "github", "--description", "GitHub token", stdin=value + "\n")
    assert out.returncode == 0, out.stderr
    assert "stored secret github" in out.stdout
    assert stat.S_IMODE((data_dir / "master.key").stat().st_mode) == 0o600
    db = Database(data_dir / "gateway.db")
    try:
        vault = Vault.open(db, data_dir, {})
        assert vault.get("github") == value  # exactly one trailing newline dropped

        assert cli(data_dir, "set", "multi", stdin="line1\nline2\n\n").returncode == 0
        assert vault.get("multi") == "line1\nline2\n"
        replaced = cli(data_dir, "set", "github", stdin=value + "-v2")
        assert replaced.returncode == 0 and "replaced secret github" in replaced.stdout
        assert vault.get("github") == value + "-v2"

        listing = cli(data_dir, "list")
        assert listing.returncode == 0 and "github" in listing.stdout and "GitHub token" in listing.stdout
        assert "multi" in listing.stdout and "line1" not in listing.stdout
        as_json = cli(data_dir, "list", "--json")
        rows = json.loads(as_json.stdout)
        assert [r["name"] for r in rows] == ["github", "multi"]
        assert all(set(r) == {"name", "description", "created_at", "updated_at", "key_id"} for r in rows)

        refused = cli(data_dir, "set", "empty", stdin="\n")
        assert refused.returncode == 1 and "empty" in refused.stderr
        bad = cli(data_dir, "set", "bad name", stdin="x")
        assert bad.returncode == 1 and "invalid secret name" in bad.stderr

        assert cli(data_dir, "remove", "multi").returncode == 0
        missing = cli(data_dir, "remove", "multi")
        assert missing.returncode == 1 and "no secret named 'multi'" in missing.stderr
        assert [i.name for i in vault.list()] == ["github"]
    finally:
        db.close()


def test_cli_rotate_master_and_generate_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for name in ("a", "b"):
        assert cli(data_dir, "set", name, stdin=f"value-of-{name}").returncode == 0
    rotated = cli(data_dir, "rotate-master")
    assert rotated.returncode == 0 and "re-encrypted 2 values" in rotated.stdout
    assert len(key_lines(data_dir / "master.key")) == 2
    dropped = cli(data_dir, "rotate-master", "--drop-old")
    assert dropped.returncode == 0 and "dropped 2 old master keys" in dropped.stdout
    assert len(key_lines(data_dir / "master.key")) == 1
    db = Database(data_dir / "gateway.db")
    try:
        assert Vault.open(db, data_dir, {}).get("b") == "value-of-b"
    finally:
        db.close()

    generated = cli(data_dir, "generate-key")
    assert generated.returncode == 0
    assert len(decode_key(generated.stdout.strip(), "output")) == 32


# -- admin API ------------------------------------------------------------------------------------


def admin_app(vault: Vault | None) -> Starlette:
    registry = Registry(Catalog(), None, [])
    return Starlette(routes=[Mount("/admin", routes=admin_routes(registry, ADMIN_TOKEN, None, vault=vault))])


def test_admin_api_never_echoes_values(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    value = new_value()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serve_in_thread(admin_app(vault)) as base, httpx2.Client(base_url=base + "/admin", timeout=30) as http:
        assert http.get("/secrets").status_code == 401
        assert http.put("/secrets/github", json={"value": value}).status_code == 401
        wrong = http.put("/secrets/github", json={"value": value}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and vault.list() == []

        created = http.put("/secrets/github", json={"value": value, "description": "PAT"}, headers=auth)
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "github" and created.json()["description"] == "PAT"
        assert "value" not in created.json() and value not in created.text
        replaced = http.put("/secrets/github", json={"value": value + "2"}, headers=auth)
        assert replaced.status_code == 200 and value not in replaced.text
        assert vault.get("github") == value + "2"

        listing = http.get("/secrets", headers=auth)
        assert listing.status_code == 200 and value not in listing.text
        assert [s["name"] for s in listing.json()["secrets"]] == ["github"]

        for body, fragment in (
            ({"value": ""}, "value is required"),
            ({"description": "no value"}, "value is required"),
            ({"value": value, "description": 3}, "description"),
        ):
            bad = http.put("/secrets/github", json=body, headers=auth)
            assert bad.status_code == 400 and fragment in bad.json()["error"] and value not in bad.text
        bad_name = http.put("/secrets/bad%20name", json={"value": value}, headers=auth)
        assert bad_name.status_code == 400 and "invalid secret name" in bad_name.text and value not in bad_name.text
        not_json = http.put("/secrets/github", content=b'{"value": "' + value.encode(), headers=auth)
        assert not_json.status_code == 400 and value not in not_json.text

        assert http.delete("/secrets/github", headers=auth).status_code == 204
        assert http.delete("/secrets/github", headers=auth).status_code == 404
        assert vault.list() == []


def test_admin_api_without_a_vault(tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serve_in_thread(admin_app(None)) as base, httpx2.Client(base_url=base + "/admin", timeout=30) as http:
        assert http.get("/secrets").status_code == 401
        assert http.get("/secrets", headers=auth).status_code == 501
        assert http.put("/secrets/x", json={"value": "v"}, headers=auth).status_code == 501
