"""Versioned schema steps. Each backend runs the SQL of its dialect; history is kept per namespace."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eventstore.interface import Migration
from eventstore.pg_group_commit import APPEND_BATCH_FUNCTION

STORE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        namespace="eventstore",
        version=1,
        name="events",
        postgresql=(
            "CREATE TABLE lz_events ("
            " position BIGINT PRIMARY KEY,"
            " stream TEXT NOT NULL,"
            " version INT NOT NULL,"
            " event_id UUID NOT NULL UNIQUE,"
            " type TEXT NOT NULL,"
            " data BYTEA NOT NULL,"
            " metadata BYTEA NOT NULL,"
            " recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),"
            " UNIQUE (stream, version))",
            # One row whose lock orders every append: positions are handed out in commit order.
            "CREATE TABLE lz_event_head (id INT PRIMARY KEY CHECK (id = 1), position BIGINT NOT NULL)",
            "INSERT INTO lz_event_head (id, position) VALUES (1, 0)",
        ),
        sqlite=(
            "CREATE TABLE lz_events ("
            " position INTEGER PRIMARY KEY,"
            " stream TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " event_id TEXT NOT NULL UNIQUE,"
            " type TEXT NOT NULL,"
            " data BLOB NOT NULL,"
            " metadata BLOB NOT NULL,"
            " recorded_at TEXT NOT NULL,"
            " UNIQUE (stream, version))",
        ),
    ),
    Migration(
        namespace="eventstore",
        version=2,
        name="group_commit_function",
        postgresql=(
            APPEND_BATCH_FUNCTION,
            # Plans cached while lz_events was tiny would scan it forever after; plan each call afresh.
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_custom_plan",
        ),
        sqlite=(),
    ),
)


def pending(migrations: Iterable[Migration], done: set[tuple[str, int]]) -> list[Migration]:
    """Migrations not yet applied, in (namespace order of first appearance, version) order."""
    order: dict[str, int] = {}
    for m in migrations:
        order.setdefault(m.namespace, len(order))
    todo = [m for m in migrations if (m.namespace, m.version) not in done]
    _check_unique(todo)
    return sorted(todo, key=lambda m: (order[m.namespace], m.version))


def _check_unique(migrations: Sequence[Migration]) -> None:
    seen: set[tuple[str, int]] = set()
    for m in migrations:
        key = (m.namespace, m.version)
        if key in seen:
            raise ValueError(f"duplicate migration {m.namespace}:{m.version}")
        seen.add(key)
