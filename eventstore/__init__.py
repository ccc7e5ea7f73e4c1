"""Append-only event store with two backends (PostgreSQL, SQLite) behind one interface."""

from lockzero.eventstore.factory import open_store
from lockzero.eventstore.interface import (
    ANY_VERSION,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    Dialect,
    EventStore,
    EventStoreError,
    IdempotencyError,
    Migration,
    NewEvent,
    OnAppend,
    RecordedEvent,
    StoreUnavailable,
    Transaction,
)

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "AppendResult",
    "ConcurrencyError",
    "Dialect",
    "EventStore",
    "EventStoreError",
    "IdempotencyError",
    "Migration",
    "NewEvent",
    "OnAppend",
    "RecordedEvent",
    "StoreUnavailable",
    "Transaction",
    "open_store",
]
