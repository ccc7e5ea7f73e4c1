"""Authenticated keys are cached per API process (engine/security/key_cache.py), and a revocation reaches every
process within a second: two `lockzero serve` processes on one PostgreSQL (woken by LISTEN/NOTIFY), and one on
SQLite with the revocation made by another process (the CLI). Engine-level: an expired key is refused from the
cache itself, and a key revoked in the store is refused as soon as the revocation has answered (it waits out the
caches' bound, REVOKED_KEYS_REFUSED_WITHIN_S)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.security.key_cache import KeyCache
from lockzero.engine.security.keys import REVOKED_KEYS_REFUSED_WITHIN_S, create_key, revoke_key
from tests.api.support import Key, Server, start_server
from tests.conftest import fresh_pg_database
from tests.engine.support import OPERATOR, ManualClock, migrated_engine


def _accepted(server: Server, key: Key) -> bool:
    r = server.call(key, "list_secrets", {})
    if r.status_code == 401:
        return False
    assert r.status_code == 200 and "result" in r.json(), r.text
    return True


@pytest.fixture
def two_pg_servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with fresh_pg_database() as url:
        first = start_server("postgresql", tmp_path / "a", url)
        second = Server("postgresql", url, tmp_path / "b", dict(first.env))
        try:
            second.start()
            yield first, second
        finally:
            second.stop()
            first.stop()


def _revoke_reaches(servers: tuple[Server, ...], cli: Server) -> None:
    tenant = cli.tenant("kc")
    key = cli.key(tenant)
    for _ in range(5):  # warm: every process has the key cached
        assert all(_accepted(s, key) for s in servers)
    began = time.monotonic()
    cli.revoke(key)  # answers once every process's cache has had its bound to drop the key
    assert time.monotonic() - began >= REVOKED_KEYS_REFUSED_WITHIN_S
    assert [_accepted(s, key) for s in servers] == [False] * len(servers)
    other = cli.key(tenant)  # other keys go on working
    assert all(_accepted(s, other) for s in servers)


@pytest.mark.postgres
def test_a_revoked_key_is_refused_by_every_api_process_within_a_second(two_pg_servers: tuple[Server, Server]) -> None:
    _revoke_reaches(two_pg_servers, two_pg_servers[0])


def test_a_key_revoked_by_another_process_is_refused_on_sqlite(tmp_path: Path) -> None:
    server = start_server("sqlite", tmp_path, f"sqlite:///{tmp_path / 'lockzero.db'}")
    try:
        _revoke_reaches((server,), server)
    finally:
        server.stop()


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(sqlite_url, clock=ManualClock()) as e:
        yield e


async def _until_watching(cache: KeyCache, token: str) -> None:
    for _ in range(100):
        await cache.authenticate(token)
        if cache._watching():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the key cache's watcher never started")


async def test_an_expired_key_is_refused_from_the_cache(engine: Engine) -> None:
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    created = await create_key(engine, "acme", OPERATOR, expires_at=clock.now() + timedelta(hours=1))
    cache = KeyCache(engine)
    try:
        await _until_watching(cache, created.key)
        assert (await cache.authenticate(created.key)) is not None
        clock.advance(hours=2)
        assert await cache.authenticate(created.key) is None
    finally:
        await cache.close()


async def test_a_key_revoked_in_the_store_is_refused_once_the_watcher_looked(engine: Engine) -> None:
    created = await create_key(engine, "acme", OPERATOR)
    cache = KeyCache(engine)
    try:
        await _until_watching(cache, created.key)
        assert (await cache.authenticate(created.key)) is not None
        await revoke_key(engine, created.key_id, OPERATOR)  # returns after the bound: refused at once
        assert await cache.authenticate(created.key) is None
        assert await cache.authenticate("lz_mcp_not-a-key") is None
    finally:
        await cache.close()
