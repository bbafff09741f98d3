"""Every store area on SQLite and on PostgreSQL (real servers), and processes sharing one PostgreSQL.

The same Core queries run on both backends: each test here runs once per backend, so a query
that one of them rejects, or answers differently, fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import select

from mcp_gateway.config import ApiConfig, GatewayConfig
from mcp_gateway.config.models import ModelConfig
from mcp_gateway.store.connections import ConnectionStore, StoredToken
from mcp_gateway.store.database import Database
from mcp_gateway.store.drift import MAX_FINDINGS_PER_TOOL, DriftStore, Finding
from mcp_gateway.store.identities import IdentityError, IdentityStore, Selector
from mcp_gateway.store.models import ModelStore
from mcp_gateway.store.registrations import RegistrationStore
from mcp_gateway.store.schema import meta
from mcp_gateway.vault import Vault, encode_key, generate_key
from mcp_gateway.vault.keyring import ENV_KEY
from tests.conftest import ECHO_SPEC, running_gateway
from tests.results import text_of
from tests.upstream import parse_echo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database, SQLite then PostgreSQL."""
    database = Database(database_url)
    yield database
    database.close()


def test_registrations(db: Database) -> None:
    store = RegistrationStore(db)
    start = store.revision()
    api = ApiConfig(name="pets", spec="https://example.test/openapi.json", prefix="p")
    assert store.put(api, "openapi: 3.1.0") is False
    assert store.put(api.model_copy(update={"prefix": "q"})) is True
    got = store.get("pets")
    assert got is not None and got.config.prefix == "q" and got.spec_text is None
    assert got.created_at <= got.updated_at
    store.put(ApiConfig(name="alpha", spec="a.yaml"))
    assert [r.config.name for r in store.list()] == ["alpha", "pets"]
    assert store.delete("pets") is True and store.delete("pets") is False and store.get("pets") is None
    assert store.revision() == start + 5  # every write, even one that found nothing


def test_models(db: Database) -> None:
    store = ModelStore(db)
    first = ModelConfig.model_validate({"name": "b-model", "deployments": [{"provider": "openai"}]})
    second = ModelConfig.model_validate({"name": "a-model", "deployments": [{"provider": "anthropic"}]})
    assert store.put(first) is False
    time.sleep(0.01)
    assert store.put(second) is False
    assert [m.config.name for m in store.list()] == ["b-model", "a-model"]  # registration order
    created = store.get("b-model")
    assert created is not None and store.put(first.model_copy(update={"retries": 3})) is True
    replaced = store.get("b-model")
    assert replaced is not None and replaced.config.retries == 3 and replaced.created_at == created.created_at
    gone = store.delete("b-model")
    assert gone is not None and gone.config.retries == 3 and store.delete("b-model") is None
    assert store.revision() == 5


def test_identities(db: Database) -> None:
    store = IdentityStore(db)
    store.add_consumer("alice", "blue", "acme")
    with pytest.raises(IdentityError, match="exists"):
        store.add_consumer("alice")
    with pytest.raises(IdentityError, match="no consumer"):
        store.add_key("k0", "nobody", "h", expires_at=None, description=None)
    store.add_key("k1", "alice", "hash-1", expires_at=None, description="laptop")
    store.add_key("k2", "alice", "hash-2", expires_at=100.0, description=None)
    assert [k.key_id for k in store.keys("alice")] == ["k1", "k2"] and store.keys("bob") == []
    store.expire_key("k1", 50.0)
    store.expire_key("k2", 500.0)  # never later than it already would
    assert [store.key(k).expires_at for k in ("k1", "k2")] == [50.0, 100.0]  # type: ignore[union-attr]
    assert store.revoke_key("k1") is True and store.revoke_key("k1") is False
    assert store.key("k1").revoked_at is not None and store.key("nope") is None  # type: ignore[union-attr]

    assert store.set_disabled("alice", True) and not store.set_disabled("bob", True)
    assert store.disabled_consumers() == {"alice"} and store.consumer("alice").disabled  # type: ignore[union-attr]

    with pytest.raises(IdentityError, match="no API key"):
        store.add_policy("key", "k9", "allow", Selector(), None)
    team = store.add_policy("team", "blue", "deny", Selector(methods=("DELETE",)), "no deletes")
    keyed = store.add_policy("key", "k2", "allow", Selector(apis=("pets",), models=()), None)
    store.add_policy("consumer", "alice", "allow", Selector(models=("gpt-*",)), None)
    assert keyed.id > team.id
    store.add_key("k3", "alice", "hash-3", expires_at=None, description=None)
    assert store.copy_key_policies("k2", "k3") == 1 and store.copy_key_policies("k9", "k3") == 0
    copied = store.policies()[-1]
    assert (copied.subject, copied.selector.apis, copied.id) == ("k3", ("pets",), keyed.id + 2)
    removed = store.remove_policy(team.id)
    assert removed is not None and removed.selector.methods == ("DELETE",) and store.remove_policy(team.id) is None

    assert store.remove_consumer("alice") == (3, 3)  # 3 keys; its policy and its keys' two
    assert store.remove_consumer("alice") is None
    assert store.policies() == [] and store.keys() == [] and store.consumers() == []
    # A new policy never reuses a deleted one's id.
    assert store.add_policy("everyone", "", "allow", Selector(), None).id > copied.id


def test_secrets_and_counters(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    info, created = vault.put("token", "v1", "first")
    assert created and info.description == "first"
    info, created = vault.put("token", "v2")
    assert not created and info.description == "first" and vault.get("token") == "v2"
    assert [i.name for i in vault.list()] == ["token"] and vault.remove("token") and not vault.remove("token")
    assert vault.revision() == 4
    # Counters are rows of `meta`, one per area, created by their first write.
    assert dict(db.query(select(meta.c.key, meta.c.value))) == {"secrets": 4}


def test_connections_and_single_use_keys(db: Database, tmp_path: Path) -> None:
    vault = Vault.open(db, tmp_path, {})
    store = ConnectionStore(db, vault)
    store.save("alice", "gh", StoredToken("at-1", "rt-1", 10.0, 1.0, "repo"))
    store.save("alice", "gh", StoredToken("at-2", None, 20.0, 2.0, None))
    store.save("bob", "gh", StoredToken("at-b"))
    token = store.load("alice", "gh")
    assert token is not None and (token.access_token, token.refresh_token, token.expires_at) == ("at-2", None, 20.0)
    assert store.load("alice", "other") is None
    assert [(c.consumer, c.api) for c in store.list()] == [("alice", "gh"), ("bob", "gh")]
    assert [c.consumer for c in store.list("bob")] == ["bob"]
    assert store.delete("bob", "gh") and not store.delete("bob", "gh") and store.revision() == 5

    store.add_pending("ticket", "t-1", "alice", "gh", 60, verifier="pkce-verifier")
    store.add_pending("state", "s-1", "alice", "gh", -1)  # already expired
    assert store.peek("ticket", "t-1") is not None and store.peek("state", "t-1") is None
    assert store.peek("state", "s-1") is None and store.redeem("state", "s-1") is None
    redeemed = store.redeem("ticket", "t-1")
    assert redeemed is not None and redeemed.verifier == "pkce-verifier"
    assert store.redeem("ticket", "t-1") is None  # once


def test_a_ticket_redeemed_by_many_threads_at_once_is_redeemed_once(db: Database, tmp_path: Path) -> None:
    store = ConnectionStore(db, Vault.open(db, tmp_path, {}))

    def redeem(key: str, start: threading.Barrier, won: list[str]) -> None:
        start.wait()
        if store.redeem("ticket", key) is not None:
            won.append(key)

    for round_ in range(5):
        store.add_pending("ticket", f"t-{round_}", "alice", "gh", 60)
        start, won = threading.Barrier(8), []
        threads = [threading.Thread(target=redeem, args=(f"t-{round_}", start, won)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(won) == 1


def test_drift(db: Database) -> None:
    store = DriftStore(db)
    store.record("pets", "list", 200, [], 1.0)
    for n in range(MAX_FINDINGS_PER_TOOL + 3):
        store.record("pets", "get", 200, [Finding("body", f"$.f{n}", "wrong type")], 10.0 + n)
    again = Finding("status", "", "undeclared status 500")
    store.record("pets", "get", 500, [again, again], 100.0)  # counted once per response
    store.record("pets", "get", 500, [again], 101.0)
    store.add_dropped({("pets", "get"): 2, ("pets", "new"): 1})
    store.add_dropped({("pets", "get"): 3})
    report = {tool.tool: tool for tool in store.report("pets")}
    assert list(report) == ["get", "list", "new"]
    get = report["get"]
    assert (get.checked, get.dropped, get.last_checked) == (MAX_FINDINGS_PER_TOOL + 5, 5, 101.0)
    assert len(get.findings) == MAX_FINDINGS_PER_TOOL  # the oldest made room
    newest = get.findings[0]
    assert (newest.status, newest.finding, newest.count, newest.first_seen) == (500, again, 2, 100.0)
    assert "$.f0" not in {f.finding.path for f in get.findings} and "$.f22" in {f.finding.path for f in get.findings}
    assert (report["list"].checked, report["list"].findings) == (1, [])
    assert (report["new"].checked, report["new"].dropped) == (0, 1)
    assert store.clear("pets") and not store.clear("pets") and store.report("pets") == []


# -- processes sharing one PostgreSQL ------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mcp_gateway.config import ApiConfig
    from mcp_gateway.store.database import Database
    from mcp_gateway.store.registrations import RegistrationStore
    from mcp_gateway.vault import Vault

    db = Database(sys.argv[1])
    RegistrationStore(db).put(ApiConfig(name="from-" + sys.argv[2], spec="x.yaml"))
    Vault.open(db, Path(sys.argv[3])).set("shared", "written by " + sys.argv[2])
    db.close()
    """
)


def test_two_processes_see_each_others_writes_through_the_revisions(postgres, tmp_path: Path) -> None:
    url = postgres.database()
    env = {**os.environ, ENV_KEY: encode_key(generate_key())}
    db = Database(url)
    registrations = RegistrationStore(db)
    vault = Vault.open(db, tmp_path, env)
    try:
        before = (registrations.revision(), vault.revision())
        for n in (1, 2):
            writer = [sys.executable, "-c", WRITER, url, f"p{n}", str(tmp_path / f"p{n}")]
            done = subprocess.run(writer, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert (registrations.revision(), vault.revision()) == (before[0] + n, before[1] + n)
            assert registrations.get(f"from-p{n}") is not None
            assert vault.get("shared") == f"written by p{n}"
    finally:
        db.close()


def gateway_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mcp_gateway.cli", *args]
    return subprocess.run(command, input=stdin, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.anyio
async def test_a_gateway_picks_up_what_the_cli_of_another_host_writes(
    postgres, upstream: str, recorder: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway and the CLI share nothing but the PostgreSQL database (each its own data dir)."""
    recorded, seen = recorder
    url, key = postgres.database(), encode_key(generate_key())
    monkeypatch.setenv(ENV_KEY, key)
    credentials = {"*": {"type": "bearer", "token": "secret:tok"}}
    config = GatewayConfig(
        data_dir=tmp_path / "gateway-host",
        database_url=url,
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=recorded, credentials=credentials)],
    )
    env = {**os.environ, "MCP_GATEWAY_DATABASE_URL": url, "MCP_GATEWAY_DATA_DIR": str(tmp_path / "cli-host")}
    assert gateway_cli("secrets", "set", "tok", env=env, stdin="token-one").returncode == 0
    with running_gateway(config) as (mcp_url, _gateway):
        async with Client(mcp_url, mode="legacy") as client:
            assert not (await client.call_tool("getItem", {"id": "1"})).is_error
            assert seen[-1] == "Bearer token-one"
            added = gateway_cli("apis", "add", "more", str(ECHO_SPEC), "--base-url", upstream, "--prefix", "m", env=env)
            assert added.returncode == 0, added.stderr
            changed = gateway_cli("secrets", "set", "tok", env=env, stdin="token-two")
            assert changed.returncode == 0, changed.stderr
            deadline = time.monotonic() + 10
            while True:
                names = {t.name for t in (await client.list_tools()).tools}
                result = await client.call_tool("getItem", {"id": "2"})
                assert not result.is_error, text_of(result)
                if "m_getItem" in names and seen[-1] == "Bearer token-two":
                    break
                assert time.monotonic() < deadline, f"not picked up: {sorted(names)}, {seen[-1]!r}"
                await anyio.sleep(0.2)
            more = await client.call_tool("m_getItem", {"id": "3"})
            assert parse_echo(text_of(more))["path"].endswith("/items/3")
    listed = json.loads(gateway_cli("apis", "list", "--json", env=env).stdout)
    assert "more" in json.dumps(listed)
