"""Sessions live in the store: capped per key (a key loses only its own least recently used ones), idle
ones expire, any store handle on the same database serves and ends them, and the table holds no session id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lockzero.api.mcp.sessions import MAX_SESSIONS_PER_KEY, SessionStore
from lockzero.engine.readmodels.schema import ENGINE_MIGRATIONS
from lockzero.eventstore import EventStore, open_store
from tests.api.support import Server
from tests.engine.support import ManualClock


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[EventStore]:
    store = await open_store(store_url)
    await store.migrate(ENGINE_MIGRATIONS)
    try:
        yield store
    finally:
        await store.close()


async def test_a_key_cannot_evict_another_keys_sessions(db: EventStore) -> None:
    store = SessionStore(db, per_key=5)
    theirs = await store.open("key-b", "2025-11-25")
    mine = [await store.open("key-a", "2025-11-25") for _ in range(12)]
    assert await store.get(theirs.session_id, "key-b") == theirs
    assert await store.count("key-a") == 5
    assert await store.count("key-b") == 1
    # The oldest seven of key-a went, the newest five stay.
    assert [await store.get(s.session_id, "key-a") is not None for s in mine] == [False] * 7 + [True] * 5


async def test_the_least_recently_used_session_goes_first(db: EventStore) -> None:
    clock = ManualClock()
    store = SessionStore(db, per_key=3, clock=clock)
    opened = []
    for _ in range(3):
        opened.append(await store.open("key-a", "2025-11-25"))
        clock.advance(seconds=1)
    first, second, third = opened
    clock.advance(minutes=2)  # past the touch interval: a use moves the session to the back
    assert await store.get(first.session_id, "key-a") is not None
    await store.open("key-a", "2025-11-25")
    assert await store.get(first.session_id, "key-a") is not None
    assert await store.get(second.session_id, "key-a") is None
    assert await store.get(third.session_id, "key-a") is not None


async def test_idle_sessions_expire_and_use_keeps_them_alive(db: EventStore) -> None:
    clock = ManualClock()
    store = SessionStore(db, idle_timeout_s=600, clock=clock)
    idle = await store.open("key-a", "2025-11-25")
    busy = await store.open("key-a", "2025-06-18")
    for _ in range(3):  # 3 x 4 min: past the idle timeout in total, never idle that long
        clock.advance(minutes=4)
        assert await store.get(busy.session_id, "key-a") == busy
    assert await store.get(idle.session_id, "key-a") is None
    assert await store.close(idle.session_id, "key-a") is False
    # The next open sweeps the idle row away (lazily, through the index on last_seen_at).
    await store.open("key-b", "2025-11-25")
    async with db.reader() as tx:
        rows = await tx.fetchall("SELECT key_id, protocol_version FROM lz_mcp_sessions ORDER BY key_id, opened_at")
    assert rows == [("key-a", "2025-06-18"), ("key-b", "2025-11-25")]


async def test_a_session_is_bound_to_its_key(db: EventStore) -> None:
    store = SessionStore(db)
    session = await store.open("key-a", "2025-11-25")
    assert await store.get(session.session_id, "key-b") is None
    assert await store.close(session.session_id, "key-b") is False
    assert await store.get(session.session_id, "key-a") == session
    assert await store.get("not-a-session", "key-a") is None


async def test_two_handles_share_sessions_and_an_end_is_seen_at_once(db: EventStore, store_url: str) -> None:
    """Two handles on one database stand for two API processes: no cache can serve an ended session."""
    other_db = await open_store(store_url)
    try:
        here, there = SessionStore(db), SessionStore(other_db)
        session = await here.open("key-a", "2025-11-25")
        assert await there.get(session.session_id, "key-a") == session
        assert await there.close(session.session_id, "key-a") is True
        assert await here.get(session.session_id, "key-a") is None
        assert await here.close(session.session_id, "key-a") is False
    finally:
        await other_db.close()


async def test_the_table_holds_no_session_id(db: EventStore) -> None:
    session = await SessionStore(db).open("key-a", "2025-11-25")
    async with db.reader() as tx:
        rows = await tx.fetchall("SELECT * FROM lz_mcp_sessions")
    assert len(rows) == 1
    assert session.session_id not in repr(rows)


def test_cross_tenant_eviction_over_http(server: Server) -> None:
    """Tenant A initializes past its cap; tenant B's session still works, A's oldest is gone."""
    a = server.key(server.tenant("sess-a"))
    b = server.key(server.tenant("sess-b"))
    b_sid, b_init = server.initialize(b)
    a_first, _ = server.initialize(a)
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }

    def opens(n: int) -> list[int]:
        with httpx.Client(timeout=30) as client:
            headers = {"Content-Type": "application/json", **a.auth}
            return [client.post(server.mcp_url, json=body, headers=headers).status_code for _ in range(n)]

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for batch in pool.map(opens, [MAX_SESSIONS_PER_KEY // 4] * 4) for s in batch]
    assert statuses == [200] * MAX_SESSIONS_PER_KEY
    version = b_init["protocolVersion"]
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    r = server.post(ping, key=b, headers={"Mcp-Session-Id": b_sid, "MCP-Protocol-Version": version})
    assert r.status_code == 200 and r.json()["result"] == {}, r.text
    r = server.post(ping, key=a, headers={"Mcp-Session-Id": a_first, "MCP-Protocol-Version": version})
    assert r.status_code == 404, r.text
