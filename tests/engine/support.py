"""Helpers shared by the engine tests: a clock the test moves, an actor, table snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev

OPERATOR = ev.EventMeta(actor_id="test:operator", actor_type="operator")
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    """engine.clock is anything with now(); this one only moves when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


async def table_rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, ordered by all of its columns (SELECT * ORDER BY 1, 2, …)."""
    async with engine.store.transaction() as tx:
        first = await tx.fetchone(f"SELECT * FROM {table} LIMIT 1")
        if first is None:
            return []
        order = ", ".join(str(i + 1) for i in range(len(first)))
        rows = await tx.fetchall(f"SELECT * FROM {table} ORDER BY {order}")
    return [tuple(_plain(c) for c in r) for r in rows]


async def snapshot(engine: Engine, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    return {t: await table_rows(engine, t) for t in tables}


async def all_events(engine: Engine) -> list[Any]:
    out: list[Any] = []
    after = 0
    while batch := await engine.store.read_all(after, 500):
        out.extend(batch)
        after = batch[-1].position
    return out
