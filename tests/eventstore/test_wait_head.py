"""wait_head: the position a waiter passes to wait_for_events, read without a round trip on PostgreSQL.

On PostgreSQL the store's LISTEN connection counts the head from each append's notification, so a waiter
(verify_remediation's long poll, the saga's adoption wait) neither reads the head before it waits nor after
each wake-up. These tests hold it to what waiting needs: never past the committed head, caught up soon after
any commit (another store's too), and a waiter woken by every later append, even after a stray notification
or a lost listener connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
import pytest

from lockzero.eventstore import EventStore, NewEvent, open_store
from lockzero.eventstore.postgres import LISTENER_NAME
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.asyncio

CATCH_UP_S = 5.0


def one() -> list[NewEvent]:
    return [NewEvent(type="t", data=b"{}")]


@asynccontextmanager
async def other_store(url: str) -> AsyncIterator[EventStore]:
    s = await open_store(url, pool_size=2)
    try:
        yield s
    finally:
        await s.close()


async def caught_up(store: EventStore) -> int:
    """wait_head once it equals the committed head; fails if it does not within CATCH_UP_S."""
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        hint, head = await store.wait_head(), await store.head_position()
        assert hint <= head
        if hint == head:
            return hint
        assert time.monotonic() < deadline, f"wait_head stuck at {hint}, head {head}"
        await asyncio.sleep(0.01)


async def test_wait_head_never_passes_the_head_and_catches_up_with_other_stores(
    store: EventStore, store_url: str
) -> None:
    assert await caught_up(store) == 0
    async with other_store(store_url) as other:
        for n in range(1, 6):
            await other.append(f"s-{n % 2}", one())
            assert await store.wait_head() <= await store.head_position()
            assert await caught_up(store) == n


async def blocked_waiter(store: EventStore, timeout: float = 10) -> tuple[int, asyncio.Task[bool]]:
    """After one append, a wait from the caught-up head, and that head; the wait has not returned yet."""
    await store.append("s", one())
    after = await caught_up(store)
    waiter = asyncio.create_task(store.wait_for_events(after, timeout=timeout))
    await asyncio.sleep(0.2)  # let it block; correctness does not depend on this
    assert not waiter.done()
    return after, waiter


@pytest.mark.parametrize("writer", ["same-store", "other-store"])
async def test_a_wait_from_wait_head_wakes_on_the_next_append(store: EventStore, store_url: str, writer: str) -> None:
    after, waiter = await blocked_waiter(store)
    async with other_store(store_url) as other:
        await (store if writer == "same-store" else other).append("s", one())
        assert await asyncio.wait_for(waiter, 8) is True
    assert await caught_up(store) == after + 1


@pytest.fixture
async def pg() -> AsyncIterator[tuple[EventStore, str]]:
    """A PostgreSQL store and its URL: SQLite reads its head in-process and has no listener to test."""
    with fresh_pg_database() as url:
        async with other_store(url) as s:
            await s.migrate()
            yield s, url


@contextmanager
def no_head_query(store: EventStore) -> Iterator[None]:
    """Within it, reading the head the slow way (head_position, a query) fails: the listener must answer."""

    async def refused() -> int:
        raise AssertionError("the head was read with a query")

    setattr(store, "head_position", refused)  # noqa: B010 (an instance attribute, removed below)
    try:
        yield
    finally:
        delattr(store, "head_position")


async def counting(store: EventStore) -> None:
    """Until the store's listener counts the head: wait_head answers without a query (PostgreSQL only)."""
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        with no_head_query(store), contextlib.suppress(AssertionError):
            await store.wait_head()
            return
        assert time.monotonic() < deadline, "the listener does not count the head"
        await asyncio.sleep(0.01)


async def test_waits_read_no_head_while_the_listener_counts(pg: tuple[EventStore, str]) -> None:
    store, store_url = pg
    after, waiter = await blocked_waiter(store)
    await counting(store)
    with no_head_query(store):
        assert await store.wait_head() == after
        async with other_store(store_url) as other:
            await other.append("s", one())
        assert await asyncio.wait_for(waiter, 8) is True  # woken, and the head it checked was the notified one
        deadline = time.monotonic() + CATCH_UP_S
        while await store.wait_head() != after + 1:
            assert time.monotonic() < deadline, "the notified head was not counted"
            await asyncio.sleep(0.01)
        assert await store.wait_for_events(after, timeout=5) is True  # at once, from the count


async def test_notifications_without_a_commit_cost_at_most_an_early_wake(pg: tuple[EventStore, str]) -> None:
    store, store_url = pg
    after, waiter = await blocked_waiter(store)
    await counting(store)
    async with await psycopg.AsyncConnection.connect(store_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify('lz_events', 'not a position')")
        await asyncio.sleep(0.3)
        assert not waiter.done(), "a notification that names no head woke the waiter"
        with no_head_query(store):
            assert await store.wait_head() == after
        # Anyone who can connect may NOTIFY: a forged head wakes the waiter early; the next commit's replaces it.
        await conn.execute("SELECT pg_notify('lz_events', '999999')")
        assert await asyncio.wait_for(waiter, 8) is True
        assert await store.head_position() == after
    await store.append("s", one())
    deadline = time.monotonic() + CATCH_UP_S
    while await store.wait_head() != after + 1:
        assert time.monotonic() < deadline, "the forged head was not replaced by the next commit's"
        await asyncio.sleep(0.01)


LISTENER = (
    f"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{LISTENER_NAME}'"
)


async def test_a_lost_listener_connection_is_recounted_and_still_wakes(pg: tuple[EventStore, str]) -> None:
    store, store_url = pg
    after, waiter = await blocked_waiter(store, timeout=15)
    await counting(store)
    async with await psycopg.AsyncConnection.connect(store_url, autocommit=True) as admin:
        (listener,) = [pid for (pid,) in await (await admin.execute(LISTENER)).fetchall()]
        await admin.execute("SELECT pg_terminate_backend(%s)", (listener,))
        deadline = time.monotonic() + CATCH_UP_S
        while not [pid for (pid,) in await (await admin.execute(LISTENER)).fetchall() if pid != listener]:
            assert time.monotonic() < deadline, "the listener did not reconnect"
            await asyncio.sleep(0.02)
        await counting(store)
        # Counting again from the head it read on reconnecting, not from nothing.
        with no_head_query(store):
            assert await store.wait_head() == after
        assert not waiter.done()
        async with other_store(store_url) as other:
            await other.append("s", one())
        assert await asyncio.wait_for(waiter, 12) is True
    assert await caught_up(store) == after + 1
