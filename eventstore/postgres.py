"""PostgreSQL backend (psycopg 3, async pool).

Gap-free global positions: every append takes one row lock on ``lz_event_head`` right before it
inserts, and holds it until commit. Positions are therefore handed out in commit order, so a reader
that checkpoints a position can never later see a smaller one commit. The lock is taken after the
stream-version check, so a conflicting append fails without queueing behind the others.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventstore.interface import (
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
from eventstore.migrations import STORE_MIGRATIONS, pending
from eventstore.subscription import subscribe_by_polling

_NOTIFY_CHANNEL = "lz_events"
_PLACEHOLDER = re.compile(r"\?")
_EVENT_COLUMNS = "position, stream, version, event_id, type, data, metadata, recorded_at"


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

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(_to_pg(sql), params)
        return cur.rowcount

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

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, connect_timeout: float = 5.0) -> PostgresEventStore:
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=connect_timeout,
            kwargs={"connect_timeout": max(1, int(connect_timeout))},
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            await pool.close()
            # Never echo the URL: it may carry a password.
            raise StoreUnavailable("PostgreSQL event store is unreachable") from _scrub(exc)
        return cls(pool)

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

    async def rebuild(
        self, reset: Callable[[Transaction], Awaitable[None]], apply: OnAppend, batch_size: int = 5000
    ) -> int:
        count = 0
        async with self._connection() as conn, conn.transaction():
            # The head row lock makes appends wait until the rebuilt read models commit.
            await conn.execute("SELECT position FROM lz_event_head WHERE id = 1 FOR UPDATE")
            tx = PostgresTransaction(conn)
            await reset(tx)
            after = 0
            while True:
                cur = await conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM lz_events WHERE position > %s ORDER BY position LIMIT %s",
                    (after, batch_size),
                )
                batch = [_row_to_event(r) for r in await cur.fetchall()]
                if not batch:
                    return count
                await apply(tx, batch)
                count += len(batch)
                after = batch[-1].position

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
                applied.append(f"{m.namespace}:{m.version:04d}_{m.name}")
        return applied

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int = ANY_VERSION,
        on_append: OnAppend | None = None,
    ) -> AppendResult:
        if not events:
            raise ValueError("append needs at least one event")
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    return await self._append_in(conn, stream, events, expected_version, on_append)
            except pg_errors.UniqueViolation as exc:
                # Lost a race for the same (stream, version) or event id after our checks.
                dup = await self._duplicate(conn, stream, events)
                if dup is not None:
                    return dup
                actual = await self._stream_version(conn, stream)
                raise ConcurrencyError(stream, expected_version, actual) from _scrub(exc)

    async def _append_in(
        self,
        conn: psycopg.AsyncConnection[Any],
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int,
        on_append: OnAppend | None,
    ) -> AppendResult:
        dup = await self._duplicate(conn, stream, events)
        if dup is not None:
            return dup
        current = await self._stream_version(conn, stream)
        if expected_version != ANY_VERSION and current != expected_version:
            raise ConcurrencyError(stream, expected_version, current)
        if expected_version == ANY_VERSION:
            # Serialise appenders of this stream so that ANY_VERSION never loses a version race.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (stream,))
            current = await self._stream_version(conn, stream)
        cur = await conn.execute(
            "UPDATE lz_event_head SET position = position + %s WHERE id = 1 RETURNING position",
            (len(events),),
        )
        row = await cur.fetchone()
        assert row is not None
        first = row[0] - len(events) + 1
        rows = [
            (first + i, stream, current + 1 + i, e.event_id, e.type, e.data, e.metadata) for i, e in enumerate(events)
        ]
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        cur = await conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM lz_events WHERE position BETWEEN %s AND %s ORDER BY position",
            (first, first + len(events) - 1),
        )
        recorded = tuple(_row_to_event(r) for r in await cur.fetchall())
        if on_append is not None:
            await on_append(PostgresTransaction(conn), recorded)
        await conn.execute("SELECT pg_notify(%s, %s)", (_NOTIFY_CHANNEL, str(recorded[-1].position)))
        return AppendResult(events=recorded, stream_version=current + len(events))

    async def _duplicate(
        self, conn: psycopg.AsyncConnection[Any], stream: str, events: Sequence[NewEvent]
    ) -> AppendResult | None:
        ids = [e.event_id for e in events]
        cur = await conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM lz_events WHERE event_id = ANY(%s) ORDER BY position", (ids,)
        )
        found = [_row_to_event(r) for r in await cur.fetchall()]
        if not found:
            return None
        if len(found) != len(ids) or any(e.stream != stream for e in found):
            raise IdempotencyError(f"append to {stream!r} repeats only some already-stored event ids")
        return AppendResult(events=tuple(found), stream_version=found[-1].version, duplicate=True)

    @staticmethod
    async def _stream_version(conn: psycopg.AsyncConnection[Any], stream: str) -> int:
        cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM lz_events WHERE stream = %s", (stream,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def read_stream(self, stream: str, after_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM lz_events WHERE stream = %s AND version > %s ORDER BY version"
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
                f"SELECT {_EVENT_COLUMNS} FROM lz_events WHERE position > %s ORDER BY position LIMIT %s",
                (after_position, limit),
            )
            return [_row_to_event(r) for r in await cur.fetchall()]

    async def head_position(self) -> int:
        async with self._connection() as conn:
            # Read the committed head, not MAX(position): the head row is only visible once committed.
            cur = await conn.execute("SELECT position FROM lz_event_head WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        if await self.head_position() > after_position:
            return True
        async with self._connection() as conn:
            await conn.set_autocommit(True)
            try:
                await conn.execute(f"LISTEN {_NOTIFY_CHANNEL}")
                # Re-check after LISTEN: an append may have committed in between.
                cur = await conn.execute("SELECT position FROM lz_event_head WHERE id = 1")
                row = await cur.fetchone()
                if row and row[0] > after_position:
                    return True
                async for note in conn.notifies(timeout=timeout):
                    if int(note.payload) > after_position:
                        return True
                return False
            finally:
                await conn.execute(f"UNLISTEN {_NOTIFY_CHANNEL}")

    def subscribe(self, after_position: int = 0, batch_size: int = 500) -> AsyncIterator[RecordedEvent]:
        return subscribe_by_polling(self, after_position, batch_size)

    async def close(self) -> None:
        await self._pool.close()


def _scrub(exc: BaseException) -> StoreUnavailable:
    """Keep the error class for operators, drop driver text that can contain the DSN."""
    return StoreUnavailable(type(exc).__name__)
