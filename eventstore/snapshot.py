"""One consistent read of the whole store, for backups: every table as it stood at a single instant.

PostgreSQL: a REPEATABLE READ, READ ONLY transaction on a connection of its own (the snapshot is taken at the
first query and holds no lock, so appends go on). SQLite: one read transaction on a connection of its own (WAL
keeps serving it the state at its start while the writer commits). Rows are streamed with a cursor, never
loaded whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import psycopg

from lockzero.eventstore.interface import Dialect, StoreUnavailable


class Snapshot(Protocol):
    dialect: Dialect

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def stream(self, sql: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows of ``sql`` in batches of at most ``batch``, read through a cursor."""
        ...


class _PgSnapshot:
    dialect: Dialect = "postgresql"

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await self._conn.execute(sql.replace("?", "%s"), params)
        return await cur.fetchall()

    async def stream(self, sql: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        # A named (server-side) cursor: PostgreSQL hands the rows over a batch at a time.
        async with self._conn.cursor(name="lz_snapshot") as cur:
            await cur.execute(sql)
            while rows := await cur.fetchmany(batch):
                yield rows


class _SQLiteSnapshot:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await self._conn.execute(sql, params)
        return [tuple(r) for r in await cur.fetchall()]

    async def stream(self, sql: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        async with self._conn.execute(sql) as cur:
            while rows := await cur.fetchmany(batch):
                yield [tuple(r) for r in rows]


def sqlite_path(url: str) -> str:
    path = url.removeprefix("sqlite://")
    return path[1:] if path.startswith("/") else path


@asynccontextmanager
async def open_snapshot(url: str) -> AsyncIterator[Snapshot]:
    """A read-only snapshot of the store at ``url``; raises StoreUnavailable when it cannot be opened."""
    if url.startswith("sqlite:"):
        async with _sqlite_snapshot(sqlite_path(url)) as snap:
            yield snap
        return
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    except psycopg.Error:
        raise StoreUnavailable("PostgreSQL event store is unreachable") from None
    try:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            yield _PgSnapshot(conn)
    except psycopg.OperationalError:
        raise StoreUnavailable("PostgreSQL event store is unavailable") from None
    finally:
        await conn.close()


def _must_exist(path: str) -> None:
    # aiosqlite would create an empty file; a backup of nothing must fail instead.
    if not Path(path).is_file():
        raise StoreUnavailable(f"SQLite event store {path} does not exist")


@asynccontextmanager
async def _sqlite_snapshot(path: str) -> AsyncIterator[Snapshot]:
    _must_exist(path)
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    try:
        await conn.execute("PRAGMA busy_timeout=30000")
        await conn.execute("BEGIN")
        # A deferred transaction's snapshot starts at its first read: take it now, before any table is read.
        await conn.execute("SELECT count(*) FROM sqlite_master")
        yield _SQLiteSnapshot(conn)
        await conn.execute("COMMIT")
    except aiosqlite.OperationalError:
        raise StoreUnavailable("SQLite event store is locked or unavailable") from None
    finally:
        await conn.close()
