"""SQLite backend for the embedded default.

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so positions assigned inside the write
transaction are gap-free in commit order for free. One connection per store, guarded by a lock;
other processes (the CLI beside a running server) are seen by polling the head position.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from lockzero.eventstore.chain import HEADS_SQL, chain_of, link_rows
from lockzero.eventstore.common import EVENT_COLUMNS, check_append, migration_label, replay_pages, retried_append
from lockzero.eventstore.interface import (
    ANY_VERSION,
    AppendResult,
    ConcurrencyError,
    Dialect,
    Migration,
    NewEvent,
    OnAppend,
    RecordedEvent,
    StoreUnavailable,
    Transaction,
)
from lockzero.eventstore.migrations import STORE_MIGRATIONS, pending
from lockzero.eventstore.subscription import subscribe_by_polling

_CROSS_PROCESS_POLL = 0.2


def _row_to_event(row: Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream=row[1],
        version=row[2],
        event_id=uuid.UUID(row[3]),
        type=row[4],
        data=bytes(row[5]),
        metadata=bytes(row[6]),
        recorded_at=datetime.fromisoformat(row[7]),
    )


def _param(value: Any) -> Any:
    # sqlite3 has no UUID adapter; store the canonical text form.
    return str(value) if isinstance(value, uuid.UUID) else value


def _params(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_param(v) for v in values)


class SQLiteTransaction:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(sql, _params(params))
        return int(cur.rowcount)

    async def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(sql, _params(params))

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [_params(p) for p in params])

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await self._conn.execute(sql, _params(params))
        return [tuple(r) for r in await cur.fetchall()]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        cur = await self._conn.execute(sql, _params(params))
        row = await cur.fetchone()
        return tuple(row) if row is not None else None


class SQLiteEventStore:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        #: Off only for the benchmark's baseline (tests/bench); production appends are always chained.
        self._chain = True
        self._appended = asyncio.Event()

    @classmethod
    async def open(cls, path: str) -> SQLiteEventStore:
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # Create the file owner-only before SQLite does (it would use the umask); -wal/-shm copy its mode.
                os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            except OSError as exc:
                raise StoreUnavailable(f"SQLite event store cannot be created at {path} ({exc.strerror})") from None
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=30000")
            await conn.execute("PRAGMA foreign_keys=ON")
            # LIKE must be case-sensitive as in PostgreSQL: scope globs filter secret ids with it.
            await conn.execute("PRAGMA case_sensitive_like=ON")
        except sqlite3.Error as exc:
            await conn.close()  # else its thread keeps the process alive
            raise StoreUnavailable(f"SQLite event store cannot be opened at {path} (not a Lockzero database?)") from exc
        return cls(conn)

    @asynccontextmanager
    async def _tx(self, immediate: bool = True) -> AsyncIterator[SQLiteTransaction]:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable("SQLite event store is locked or unavailable") from exc
            try:
                yield SQLiteTransaction(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    def transaction(self) -> Any:
        return self._tx()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[SQLiteTransaction]:
        async with self._lock:
            try:
                yield SQLiteTransaction(self._conn)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable("SQLite event store is unavailable") from exc

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SQLiteTransaction]:
        # A deferred BEGIN takes its read snapshot at the first SELECT and keeps it to COMMIT, so another
        # process's appends to the same file (a CLI beside `lockzero serve`) stay out of view too.
        async with self._tx(immediate=False) as tx:
            try:
                yield tx
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable("SQLite event store is unavailable") from exc

    async def rebuild(
        self, reset: Callable[[Transaction], Awaitable[None]], apply: OnAppend, batch_size: int = 5000
    ) -> int:
        async with self._tx() as tx:  # BEGIN IMMEDIATE: no other writer until we commit
            return await replay_pages(tx, reset, apply, batch_size, _row_to_event)

    async def ping(self) -> None:
        try:
            async with self._lock:
                await self._conn.execute("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:
            raise StoreUnavailable("SQLite event store is unavailable") from exc

    async def migrate(self, extra: Sequence[Migration] = ()) -> list[str]:
        applied: list[str] = []
        async with self._tx() as tx:
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS lz_schema_migrations ("
                " namespace TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL, PRIMARY KEY (namespace, version))"
            )
            done = {(ns, v) for ns, v in await tx.fetchall("SELECT namespace, version FROM lz_schema_migrations")}
            for m in pending([*STORE_MIGRATIONS, *extra], done):
                for stmt in m.sqlite:
                    await tx.execute(stmt)
                await tx.execute(
                    "INSERT INTO lz_schema_migrations (namespace, version, name, applied_at) VALUES (?, ?, ?, ?)",
                    (m.namespace, m.version, m.name, datetime.now(UTC).isoformat()),
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
        async with self._tx() as tx:
            dup = await self._duplicate(tx, stream, events)
            if dup is not None:
                return dup
            row = await tx.fetchone("SELECT COALESCE(MAX(version), 0) FROM lz_events WHERE stream = ?", (stream,))
            current = int(row[0]) if row else 0
            if expected_version != ANY_VERSION and current != expected_version:
                raise ConcurrencyError(stream, expected_version, current)
            if self._chain:
                row = await tx.fetchone(HEADS_SQL, (chain_of(stream),))
            else:
                row = await tx.fetchone("SELECT COALESCE(MAX(position), 0) FROM lz_events")
            first = (int(row[0]) if row else 0) + 1
            at = datetime.now(UTC)
            now = at.isoformat()
            rows = [
                (first + i, stream, current + 1 + i, str(e.event_id), e.type, e.data, e.metadata, now)
                for i, e in enumerate(events)
            ]
            if self._chain:
                # Linked inside BEGIN IMMEDIATE: the chain head cannot move under us. The view's trigger
                # inserts each event and moves its chain's head: one statement, one trip to the thread.
                await tx.executemany(
                    f"INSERT INTO lz_chained_events ({EVENT_COLUMNS}, chain_seq, chain_hash, chain)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    link_rows(rows, at, *(row[1:3] if row else (None, None))),
                )
            else:
                await tx.executemany(f"INSERT INTO lz_events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            recorded = tuple(_row_to_event(r) for r in rows)
            if on_append is not None:
                await on_append(tx, recorded)
        self._appended.set()
        self._appended = asyncio.Event()
        return AppendResult(events=recorded, stream_version=current + len(events))

    async def _duplicate(self, tx: SQLiteTransaction, stream: str, events: Sequence[NewEvent]) -> AppendResult | None:
        ids = [str(e.event_id) for e in events]
        marks = ",".join("?" * len(ids))
        rows = await tx.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE event_id IN ({marks}) ORDER BY position", ids
        )
        return retried_append(stream, events, [_row_to_event(r) for r in rows])

    async def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with self._lock:
                cur = await self._conn.execute(sql, _params(params))
                return [tuple(r) for r in await cur.fetchall()]
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable("SQLite event store is unavailable") from exc

    async def read_stream(self, stream: str, after_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        rows = await self._query(
            f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE stream = ? AND version > ? ORDER BY version LIMIT ?",
            (stream, after_version, -1 if limit is None else limit),
        )
        return [_row_to_event(r) for r in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        rows = await self._query(
            f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, limit),
        )
        return [_row_to_event(r) for r in rows]

    async def head_position(self) -> int:
        rows = await self._query("SELECT COALESCE(MAX(position), 0) FROM lz_events", ())
        return int(rows[0][0])

    async def wait_head(self) -> int:
        return await self.head_position()  # a local read: no round trip to save

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if await self.head_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Woken at once by appends in this process; other processes are seen on the next poll.
            signal = self._appended
            with suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), min(_CROSS_PROCESS_POLL, remaining))

    def subscribe(self, after_position: int = 0, batch_size: int = 500) -> AsyncIterator[RecordedEvent]:
        return subscribe_by_polling(self, after_position, batch_size)

    async def close(self) -> None:
        await self._conn.close()
