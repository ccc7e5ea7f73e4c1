"""The one small interface every event-store backend implements.

Streams hold an aggregate's events with a per-stream version (1, 2, ...). Every event also gets a
global ``position`` that is gap-free *in commit order*: a reader that remembers the last position it
saw and later reads everything after it never skips an event, even with concurrent writers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Literal, Protocol

import msgspec

Dialect = Literal["postgresql", "sqlite"]

#: ``expected_version`` for "append whatever the stream holds" (no concurrency check).
ANY_VERSION = -1
#: ``expected_version`` for "the stream must not exist yet".
NO_STREAM = 0


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append. ``event_id`` makes the append idempotent: retrying it is harmless."""

    type: str
    data: bytes
    metadata: bytes = b"{}"
    event_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)


class RecordedEvent(msgspec.Struct, frozen=True):
    position: int
    stream: str
    version: int
    event_id: uuid.UUID
    type: str
    data: bytes
    metadata: bytes
    recorded_at: datetime


class AppendResult(msgspec.Struct, frozen=True):
    events: tuple[RecordedEvent, ...]
    #: The stream's version after the append.
    stream_version: int
    #: True when every event id was already stored: nothing was written, ``events`` are the stored ones.
    duplicate: bool = False

    @property
    def last_position(self) -> int:
        return self.events[-1].position if self.events else 0


class EventStoreError(Exception):
    """Base class; messages never contain event payloads."""


class ConcurrencyError(EventStoreError):
    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class IdempotencyError(EventStoreError):
    """Some, but not all, of an append's event ids were already stored (or stored on another stream)."""


class StoreUnavailable(EventStoreError):
    """The database cannot be reached; retryable, nothing was written."""


class Transaction(Protocol):
    """A database transaction handed to projections and side tables.

    SQL uses ``?`` placeholders on every backend; the PostgreSQL backend translates them.
    """

    dialect: Dialect

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""
        ...

    async def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement whose outcome the caller does not read. Inside an append's hook on PostgreSQL it
        may travel with the transaction's next round trip; an error it meets is raised by then, at the latest by
        the commit, and still fails only the append whose hook wrote it."""
        ...

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...


#: Called inside the append's transaction after the events are inserted; used for inline projections
#: and for rows that must commit atomically with the events (e.g. encrypted secret versions).
OnAppend = Callable[[Transaction, Sequence[RecordedEvent]], Awaitable[None]]


class Migration(msgspec.Struct, frozen=True):
    """One versioned schema step; ``namespace`` lets the engine keep its tables' history apart."""

    namespace: str
    version: int
    name: str
    postgresql: tuple[str, ...]
    sqlite: tuple[str, ...]


class EventStore(Protocol):
    dialect: Dialect

    async def migrate(self, extra: Sequence[Migration] = ()) -> list[str]:
        """Apply pending migrations (the store's own plus ``extra``); returns the names applied. Idempotent."""
        ...

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int = ANY_VERSION,
        on_append: OnAppend | None = None,
    ) -> AppendResult: ...

    async def read_stream(
        self, stream: str, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]: ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]: ...

    async def head_position(self) -> int: ...

    async def wait_head(self) -> int:
        """The position to pass to wait_for_events after reading what you wait on: a lower bound of the head,
        read without a round trip where the store is told of every commit (a lower one only costs a spare wake).
        On PostgreSQL anyone who can connect may send the notification: a forged head stands until the next
        commit's, so a waiter wakes early or waits out its timeout; callers re-check on either."""
        ...

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Return True as soon as an event after ``after_position`` is committed, False on timeout."""
        ...

    def subscribe(self, after_position: int = 0, batch_size: int = 500) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after_position``, in position order, then new ones as they commit; never ends."""
        ...

    async def rebuild(
        self, reset: Callable[[Transaction], Awaitable[None]], apply: OnAppend, batch_size: int = 5000
    ) -> int:
        """Rebuild read models: ``reset`` then ``apply`` every event in position order, in one transaction
        that holds off concurrent appends. Returns the number of events applied."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A read-write transaction outside of an append (side tables, projection rebuilds)."""
        ...

    def reader(self) -> AbstractAsyncContextManager[Transaction]:
        """A connection for reads, each statement on its own (no BEGIN/COMMIT round trips)."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[Transaction]:
        """A read-only transaction whose statements all see the same committed state of the store, for reads
        that must agree with each other while appends go on (a chain walk against the chain heads)."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the database cannot serve queries."""
        ...

    async def close(self) -> None: ...
