"""Catch-up-then-live subscription shared by the backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from lockzero.eventstore.interface import RecordedEvent


class _Readable(Protocol):
    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]: ...

    async def wait_for_events(self, after_position: int, timeout: float) -> bool: ...


async def subscribe_by_polling(
    store: _Readable, after_position: int, batch_size: int, idle_wait: float = 5.0
) -> AsyncIterator[RecordedEvent]:
    # Positions are gap-free in commit order, so "everything after my checkpoint" is always complete.
    checkpoint = after_position
    while True:
        batch = await store.read_all(checkpoint, batch_size)
        for event in batch:
            yield event
            checkpoint = event.position
        if len(batch) < batch_size:
            await store.wait_for_events(checkpoint, idle_wait)
