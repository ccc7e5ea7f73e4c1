"""What both backends do alike: check an append's shape, recognise a retried append, name applied migrations,
and rebuild read models page by page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lockzero.eventstore.interface import (
    AppendResult,
    IdempotencyError,
    Migration,
    NewEvent,
    OnAppend,
    RecordedEvent,
    Transaction,
)

EVENT_COLUMNS = "position, stream, version, event_id, type, data, metadata, recorded_at"


def check_append(stream: str, events: Sequence[NewEvent]) -> None:
    if not events:
        raise ValueError("append needs at least one event")
    if len({e.event_id for e in events}) != len(events):
        raise IdempotencyError(f"an append to {stream!r} repeats an event id")


def retried_append(stream: str, events: Sequence[NewEvent], found: Sequence[RecordedEvent]) -> AppendResult | None:
    """``found``: the stored events carrying the append's event ids. All of them, in ``stream``: the append is a
    retry, answered with what the first one stored. None of them: a new append (None)."""
    if not found:
        return None
    if len(found) != len(events) or any(e.stream != stream for e in found):
        raise IdempotencyError(f"append to {stream!r} repeats only some already-stored event ids")
    return AppendResult(events=tuple(found), stream_version=found[-1].version, duplicate=True)


def migration_label(m: Migration) -> str:
    return f"{m.namespace}:{m.version:04d}_{m.name}"


async def replay_pages(
    tx: Transaction,
    reset: Callable[[Transaction], Awaitable[None]],
    apply: OnAppend,
    batch_size: int,
    to_event: Callable[[tuple[Any, ...]], RecordedEvent],
) -> int:
    """Reset, then apply every event in position order; the caller holds off appends meanwhile."""
    await reset(tx)
    count, after = 0, 0
    while True:
        rows = await tx.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM lz_events WHERE position > ? ORDER BY position LIMIT ?", (after, batch_size)
        )
        if not rows:
            return count
        batch = [to_event(r) for r in rows]
        await apply(tx, batch)
        count += len(batch)
        after = batch[-1].position
