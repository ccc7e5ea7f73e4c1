"""Pick a backend from a database URL (``postgresql://…`` or ``sqlite:///path``)."""

from __future__ import annotations

from lockzero.eventstore.interface import EventStore, StoreUnavailable


class UnsupportedDatabaseURL(ValueError):
    pass


async def open_store(url: str, *, pool_size: int = 10) -> EventStore:
    """Open (and connect) the store; raises UnsupportedDatabaseURL or StoreUnavailable."""
    if url.startswith(("postgresql://", "postgres://")):
        from lockzero.eventstore.postgres import PostgresEventStore

        return await PostgresEventStore.open(url, pool_size=pool_size)
    if url.startswith("sqlite://"):
        from lockzero.eventstore.sqlite import SQLiteEventStore

        path = url.removeprefix("sqlite://")
        # sqlite:///rel/path and sqlite:////abs/path, as SQLAlchemy spells them.
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise UnsupportedDatabaseURL("sqlite URL needs a path, e.g. sqlite:///./.lockzero/lockzero.db")
        return await SQLiteEventStore.open(path)
    raise UnsupportedDatabaseURL("database URL must start with postgresql:// or sqlite:///")


__all__ = ["StoreUnavailable", "UnsupportedDatabaseURL", "open_store"]
