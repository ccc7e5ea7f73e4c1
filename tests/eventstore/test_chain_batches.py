"""The hash chain through group-committed batches that mix everything an append can be: several appends to one
stream and to one tenant's chain, a new tenant beside existing ones, a version conflict and a retried (duplicate)
append. On PostgreSQL concurrent appends share one call of lz_append_batch, which carries each chain through the
batch itself; whatever the mix, the chain verifies and holds exactly the events that were stored."""

from __future__ import annotations

import asyncio
from typing import Any

from lockzero.eventstore import ConcurrencyError, EventStore, NewEvent
from lockzero.eventstore.chain import verify_chain


def _events(n: int, tag: str) -> list[NewEvent]:
    return [NewEvent(type="Noted", data=f'{{"tag": "{tag}", "i": {i}}}'.encode()) for i in range(n)]


async def _round(store: EventStore, r: int, retried: list[NewEvent]) -> tuple[int, list[NewEvent]]:
    """One burst of concurrent appends; returns how many events it stored and the events a later round retries."""
    first = _events(2, f"a{r}")
    calls: list[Any] = [
        store.append("audit-t1", first),
        store.append("audit-t1", _events(1, f"b{r}")),
        store.append(f"secret-t1/s{r}", _events(3, f"c{r}"), expected_version=0),
        store.append(f"secret-t{r + 10}/new", _events(1, f"d{r}"), expected_version=0),
        store.append("secret-t2/held", _events(1, f"e{r}"), expected_version=99),  # a conflict
    ]
    if retried:
        calls.append(store.append("audit-t1", retried))  # a retry of an append already stored: a duplicate
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[4], ConcurrencyError), outcomes[4]
    assert not [o for i, o in enumerate(outcomes) if i != 4 and isinstance(o, BaseException)], outcomes
    return 2 + 1 + 3 + 1, first


async def test_mixed_batches_chain_every_stored_event(store: EventStore) -> None:
    await store.append("secret-t2/held", _events(1, "seed"))
    stored, retried = 1, []
    for r in range(6):
        added, retried = await _round(store, r, retried)
        stored += added
    async with store.reader() as tx:
        report = await verify_chain(tx)
    assert report.ok, report.failures
    assert report.records == stored == await store.head_position()
    # Each tenant's chain is gap-free 1..n: the conflicts and the duplicates took no link.
    assert {c: s.seq for c, s in report.chains.items()} == {c: s.records for c, s in report.chains.items()}
