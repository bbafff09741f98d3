"""Changes made in the store reach a running gateway at its next poll, whenever they are made.

A revision recorded later than the data it stands for hides a change made in between: a secret
changed right after start (before the first poll), or while an upstream was reading it, or an
API key revoked while its look-up was in flight. Each test makes the change in that window (the
gated tests hold a real store read open with an event) and checks the next use sees it. Each
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from mcp_gateway.auth import keys
from mcp_gateway.auth.apikeys import ApiKeyAuthenticator, AuthFailure
from mcp_gateway.auth.connections import Connections
from mcp_gateway.config import ApiConfig, GatewayConfig
from mcp_gateway.gateway import STORE_POLL_SECONDS, Gateway
from mcp_gateway.pipeline import Call
from mcp_gateway.store.connections import ConnectionStore
from mcp_gateway.store.database import Database
from mcp_gateway.store.identities import IdentityStore
from mcp_gateway.upstream.oauth import Token
from mcp_gateway.vault import Vault
from tests.conftest import ECHO_SPEC, running_gateway
from tests.results import text_of

pytestmark = pytest.mark.anyio
T = TypeVar("T")


class Gate:
    """Holds a blocking call open after it has read, until released: the window to change the store in."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.armed = True

    def wrap(self, read: Callable[..., T]) -> Callable[..., T]:
        def gated(*args: Any) -> T:
            value = read(*args)
            if self.armed:
                self.armed = False
                self.reached.set()
                assert self.release.wait(30), "the test never released the gate"
            return value

        return gated

    async def wait_reached(self) -> None:
        assert await anyio.to_thread.run_sync(self.reached.wait, 30), "the gated read never happened"


def bearer_config(data_dir: Path, upstream: str, database_url: str) -> GatewayConfig:
    credentials = {"*": {"type": "bearer", "token": "secret:tok"}}
    return GatewayConfig(
        data_dir=data_dir,
        database_url=database_url,
        apis=[ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream, credentials=credentials)],
    )


def other_process_vault(data_dir: Path, database_url: str) -> tuple[Database, Vault]:
    """The vault as another process (the CLI, a replica) opens it."""
    db = Database(database_url)
    return db, Vault.open(db, data_dir)


async def test_a_secret_changed_before_the_first_poll_is_used(
    tmp_path: Path, database_url: str, recorder: tuple[str, list[str]]
) -> None:
    upstream, seen = recorder
    data_dir = tmp_path / "data"
    db, vault = other_process_vault(data_dir, database_url)
    vault.set("tok", "token-one")
    try:
        with running_gateway(bearer_config(data_dir, upstream, database_url)) as (url, _gateway):
            started = time.monotonic()  # the store watcher's first poll is STORE_POLL_SECONDS away
            async with Client(url, mode="legacy") as client:
                assert not (await client.call_tool("getItem", {"id": "1"})).is_error
                assert seen[-1] == "Bearer token-one"
                await anyio.to_thread.run_sync(vault.set, "tok", "token-two")
                assert time.monotonic() - started < STORE_POLL_SECONDS, "too slow to change it before the first poll"
                await anyio.sleep(2 * STORE_POLL_SECONDS + 0.5)
                result = await client.call_tool("getItem", {"id": "2"})
            assert not result.is_error, text_of(result)
            assert seen[-1] == "Bearer token-two"
    finally:
        db.close()


async def test_a_secret_changed_while_an_upstream_reads_it_is_used(
    tmp_path: Path, database_url: str, recorder: tuple[str, list[str]]
) -> None:
    upstream, seen = recorder
    data_dir = tmp_path / "data"
    gateway = Gateway(bearer_config(data_dir, upstream, database_url))
    gateway.vault.set("tok", "token-one")
    db, vault = other_process_vault(data_dir, database_url)
    gate = Gate()
    gateway.pool.resolve = gate.wrap(gateway.pool.resolve)  # the first build holds after reading the secret
    try:
        await gateway.start()
        tool = next(t for t in gateway.catalog.snapshot.ordered if t.name == "getItem")
        call = Call(tool, gateway.catalog.snapshot.apis["echo"], {"id": "1"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(gateway.handler, call)
            await gate.wait_reached()
            await anyio.to_thread.run_sync(vault.set, "tok", "token-two")
            await gateway.refresh_credentials()  # a poll while the upstream is still being built
            gate.release.set()
        assert seen[-1] == "Bearer token-one"  # that call was under way with the old value
        await gateway.refresh_credentials()  # the next poll
        result = await gateway.handler(call)
        assert not result.is_error, text_of(result)
        assert seen[-1] == "Bearer token-two"
    finally:
        db.close()
        await gateway.aclose()


async def test_a_key_revoked_while_it_is_looked_up_is_not_cached(database_url: str) -> None:
    db = Database(database_url)
    try:
        store = IdentityStore(db)
        store.add_consumer("robot")
        key, token = keys.issue(store, "robot")
        gate = Gate()
        store.key = gate.wrap(store.key)  # type: ignore[method-assign]
        authenticator = ApiKeyAuthenticator(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(authenticator.authenticate, token)  # read before the revocation: it passes
            await gate.wait_reached()
            await anyio.to_thread.run_sync(store.revoke_key, key.key_id)
            authenticator.invalidate()  # what an identity change does (AccessControl.reload)
            gate.release.set()
        with pytest.raises(AuthFailure, match="revoked"):
            await authenticator.authenticate(token)
    finally:
        db.close()


async def test_a_known_key_is_answered_from_its_check_until_identities_change(database_url: str) -> None:
    # A key already checked costs one hash and a lookup: the store is not read again, a wrong
    # secret for the same id is still refused, and an identity change (here a revocation) drops it.
    db = Database(database_url)
    try:
        store = IdentityStore(db)
        store.add_consumer("robot")
        key, token = keys.issue(store, "robot")
        reads: list[str] = []
        read = store.key
        store.key = lambda key_id: reads.append(key_id) or read(key_id)  # type: ignore[method-assign]
        authenticator = ApiKeyAuthenticator(store)
        first = await authenticator.authenticate(token)
        assert await authenticator.authenticate(token) is first and reads == [key.key_id]
        with pytest.raises(AuthFailure, match="unknown"):
            await authenticator.authenticate(token[:-4] + "AAAA")
        await anyio.to_thread.run_sync(store.revoke_key, key.key_id)
        assert await authenticator.authenticate(token) is first  # nothing told it yet
        authenticator.invalidate()  # what an identity change does (AccessControl.reload)
        with pytest.raises(AuthFailure, match="revoked"):
            await authenticator.authenticate(token)
    finally:
        db.close()


async def test_a_user_token_read_while_another_process_replaces_it_is_not_cached(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    db, vault = other_process_vault(data_dir, database_url)
    other_db, other_vault = other_process_vault(data_dir, database_url)
    try:
        store = ConnectionStore(db, vault)
        connections = Connections(store, "http://gateway.test", lambda api: None)
        await connections.save("alice", "gh", Token("access-one", time.time() + 3600, "refresh-one"))
        await connections.refresh_cache()
        gate = Gate()
        store.load = gate.wrap(store.load)  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(connections.load, "alice", "gh", cached=False))  # reads access-one
            await gate.wait_reached()
            replica = Connections(ConnectionStore(other_db, other_vault), "http://gateway.test", lambda api: None)
            await replica.save("alice", "gh", Token("access-two", time.time() + 3600, "refresh-two"))
            await connections.refresh_cache()  # the poll that sees the replica's write
            gate.release.set()
        token = await connections.load("alice", "gh")
        assert token is not None and token.access_token == "access-two"
    finally:
        db.close()
        other_db.close()
