"""PostgreSQL backend (psycopg 3, async pool).

Gap-free global positions: every append takes one row lock on ``lz_event_head`` right before it
inserts, and holds it until commit. Positions are therefore handed out in commit order, so a reader
that checkpoints a position can never later see a smaller one commit. The lock is taken after the
stream-version check, so a conflicting append fails without queueing behind the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lockzero.eventstore.common import EVENT_COLUMNS, check_append, migration_label, replay_pages, retried_append
from lockzero.eventstore.interface import (
    ANY_VERSION,
    AppendResult,
    ConcurrencyError,
    Dialect,
    IdempotencyError,
    Migration,
    NewEvent,
    OnAppend,
    RecordedEvent,
    StoreUnavailable,
    Transaction,
)
from lockzero.eventstore.migrations import STORE_MIGRATIONS, pending
from lockzero.eventstore.pg_group_commit import GroupCommitter, PendingAppend
from lockzero.eventstore.subscription import subscribe_by_polling

_NOTIFY_CHANNEL = "lz_events"
#: The LISTEN connection's application_name (pg_stat_activity), one per store instance.
LISTENER_NAME = "lockzero-listener"
_POLL_WITHOUT_LISTENER = 0.5
_PLACEHOLDER = re.compile(r"\?")


def _to_pg(sql: str) -> str:
    # Projections write `?` placeholders so one SQL text serves both backends.
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


def _row_to_event(row: tuple[Any, ...]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream=row[1],
        version=row[2],
        event_id=row[3],
        type=row[4],
        data=bytes(row[5]),
        metadata=bytes(row[6]),
        recorded_at=row[7],
    )


class PostgresTransaction:
    dialect: Dialect = "postgresql"

    def __init__(self, conn: psycopg.AsyncConnection[Any], pipeline: psycopg.AsyncPipeline | None = None) -> None:
        self._conn = conn
        #: Set for an append's hooks (pg_group_commit): writes are sent without waiting for their results.
        self._pipeline = pipeline

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(_to_pg(sql), params)
        if self._pipeline is not None:
            await self._pipeline.sync()  # the row count arrives with the result
        return cur.rowcount

    async def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(_to_pg(sql), params)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        async with self._conn.cursor() as cur:
            await cur.executemany(_to_pg(sql), params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await self._conn.execute(_to_pg(sql), params)
        return await cur.fetchall()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        cur = await self._conn.execute(_to_pg(sql), params)
        return await cur.fetchone()


class PostgresEventStore:
    dialect: Dialect = "postgresql"

    def __init__(self, pool: AsyncConnectionPool, url: str) -> None:
        self._pool = pool
        self._listener = _Listener(url)
        self._committer = GroupCommitter(self._connection, PostgresTransaction)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, connect_timeout: float = 5.0) -> PostgresEventStore:
        try:
            # One direct attempt first: a refused connection fails at once instead of after the pool's retries.
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(connect_timeout)))
        except psycopg.Error as exc:
            raise StoreUnavailable("PostgreSQL event store is unreachable") from _scrub(exc)
        await probe.close()
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=connect_timeout,
            # Autocommit: single reads skip BEGIN/COMMIT; transactions are always explicit (conn.transaction()).
            kwargs={"connect_timeout": max(1, int(connect_timeout)), "autocommit": True},
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            await pool.close()
            # Never echo the URL: it may carry a password.
            raise StoreUnavailable("PostgreSQL event store is unreachable") from _scrub(exc)
        return cls(pool, url)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable("PostgreSQL event store is unavailable") from _scrub(exc)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self._connection() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[PostgresTransaction]:
        # Pooled connections are in autocommit mode: a lone SELECT is one round trip.
        async with self._connection() as conn:
            yield PostgresTransaction(conn)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PostgresTransaction]:
        async with self._connection() as conn, conn.transaction():
            # Each statement of a READ COMMITTED transaction sees the commits made before it; this one's first
            # query fixes the view for all of them.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PostgresTransaction(conn)

    async def rebuild(
        self, reset: Callable[[Transaction], Awaitable[None]], apply: OnAppend, batch_size: int = 5000
    ) -> int:
        async with self._connection() as conn, conn.transaction():
            # The head row lock makes appends wait until the rebuilt read models commit.
            await conn.execute("SELECT position FROM lz_event_head WHERE id = 1 FOR UPDATE")
            return await replay_pages(PostgresTransaction(conn), reset, apply, batch_size, _row_to_event)

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.execute("SELECT 1")

    async def migrate(self, extra: Sequence[Migration] = ()) -> list[str]:
        applied: list[str] = []
        async with self._connection() as conn, conn.transaction():
            # Two `lockzero migrate` at once must not both apply a step.
            await conn.execute("SELECT pg_advisory_xact_lock(7262611)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS lz_schema_migrations ("
                " namespace TEXT NOT NULL, version INT NOT NULL, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (namespace, version))"
            )
            cur = await conn.execute("SELECT namespace, version FROM lz_schema_migrations")
            done = {(ns, v) for ns, v in await cur.fetchall()}
            for m in pending([*STORE_MIGRATIONS, *extra], done):
                for stmt in m.postgresql:
                    await conn.execute(stmt)
                await conn.execute(
                    "INSERT INTO lz_schema_migrations (namespace, version, name) VALUES (%s, %s, %s)",
                    (m.namespace, m.version, m.name),
                )
                applied.append(migration_label(m))
        return applied

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int = ANY_VERSION,
        on_append: OnAppend | None = None,
    ) -> AppendResult:
        check_append(stream, events)
        outcome = await self._committer.submit(PendingAppend(stream, events, expected_version, on_append))
        if outcome.status == "ok":
            assert outcome.result is not None
            return outcome.result
        async with self._connection() as conn:
            # A retry of an append that already committed is not a conflict.
            dup = await self._duplicate(conn, stream, events)
        if dup is not None:
            return dup
        if outcome.status == "duplicate":
            raise IdempotencyError(f"an event id of this append to {stream!r} is already stored elsewhere")
        raise ConcurrencyError(stream, expected_version, outcome.actual_version)

    async def _duplicate(
        self, conn: psycopg.AsyncConnection[Any], stream: str, events: Sequence[NewEvent]
    ) -> AppendResult | None:
        ids = [e.event_id for e in events]
        cur = await conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE event_id = ANY(%s) ORDER BY position", (ids,)
        )
        return retried_append(stream, events, [_row_to_event(r) for r in await cur.fetchall()])

    @staticmethod
    async def _stream_version(conn: psycopg.AsyncConnection[Any], stream: str) -> int:
        cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM lz_events WHERE stream = %s", (stream,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def read_stream(self, stream: str, after_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE stream = %s AND version > %s ORDER BY version"
        params: tuple[Any, ...] = (stream, after_version)
        if limit is not None:
            sql += " LIMIT %s"
            params += (limit,)
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return [_row_to_event(r) for r in await cur.fetchall()]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE position > %s ORDER BY position LIMIT %s",
                (after_position, limit),
            )
            return [_row_to_event(r) for r in await cur.fetchall()]

    async def head_position(self) -> int:
        async with self._connection() as conn:
            # Read the committed head, not MAX(position): the head row is only visible once committed.
            cur = await conn.execute("SELECT position FROM lz_event_head WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def wait_head(self) -> int:
        self._listener.signal()
        if self._listener.head is not None:
            return self._listener.head
        return await self.head_position()

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            # Read the signal before the head: a notify landing in between still wakes us.
            signal = self._listener.signal()
            # While the listener counts, it holds the last commit's head: no query needed.
            known = self._listener.head
            if (known if known is not None else await self.head_position()) > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # One shared LISTEN connection wakes every waiter; no pooled connection is held while waiting.
            wait = remaining if self._listener.listening else min(remaining, _POLL_WITHOUT_LISTENER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), wait)

    def subscribe(self, after_position: int = 0, batch_size: int = 500) -> AsyncIterator[RecordedEvent]:
        return subscribe_by_polling(self, after_position, batch_size)

    async def close(self) -> None:
        await self._committer.close()
        await self._listener.close()
        await self._pool.close()


class _Listener:
    """A dedicated connection that LISTENs for appends and wakes waiters; reconnects if it drops."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listening = False
        #: The committed head as of the last notification (each append's carries it, and they come in commit
        #: order); None while it cannot tell (not listening, or no head read yet): waiters read it themselves.
        self.head: int | None = None

    def signal(self) -> asyncio.Event:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return self._event

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5, application_name=LISTENER_NAME
                )
            except psycopg.OperationalError:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                await conn.execute(f"LISTEN {_NOTIFY_CHANNEL}")
                # Read once the LISTEN has taken effect (autocommit: it has): a commit before the read is in it,
                # every one after the LISTEN is notified. Sent with the LISTEN in one message, the read would be
                # in the LISTEN's transaction, before it takes effect, and a commit in between would be in neither.
                self.head = await _committed_head(conn)
                self.listening = True
                backoff = 0.1
                self._wake()  # anything committed while we were connecting
                async for note in conn.notifies():
                    self._count(note.payload)
                    self._wake()
            except psycopg.OperationalError:
                pass
            finally:
                self.listening = False
                self.head = None
                await conn.close()

    def _count(self, payload: str) -> None:
        # Taken as sent, not as a maximum: anyone who can connect may NOTIFY, and a forged head is replaced by
        # the next commit's, so it costs a waiter at most one early wake or one re-check interval.
        with contextlib.suppress(ValueError):
            self.head = int(payload)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _committed_head(conn: psycopg.AsyncConnection[Any]) -> int | None:
    try:
        cur = await conn.execute("SELECT position FROM lz_event_head WHERE id = 1")
        row = await cur.fetchone()
    except psycopg.OperationalError:
        raise  # the connection: the listener connects again
    except psycopg.Error:
        return None  # not migrated yet (or not readable): waiters read the head until an append's notification
    return int(row[0]) if row else 0


def _scrub(exc: BaseException) -> StoreUnavailable:
    """Keep the error class for operators, drop driver text that can contain the DSN."""
    return StoreUnavailable(type(exc).__name__)
