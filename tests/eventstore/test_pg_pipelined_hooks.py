"""PostgreSQL runs an append batch's hooks in pipeline mode (eventstore/pg_group_commit.py): a write's error comes
back later than the write, often with the COMMIT. A lock timeout is an OperationalError, yet it is that write's own
failure: it must fail only its own append, never the batch as if the database were gone. psycopg syncs the pipeline
and rolls back as the block ends, so the connection goes back to the pool idle; the test checks that too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import psycopg
import pytest

from lockzero.eventstore import AppendResult, EventStore, NewEvent, RecordedEvent, Transaction, open_store
from tests.conftest import fresh_pg_database

HELD = 1_000_000


@pytest.fixture
async def pg() -> AsyncIterator[tuple[EventStore, str]]:
    with fresh_pg_database() as url:
        store = await open_store(url)
        await store.migrate()
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE hook_rows (position BIGINT PRIMARY KEY, stream TEXT)")
            await tx.execute("INSERT INTO hook_rows (position, stream) VALUES (?, ?)", (HELD, "held"))
        try:
            yield store, url
        finally:
            await store.close()


async def writes(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
    for e in events:
        await tx.write("INSERT INTO hook_rows (position, stream) VALUES (?, ?)", (e.position, e.stream))


async def waits_for_a_held_row(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
    await writes(tx, events)
    await tx.write("SET LOCAL lock_timeout = '100ms'")
    await tx.write("UPDATE hook_rows SET stream = 'taken' WHERE position = ?", (HELD,))


@pytest.mark.parametrize("bad", [0, 5, 9])
async def test_a_lock_timeout_in_one_hook_fails_only_its_append(
    pg: tuple[EventStore, str], bad: int, caplog: pytest.LogCaptureFixture
) -> None:
    store, url = pg
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    async with await psycopg.AsyncConnection.connect(url) as holder:
        await holder.execute("SELECT 1 FROM hook_rows WHERE position = %s FOR UPDATE", (HELD,))
        outcomes = await asyncio.gather(
            *(
                store.append(
                    f"t{i}",
                    [NewEvent(type="Noted", data=b"{}")],
                    on_append=waits_for_a_held_row if i == bad else writes,
                )
                for i in range(10)
            ),
            return_exceptions=True,
        )
        await holder.rollback()
    failed = outcomes[bad]
    assert isinstance(failed, psycopg.errors.LockNotAvailable), repr(failed)
    assert all(isinstance(o, AppendResult) for i, o in enumerate(outcomes) if i != bad), outcomes
    assert await store.read_stream(f"t{bad}") == []
    async with store.reader() as tx:
        rows = await tx.fetchall("SELECT stream FROM hook_rows ORDER BY position")
        # Every pooled connection is back idle: none left inside an aborted transaction.
        stuck = await tx.fetchone(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
    assert sorted(r[0] for r in rows) == sorted([f"t{i}" for i in range(10) if i != bad] + ["held"])
    assert stuck == (0,)
    # ... and not because the pool had to roll it back (it warns when it does).
    assert not [r.getMessage() for r in caplog.records if "rolling back" in r.getMessage()]
