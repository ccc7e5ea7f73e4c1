"""Conformance suite for every EventStore backend.

Each test runs once per backend through the ``store`` / ``store_url`` fixtures of tests/conftest.py
(``store`` is opened and migrated, ``store_url`` points at an empty database). Tests that need real
concurrency open further store instances on the same URL with :func:`opened`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.eventstore import (
    ANY_VERSION,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    EventStore,
    EventStoreError,
    IdempotencyError,
    Migration,
    NewEvent,
    RecordedEvent,
    StoreUnavailable,
    Transaction,
    open_store,
)
from tests.conftest import fresh_pg_database

# A payload canary: error messages must never contain event payloads.
SECRET = b"payload-canary-7f3a"

PAYLOADS: list[bytes] = [
    b"",
    b"\x00\x01\xff\xfe not utf-8 \x80\x00",
    b'{"b": 1,   "a": [2, 1], "a": 3}',  # odd spacing, key order and a duplicate key: not normalised JSON
    "ünïcødé ✓ \u2028".encode(),
    bytes(range(256)),
    b'{"secret": "' + SECRET + b'"}',
]


class Boom(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# helpers


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def batch(n: int, tag: str = "e") -> list[NewEvent]:
    return [NewEvent(type=f"{tag}.Happened", data=f'{{"tag": "{tag}", "i": {i}}}'.encode()) for i in range(n)]


def ident(e: RecordedEvent) -> tuple[Any, ...]:
    """Everything a backend stores for an event, except the clock."""
    return (e.position, e.stream, e.version, e.event_id, e.type, e.data, e.metadata)


def idents(events: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
    return [ident(e) for e in events]


def positions(events: Sequence[RecordedEvent]) -> list[int]:
    return [e.position for e in events]


def versions(events: Sequence[RecordedEvent]) -> list[int]:
    return [e.version for e in events]


async def read_all_paged(store: EventStore, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    while True:
        page = await store.read_all(after_position=after, limit=limit)
        assert len(page) <= limit
        if not page:
            return out
        assert page[0].position > after, "read_all returned an event at or before after_position"
        out.extend(page)
        after = page[-1].position


async def snapshot(store: EventStore) -> tuple[int, list[tuple[Any, ...]]]:
    """Head position plus every stored event: compared before/after an append that must write nothing."""
    return await store.head_position(), idents(await read_all_paged(store))


@asynccontextmanager
async def opened(url: str, *, pool_size: int = 2) -> AsyncIterator[EventStore]:
    """Another, independent store instance on the same database (own connections)."""
    s = await open_store(url, pool_size=pool_size)
    try:
        yield s
    finally:
        await s.close()


async def writers(stack: AsyncExitStack, sharing: str, store: EventStore, url: str, n: int) -> list[EventStore]:
    """``n`` appenders: the one fixture store n times over, or n independent store instances."""
    if sharing == "shared":
        return [store] * n
    return [await stack.enter_async_context(opened(url)) for _ in range(n)]


SHARING = pytest.mark.parametrize("sharing", ["shared", "separate"])


@asynccontextmanager
async def scratch_url(kind: str) -> AsyncIterator[str]:
    """An empty database for one hypothesis example (fixtures are not re-run per example)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="lz-conformance-") as d:
            yield f"sqlite:///{Path(d) / 'lockzero.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


async def next_event(it: AsyncIterator[RecordedEvent], within: float = 5.0) -> RecordedEvent:
    return await asyncio.wait_for(anext(it), within)


async def aclose(it: AsyncIterator[RecordedEvent]) -> None:
    closer = getattr(it, "aclose", None)
    if closer is not None:
        await closer()


HOOK_TABLE = "CREATE TABLE hook_rows (position BIGINT PRIMARY KEY, stream TEXT)"
HOOK_INSERT = "INSERT INTO hook_rows (position, stream) VALUES (?, ?)"


async def create_hook_table(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.execute(HOOK_TABLE)


async def project(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
    """An inline projection: one hook_rows row per event."""
    await tx.executemany(HOOK_INSERT, [(e.position, e.stream) for e in events])


async def clear_projection(tx: Transaction) -> None:
    await tx.execute("DELETE FROM hook_rows")


async def hook_rows(store: EventStore) -> list[tuple[Any, ...]]:
    async with store.transaction() as tx:
        return [tuple(r) for r in await tx.fetchall("SELECT position, stream FROM hook_rows ORDER BY position")]


# --------------------------------------------------------------------------------------------------
# 1. basic append / read


async def test_dialect_ping_and_empty_store(store: EventStore, store_url: str) -> None:
    assert store.dialect == backend_of(store_url)
    await store.ping()
    assert await store.head_position() == 0
    assert await store.read_all() == []
    assert await store.read_stream("nope") == []


async def test_append_assigns_versions_and_gap_free_positions(store: EventStore) -> None:
    r1 = await store.append("order-1", batch(5, "a"))
    assert isinstance(r1, AppendResult)
    assert r1.duplicate is False
    assert versions(r1.events) == [1, 2, 3, 4, 5]
    assert r1.stream_version == 5
    assert all(e.stream == "order-1" for e in r1.events)
    assert positions(r1.events) == sorted(set(positions(r1.events)))
    assert r1.last_position == r1.events[-1].position

    r2 = await store.append("order-2", batch(3, "b"))
    assert versions(r2.events) == [1, 2, 3]
    assert r2.stream_version == 3
    assert min(positions(r2.events)) > r1.last_position

    r3 = await store.append("order-1", batch(1, "c"))
    assert versions(r3.events) == [6]
    assert r3.events[0].position > r2.last_position

    everything = await store.read_all()
    assert positions(everything) == list(range(1, 10))
    assert await store.head_position() == 9 == r3.last_position
    assert idents(everything) == idents(r1.events + r2.events + r3.events)


async def test_payloads_round_trip_exactly(store: EventStore) -> None:
    new = [NewEvent(type=f"Ünïcødé.Type/v{i}", data=p, metadata=PAYLOADS[-1 - i]) for i, p in enumerate(PAYLOADS)]
    res = await store.append("bytes", new)
    for stored in (await store.read_stream("bytes"), await store.read_all(), list(res.events)):
        assert len(stored) == len(new)
        for n, e in zip(new, stored, strict=True):
            assert isinstance(e.data, bytes) and isinstance(e.metadata, bytes)
            assert e.data == n.data
            assert e.metadata == n.metadata
            assert e.type == n.type
            assert isinstance(e.event_id, uuid.UUID)
            assert e.event_id == n.event_id
            assert isinstance(e.recorded_at, datetime)
            assert e.stream == "bytes"


async def test_default_metadata_round_trips(store: EventStore) -> None:
    await store.append("s", [NewEvent(type="T", data=b"x")])
    (e,) = await store.read_stream("s")
    assert e.metadata == b"{}"


async def test_append_result_equals_stored_events(store: EventStore) -> None:
    res = await store.append("s", batch(3))
    assert list(res.events) == await store.read_stream("s")  # including recorded_at
    assert list(res.events) == await store.read_all()


async def test_read_stream_after_version_and_limit(store: EventStore) -> None:
    await store.append("s", batch(10))
    await store.append("other", batch(4))
    assert versions(await store.read_stream("s")) == list(range(1, 11))
    assert versions(await store.read_stream("s", after_version=3)) == list(range(4, 11))
    assert versions(await store.read_stream("s", limit=2)) == [1, 2]
    assert versions(await store.read_stream("s", after_version=3, limit=4)) == [4, 5, 6, 7]
    assert versions(await store.read_stream("s", after_version=8, limit=5)) == [9, 10]
    assert await store.read_stream("s", after_version=10) == []
    assert await store.read_stream("s", after_version=50, limit=3) == []
    assert all(e.stream == "s" for e in await store.read_stream("s"))


async def test_read_all_after_position_and_limit(store: EventStore) -> None:
    for i in range(6):
        await store.append(f"s{i % 2}", batch(1, str(i)))
    assert positions(await store.read_all(after_position=2, limit=3)) == [3, 4, 5]
    assert positions(await store.read_all(after_position=4)) == [5, 6]
    assert positions(await store.read_all(limit=1)) == [1]
    assert await store.read_all(after_position=6) == []
    assert await store.read_all(after_position=100) == []


# --------------------------------------------------------------------------------------------------
# 2. expected version


async def test_no_stream_on_new_stream_appends(store: EventStore) -> None:
    res = await store.append("fresh", batch(2), expected_version=NO_STREAM)
    assert versions(res.events) == [1, 2]
    assert res.stream_version == 2


async def test_no_stream_on_existing_stream_raises(store: EventStore) -> None:
    await store.append("s", batch(3))
    before = await snapshot(store)
    with pytest.raises(ConcurrencyError) as ei:
        await store.append("s", batch(1), expected_version=NO_STREAM)
    assert (ei.value.stream, ei.value.expected, ei.value.actual) == ("s", NO_STREAM, 3)
    assert isinstance(ei.value, EventStoreError)
    assert await snapshot(store) == before


async def test_exact_expected_version_appends(store: EventStore) -> None:
    r1 = await store.append("s", batch(2), expected_version=NO_STREAM)
    r2 = await store.append("s", batch(2), expected_version=r1.stream_version)
    assert versions(r2.events) == [3, 4]
    r3 = await store.append("s", batch(1), expected_version=4)
    assert versions(r3.events) == [5]
    assert versions(await store.read_stream("s")) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("expected", [1, 2, 4, 17])
async def test_wrong_expected_version_writes_nothing(store: EventStore, expected: int) -> None:
    await store.append("s", batch(3))
    await store.append("other", batch(2))
    before = await snapshot(store)
    payload = [NewEvent(type="T", data=SECRET, metadata=SECRET)]
    with pytest.raises(ConcurrencyError) as ei:
        await store.append("s", payload, expected_version=expected)
    assert (ei.value.stream, ei.value.expected, ei.value.actual) == ("s", expected, 3)
    assert SECRET.decode() not in str(ei.value)
    assert await snapshot(store) == before
    assert versions(await store.read_stream("s")) == [1, 2, 3]


async def test_expected_version_on_missing_stream_raises(store: EventStore) -> None:
    await store.append("other", batch(1))
    before = await snapshot(store)
    with pytest.raises(ConcurrencyError) as ei:
        await store.append("missing", batch(1), expected_version=2)
    assert (ei.value.expected, ei.value.actual) == (2, 0)
    assert await snapshot(store) == before
    assert await store.read_stream("missing") == []


async def test_any_version_always_appends(store: EventStore) -> None:
    for n in (1, 3, 2):
        await store.append("s", batch(n), expected_version=ANY_VERSION)
    await store.append("s", batch(1))  # the default is ANY_VERSION too
    assert versions(await store.read_stream("s")) == list(range(1, 8))


async def test_failed_appends_leave_no_position_gap(store: EventStore) -> None:
    await store.append("s", batch(2))
    for _ in range(3):
        with pytest.raises(ConcurrencyError):
            await store.append("s", batch(2), expected_version=7)
    res = await store.append("t", batch(2))
    assert positions(res.events) == [3, 4]
    assert positions(await read_all_paged(store)) == [1, 2, 3, 4]


async def test_batch_repeating_an_event_id_writes_nothing(store: EventStore) -> None:
    await store.append("s", batch(1))
    before = await snapshot(store)
    twice = NewEvent(type="T", data=b"x")
    with pytest.raises(Exception):
        await store.append("s", [twice, twice])
    assert await snapshot(store) == before


# --------------------------------------------------------------------------------------------------
# 3. optimistic concurrency under real races

CONTENDERS = 20
ROUNDS = 3


async def race(stores: Sequence[EventStore], stream: str, rounds: int = ROUNDS) -> None:
    """Every round, each store appends 2 events at the same expected version; exactly one must win."""
    winners: list[AppendResult] = []
    for r in range(rounds):
        expected = 2 * r  # NO_STREAM in round 0
        contenders = [
            [NewEvent(type="Race", data=f"{r}/{i}/{k}".encode()) for k in range(2)] for i in range(len(stores))
        ]
        outcomes = await asyncio.gather(
            *(s.append(stream, evs, expected_version=expected) for s, evs in zip(stores, contenders, strict=True)),
            return_exceptions=True,
        )
        wins = [o for o in outcomes if isinstance(o, AppendResult)]
        losses = [o for o in outcomes if not isinstance(o, AppendResult)]
        assert len(wins) == 1, f"round {r}: {len(wins)} winners, outcomes {outcomes!r}"
        for o in losses:
            assert isinstance(o, ConcurrencyError), f"round {r}: loser got {o!r}, not a ConcurrencyError"
            assert (o.stream, o.expected, o.actual) == (stream, expected, expected + 2)
        assert versions(wins[0].events) == [expected + 1, expected + 2]
        winners.append(wins[0])
    stored = await stores[0].read_stream(stream)
    assert versions(stored) == list(range(1, 2 * rounds + 1))  # no duplicate or missing versions
    assert idents(stored) == [ident(e) for w in winners for e in w.events]
    assert positions(await read_all_paged(stores[0])) == list(range(1, 2 * rounds + 1))


async def test_racing_appenders_on_separate_stores(store: EventStore, store_url: str) -> None:
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(opened(store_url)) for _ in range(CONTENDERS)]
        await race(stores, "contested")


async def test_racing_appenders_sharing_one_store(store: EventStore) -> None:
    await race([store] * CONTENDERS, "contested")


async def test_any_version_never_conflicts_with_versioned_writers(store: EventStore, store_url: str) -> None:
    """ANY_VERSION appends must succeed even while other writers append with an expected version."""
    blind_writers, careful_writers, per_writer, stream = 5, 7, 20, "mixed"
    blind_failures: list[BaseException] = []
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(opened(store_url)) for _ in range(blind_writers + careful_writers)]
        go = asyncio.Event()

        async def blind(s: EventStore) -> int:
            await go.wait()
            written = 0
            for _ in range(per_writer):
                try:
                    await s.append(stream, batch(1, "blind"), expected_version=ANY_VERSION)
                    written += 1
                except EventStoreError as exc:
                    blind_failures.append(exc)
            return written

        async def careful(s: EventStore) -> int:
            await go.wait()
            written = 0
            for _ in range(1000):
                tail = await s.read_stream(stream)
                try:
                    await s.append(stream, batch(1, "careful"), expected_version=len(tail))
                except ConcurrencyError:
                    continue
                written += 1
                if written == per_writer:
                    return written
            raise AssertionError("a versioned writer never got through")

        tasks = [asyncio.create_task(blind(s)) for s in stores[:blind_writers]]
        tasks += [asyncio.create_task(careful(s)) for s in stores[blind_writers:]]
        go.set()
        counts = await asyncio.gather(*tasks)
    assert blind_failures == [], f"{len(blind_failures)} ANY_VERSION appends failed, e.g. {blind_failures[0]!r}"
    n = sum(counts)
    assert versions(await store.read_stream(stream)) == list(range(1, n + 1))
    assert positions(await read_all_paged(store)) == list(range(1, n + 1))


# --------------------------------------------------------------------------------------------------
# 4. a tailing reader never skips an event (gap-free positions in commit order)

STREAM_SLOTS = 4  # slots 0 and 1 are streams shared by all writers, 2 and 3 are private to one writer

writer_plan = st.lists(
    st.tuples(st.integers(0, STREAM_SLOTS - 1), st.integers(1, 5)),  # (stream slot, batch size)
    min_size=1,
    max_size=12,
)


async def run_tailing_scenario(url: str, plans: list[list[tuple[int, int]]], reader_limit: int) -> None:
    async with AsyncExitStack() as stack:
        admin = await stack.enter_async_context(opened(url))
        await admin.migrate()
        writer_stores = [await stack.enter_async_context(opened(url)) for _ in plans]
        reader_store = await stack.enter_async_context(opened(url))
        go, writers_done = asyncio.Event(), asyncio.Event()
        appended: list[AppendResult] = []

        async def write(w: int, store: EventStore, plan: list[tuple[int, int]]) -> None:
            await go.wait()
            for step, (slot, size) in enumerate(plan):
                stream = f"shared-{slot}" if slot < 2 else f"own-{w}-{slot}"
                events = [NewEvent(type="T", data=f"{w}/{step}/{k}".encode()) for k in range(size)]
                appended.append(await store.append(stream, events, expected_version=ANY_VERSION))

        async def tail() -> list[RecordedEvent]:
            seen: list[RecordedEvent] = []
            checkpoint = 0
            await go.wait()
            while True:
                # read the flag before querying: an empty page after it means the log is drained
                finished = writers_done.is_set()
                page = await reader_store.read_all(after_position=checkpoint, limit=reader_limit)
                assert len(page) <= reader_limit
                if page:
                    assert positions(page) == sorted(set(positions(page)))
                    assert page[0].position > checkpoint
                    seen.extend(page)
                    checkpoint = page[-1].position
                elif finished:
                    return seen
                else:
                    await asyncio.sleep(0.001)  # bounded polling

        reader = asyncio.create_task(tail())
        tasks = [asyncio.create_task(write(w, s, p)) for w, (s, p) in enumerate(zip(writer_stores, plans, strict=True))]
        go.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        writers_done.set()
        seen = await asyncio.wait_for(reader, 30)
        for o in outcomes:
            if isinstance(o, BaseException):
                raise o

        written = [e for r in appended for e in r.events]
        n = sum(size for plan in plans for _, size in plan)
        assert len(written) == n
        counts = Counter(e.event_id for e in seen)
        assert set(counts) == {e.event_id for e in written}, "the tailing reader skipped events"
        assert all(c == 1 for c in counts.values()), "the tailing reader saw an event twice"
        assert positions(seen) == list(range(1, n + 1))
        by_id = {e.event_id: ident(e) for e in written}
        assert all(by_id[e.event_id] == ident(e) for e in seen)
        per_stream: dict[str, list[int]] = defaultdict(list)
        for e in seen:
            per_stream[e.stream].append(e.version)
        for stream, vs in per_stream.items():
            assert vs == list(range(1, len(vs) + 1)), f"{stream}: versions out of order {vs}"
        assert idents(await read_all_paged(admin, limit=7)) == idents(seen)
        assert await admin.head_position() == n


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=st.lists(writer_plan, min_size=2, max_size=6), reader_limit=st.integers(1, 5))
async def test_tailing_reader_sees_every_event_once(
    store_url: str, plans: list[list[tuple[int, int]]], reader_limit: int
) -> None:
    async with scratch_url(backend_of(store_url)) as url:
        await run_tailing_scenario(url, plans, reader_limit)


# --------------------------------------------------------------------------------------------------
# 5. idempotency


async def test_retry_returns_the_original_events(store: EventStore) -> None:
    events = batch(3)
    first = await store.append("s", events, expected_version=NO_STREAM)
    before = await snapshot(store)
    for expected in (NO_STREAM, ANY_VERSION, 3, 1):  # NO_STREAM and 1 no longer match
        again = await store.append("s", events, expected_version=expected)
        assert again.duplicate is True
        assert idents(again.events) == idents(first.events)
        assert again.stream_version == 3
        assert await snapshot(store) == before

    await store.append("s", batch(2, "later"))
    before = await snapshot(store)
    again = await store.append("s", events, expected_version=NO_STREAM)
    assert again.duplicate is True
    assert idents(again.events) == idents(first.events)
    assert await snapshot(store) == before


async def test_retry_of_a_subset_is_a_duplicate(store: EventStore) -> None:
    events = batch(3)
    first = await store.append("s", events)
    before = await snapshot(store)
    again = await store.append("s", [events[1]])
    assert again.duplicate is True
    assert idents(again.events) == [ident(first.events[1])]
    assert await snapshot(store) == before


async def test_partially_stored_batch_raises_and_writes_nothing(store: EventStore) -> None:
    events = batch(2)
    await store.append("s", events)
    before = await snapshot(store)
    fresh = NewEvent(type="T", data=SECRET)
    for attempt in ([events[0], fresh], [fresh, events[1]], [events[0], events[1], fresh]):
        with pytest.raises(IdempotencyError) as ei:
            await store.append("s", attempt)
        assert isinstance(ei.value, EventStoreError)
        assert SECRET.decode() not in str(ei.value)
        assert await snapshot(store) == before
    # the fresh event was not half-written: it can still be appended on its own
    res = await store.append("s", [fresh])
    assert res.duplicate is False and versions(res.events) == [3]


async def test_ids_stored_on_another_stream_raise(store: EventStore) -> None:
    events = batch(2)
    await store.append("a", events)
    before = await snapshot(store)
    with pytest.raises(IdempotencyError):
        await store.append("b", events)
    assert await snapshot(store) == before
    assert await store.read_stream("b") == []


@SHARING
async def test_concurrent_retries_write_once(store: EventStore, store_url: str, sharing: str) -> None:
    events = batch(3)
    async with AsyncExitStack() as stack:
        stores = await writers(stack, sharing, store, store_url, 8)
        outcomes = await asyncio.gather(*(s.append("s", events) for s in stores), return_exceptions=True)
    assert all(isinstance(o, AppendResult) for o in outcomes), outcomes
    results = [o for o in outcomes if isinstance(o, AppendResult)]
    assert sum(not r.duplicate for r in results) == 1
    stored = await store.read_stream("s")
    assert versions(stored) == [1, 2, 3]
    assert all(idents(r.events) == idents(stored) for r in results)
    assert await store.head_position() == 3


@SHARING
async def test_concurrent_overlapping_batches(store: EventStore, store_url: str, sharing: str) -> None:
    """Two batches sharing one id race: one is written whole, the other raises and writes nothing."""
    common = NewEvent(type="T", data=b"common")
    left, right = [common, *batch(2, "left")], [common, *batch(2, "right")]
    async with AsyncExitStack() as stack:
        a, b = await writers(stack, sharing, store, store_url, 2)
        outcomes = await asyncio.gather(a.append("s", left), b.append("s", right), return_exceptions=True)
    wins = [o for o in outcomes if isinstance(o, AppendResult)]
    errors = [o for o in outcomes if not isinstance(o, AppendResult)]
    assert len(wins) == 1 and wins[0].duplicate is False, outcomes
    assert len(errors) == 1 and isinstance(errors[0], IdempotencyError), outcomes
    stored = await read_all_paged(store)
    assert idents(stored) == idents(wins[0].events)
    assert positions(stored) == [1, 2, 3]


@SHARING
async def test_a_malformed_append_does_not_fail_concurrent_ones(
    store: EventStore, store_url: str, sharing: str
) -> None:
    """An append that repeats an event id inside its own batch fails alone; the others are written."""
    twice = NewEvent(type="T", data=b"twice")
    async with AsyncExitStack() as stack:
        stores = await writers(stack, sharing, store, store_url, 10)
        outcomes = await asyncio.gather(
            *(s.append(f"t{i}", [twice, twice] if i == 4 else batch(2)) for i, s in enumerate(stores)),
            return_exceptions=True,
        )
    assert isinstance(outcomes[4], Exception)
    good = [o for i, o in enumerate(outcomes) if i != 4]
    assert all(isinstance(o, AppendResult) for o in good), good
    stored = await read_all_paged(store)
    assert positions(stored) == list(range(1, 19))
    assert await store.read_stream("t4") == []


# --------------------------------------------------------------------------------------------------
# 6. large streams


async def test_large_stream(store: EventStore) -> None:
    total, size = 5000, 500
    ids: list[uuid.UUID] = []
    for b in range(total // size):
        events = batch(size, f"b{b}")
        res = await store.append("big", events, expected_version=b * size)
        assert res.stream_version == (b + 1) * size
        ids.extend(e.event_id for e in events)

    stored = await store.read_stream("big")
    assert versions(stored) == list(range(1, total + 1))
    assert [e.event_id for e in stored] == ids
    assert versions(await store.read_stream("big", after_version=4990)) == list(range(4991, 5001))

    pages = 0
    seen: list[RecordedEvent] = []
    after = 0
    while page := await store.read_all(after_position=after, limit=700):
        assert len(page) <= 700
        pages += 1
        seen.extend(page)
        after = page[-1].position
    assert pages == 8
    assert positions(seen) == list(range(1, total + 1))
    assert [e.event_id for e in seen] == ids
    assert len(await store.read_all()) == 1000  # the default limit
    assert await store.head_position() == total


# --------------------------------------------------------------------------------------------------
# 7. restart


async def test_restart_keeps_everything(store_url: str) -> None:
    async with opened(store_url) as s:
        await s.migrate()
        await s.append("a", batch(3), expected_version=NO_STREAM)
        await s.append("b", [NewEvent(type="T", data=p) for p in PAYLOADS])
        await s.append("a", batch(2), expected_version=3)
        before = await read_all_paged(s)
        head = await s.head_position()
    assert head == len(before) == 5 + len(PAYLOADS)

    async with opened(store_url) as s:
        assert await s.head_position() == head
        assert idents(await read_all_paged(s)) == idents(before)
        assert versions(await s.read_stream("a")) == [1, 2, 3, 4, 5]
        assert await s.migrate() == []
        res = await s.append("a", batch(2), expected_version=5)
        assert versions(res.events) == [6, 7]
        assert positions(res.events) == [head + 1, head + 2]
        with pytest.raises(ConcurrencyError):
            await s.append("b", batch(1), expected_version=NO_STREAM)
        later = await s.append("c", batch(1))
        assert (later.events[0].version, later.events[0].position) == (1, head + 3)


# --------------------------------------------------------------------------------------------------
# 8. on_append hook


async def test_on_append_hook_commits_with_the_events(store: EventStore) -> None:
    await create_hook_table(store)
    await store.append("before", batch(1))
    calls: list[list[RecordedEvent]] = []
    dialects: list[str] = []

    async def hook(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        calls.append(list(events))
        dialects.append(tx.dialect)
        await tx.executemany(HOOK_INSERT, [(e.position, e.stream) for e in events])

    res = await store.append("s", batch(3), on_append=hook)
    assert len(calls) == 1
    assert idents(calls[0]) == idents(res.events)
    assert dialects == [store.dialect]
    assert await hook_rows(store) == [(e.position, "s") for e in res.events]
    assert positions(res.events) == [2, 3, 4]


async def test_on_append_hook_sees_its_own_transaction(store: EventStore) -> None:
    await create_hook_table(store)
    counted: list[Any] = []

    async def hook(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        for e in events:
            assert await tx.execute(HOOK_INSERT, (e.position, e.stream)) == 1
        counted.append(await tx.fetchone("SELECT COUNT(*) FROM hook_rows"))

    await store.append("s", batch(2), on_append=hook)
    assert counted == [(2,)]


async def test_failing_on_append_hook_rolls_back_everything(store: EventStore) -> None:
    await create_hook_table(store)
    await store.append("s", batch(2))
    before = await snapshot(store)
    boom = Boom("hook failed")

    async def failing(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        await project(tx, events)
        raise boom

    for stream in ("s", "new-stream"):
        with pytest.raises(Boom) as ei:
            await store.append(stream, batch(2), on_append=failing)
        assert ei.value is boom
        assert await snapshot(store) == before
        assert await hook_rows(store) == []
    assert await store.read_stream("new-stream") == []

    # the store is still usable and no position was burnt
    res = await store.append("s", batch(1), expected_version=2, on_append=project)
    assert versions(res.events) == [3]
    assert positions(res.events) == [3]
    assert await hook_rows(store) == [(3, "s")]


async def test_hook_database_error_propagates_and_is_not_a_conflict(store: EventStore) -> None:
    """A constraint violated by the hook is the hook's error, not a version conflict to retry."""
    await create_hook_table(store)
    async with store.transaction() as tx:
        await tx.execute(HOOK_INSERT, (1, "squatter"))  # the hook will collide with this row
    before = await snapshot(store)

    async def colliding(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        await tx.executemany(HOOK_INSERT, [(e.position, e.stream) for e in events])

    for expected in (ANY_VERSION, NO_STREAM):
        with pytest.raises(Exception) as ei:
            await store.append("s", batch(2), expected_version=expected, on_append=colliding)
        assert not isinstance(ei.value, (ConcurrencyError, IdempotencyError)), repr(ei.value)
        assert await snapshot(store) == before
        assert await hook_rows(store) == [(1, "squatter")]


@SHARING
async def test_failing_hook_in_a_crowd_fails_only_its_own_append(
    store: EventStore, store_url: str, sharing: str
) -> None:
    await create_hook_table(store)
    boom = Boom("one bad hook")

    async def failing(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        await project(tx, events)
        raise boom

    async with AsyncExitStack() as stack:
        stores = await writers(stack, sharing, store, store_url, 10)
        outcomes = await asyncio.gather(
            *(s.append(f"t{i}", batch(2), on_append=failing if i == 3 else project) for i, s in enumerate(stores)),
            return_exceptions=True,
        )
    assert outcomes[3] is boom
    ok = [o for i, o in enumerate(outcomes) if i != 3]
    assert all(isinstance(o, AppendResult) for o in ok), outcomes
    written = [e for o in ok if isinstance(o, AppendResult) for e in o.events]
    stored = await read_all_paged(store)
    assert positions(stored) == list(range(1, 19))
    assert sorted(idents(stored)) == sorted(idents(written))
    assert await store.read_stream("t3") == []
    assert await hook_rows(store) == [(e.position, e.stream) for e in stored]


async def test_hook_writes_are_seen_by_its_reads_and_committed(store: EventStore) -> None:
    """Transaction.write's result is not read, but the write happens in order with the hook's other statements."""
    await create_hook_table(store)
    counted: list[Any] = []

    async def hook(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        for e in events:
            await tx.write(HOOK_INSERT, (e.position, e.stream))
        counted.append(await tx.fetchone("SELECT COUNT(*) FROM hook_rows"))
        await tx.write("UPDATE hook_rows SET stream = ? WHERE position = ?", ("changed", events[0].position))

    res = await store.append("s", batch(3), on_append=hook)
    assert counted == [(3,)]
    assert await hook_rows(store) == [(e.position, "changed" if i == 0 else "s") for i, e in enumerate(res.events)]


SQUATTED = 1_000_000


@pytest.mark.parametrize("bad", [0, 4, 9])
async def test_a_hooks_failed_write_in_a_crowd_fails_only_its_own_append(store: EventStore, bad: int) -> None:
    """A write whose result nobody waits for (on PostgreSQL it travels with the next round trip, maybe the
    commit) still fails only the append whose hook wrote it, with the database's own error, wherever that hook
    runs in the batch: first, in the middle, last."""
    await create_hook_table(store)
    async with store.transaction() as tx:
        await tx.execute(HOOK_INSERT, (SQUATTED, "squatter"))

    async def writes(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        for e in events:
            await tx.write(HOOK_INSERT, (e.position, e.stream))

    async def colliding(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        await writes(tx, events)
        await tx.write(HOOK_INSERT, (SQUATTED, "collides"))

    outcomes = await asyncio.gather(
        *(store.append(f"t{i}", batch(2), on_append=colliding if i == bad else writes) for i in range(10)),
        return_exceptions=True,
    )
    failed = outcomes[bad]
    assert isinstance(failed, Exception) and "unique" in type(failed).__name__.lower() + str(failed).lower(), failed
    assert not isinstance(failed, (ConcurrencyError, IdempotencyError))
    ok = [o for i, o in enumerate(outcomes) if i != bad]
    assert all(isinstance(o, AppendResult) for o in ok), outcomes
    stored = await read_all_paged(store)
    assert positions(stored) == list(range(1, 19))
    assert await store.read_stream(f"t{bad}") == []
    assert await hook_rows(store) == [*((e.position, e.stream) for e in stored), (SQUATTED, "squatter")]


# --------------------------------------------------------------------------------------------------
# 9. waiting and subscribing


async def test_wait_for_events_times_out(store: EventStore) -> None:
    t0 = time.monotonic()
    assert await store.wait_for_events(0, timeout=0.3) is False
    assert 0.25 <= time.monotonic() - t0 < 3
    await store.append("s", batch(2))
    t0 = time.monotonic()
    assert await store.wait_for_events(2, timeout=0.3) is False
    assert 0.25 <= time.monotonic() - t0 < 3


async def test_wait_for_events_returns_at_once_when_already_committed(store: EventStore) -> None:
    await store.append("s", batch(2))
    t0 = time.monotonic()
    assert await store.wait_for_events(1, timeout=10) is True
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("writer", ["same-store", "other-store"])
async def test_wait_for_events_wakes_on_append(store: EventStore, store_url: str, writer: str) -> None:
    await store.append("s", batch(1))
    async with opened(store_url) as other:
        appender = store if writer == "same-store" else other
        waiter = asyncio.create_task(store.wait_for_events(1, timeout=10))
        await asyncio.sleep(0.2)  # let it block; correctness does not depend on this
        assert not waiter.done()
        t0 = time.monotonic()
        await appender.append("s", batch(1))
        assert await asyncio.wait_for(waiter, 8) is True
        assert time.monotonic() - t0 < 3


async def test_waiters_do_not_starve_appends(store: EventStore, store_url: str) -> None:
    """More waiters than pooled connections must not block an append (subscriptions never end)."""
    await store.append("s", batch(1))
    async with opened(store_url, pool_size=2) as s:
        waiters = [asyncio.create_task(s.wait_for_events(1, timeout=8)) for _ in range(4)]
        try:
            await asyncio.sleep(0.3)  # let them block; correctness does not depend on this
            res = await asyncio.wait_for(s.append("s", batch(1)), 4)
            assert positions(res.events) == [2]
            assert await asyncio.wait_for(asyncio.gather(*waiters), 4) == [True] * 4
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


async def test_subscribe_yields_existing_then_new_events(store: EventStore, store_url: str) -> None:
    await store.append("a", batch(2))
    await store.append("b", batch(1))
    it = store.subscribe(after_position=0, batch_size=2)
    try:
        got = [await next_event(it) for _ in range(3)]
        assert idents(got) == idents(await store.read_all())
        async with opened(store_url) as other:
            r1 = await other.append("a", batch(2, "new"))
            r2 = await store.append("c", batch(1, "newer"))
            got += [await next_event(it) for _ in range(3)]
            assert idents(got[3:]) == idents(r1.events + r2.events)
            assert positions(got) == [1, 2, 3, 4, 5, 6]
            # nothing was yielded twice or skipped: the next event is the next append
            r3 = await other.append("b", batch(1, "last"))
            assert ident(await next_event(it)) == ident(r3.events[0])
    finally:
        await aclose(it)


async def test_subscribe_from_a_position(store: EventStore) -> None:
    await store.append("s", batch(5))
    it = store.subscribe(after_position=3)
    try:
        assert [(await next_event(it)).position for _ in range(2)] == [4, 5]
        res = await store.append("s", batch(1))
        assert ident(await next_event(it)) == ident(res.events[0])
    finally:
        await aclose(it)


# --------------------------------------------------------------------------------------------------
# 10. migrations and side tables

WIDGETS_V1 = Migration(
    namespace="test",
    version=1,
    name="create_widgets",
    postgresql=("CREATE TABLE test_widgets (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",),
    sqlite=("CREATE TABLE test_widgets (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",),
)
WIDGETS_V2 = Migration(
    namespace="test",
    version=2,
    name="widgets_dialect",
    postgresql=(
        "CREATE TABLE test_dialect (d TEXT NOT NULL)",
        "INSERT INTO test_dialect (d) VALUES ('postgresql')",
    ),
    sqlite=(
        "CREATE TABLE test_dialect (d TEXT NOT NULL)",
        "INSERT INTO test_dialect (d) VALUES ('sqlite')",
    ),
)


async def test_migrate_is_idempotent(store_url: str) -> None:
    async with opened(store_url) as s:
        first = await s.migrate()
        assert first and all(isinstance(name, str) for name in first)
        assert await s.migrate() == []
        res = await s.append("s", batch(2))
        assert versions(res.events) == [1, 2]
        assert await s.migrate() == []
        assert versions(await s.read_stream("s")) == [1, 2]


async def test_extra_migrations_apply_once(store: EventStore, store_url: str) -> None:
    applied = await store.migrate([WIDGETS_V1])
    assert len(applied) == 1 and "create_widgets" in applied[0]
    assert await store.migrate([WIDGETS_V1]) == []
    async with store.transaction() as tx:
        assert await tx.execute("INSERT INTO test_widgets (id, name) VALUES (?, ?)", (1, "one")) == 1

    applied = await store.migrate([WIDGETS_V1, WIDGETS_V2])
    assert len(applied) == 1 and "widgets_dialect" in applied[0]
    assert await store.migrate([WIDGETS_V1, WIDGETS_V2]) == []
    async with store.transaction() as tx:
        assert await tx.fetchall("SELECT d FROM test_dialect") == [(store.dialect,)]
        assert await tx.fetchall("SELECT id, name FROM test_widgets") == [(1, "one")]

    async with opened(store_url) as other:
        assert await other.migrate([WIDGETS_V1, WIDGETS_V2]) == []
    await store.append("s", batch(1))
    assert len(await store.read_all()) == 1


async def test_transaction_commits_and_rolls_back(store: EventStore) -> None:
    async with store.transaction() as tx:
        assert tx.dialect == store.dialect
        await tx.execute("CREATE TABLE side (k TEXT PRIMARY KEY, v BIGINT)")
        assert await tx.execute("INSERT INTO side (k, v) VALUES (?, ?)", ("a", 1)) == 1
        await tx.executemany("INSERT INTO side (k, v) VALUES (?, ?)", [("b", 2), ("c", 3)])
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO side (k, v) VALUES (?, ?)", ("d", 4))
            raise Boom
    async with store.transaction() as tx:
        assert await tx.fetchall("SELECT k, v FROM side ORDER BY k") == [("a", 1), ("b", 2), ("c", 3)]
        assert await tx.fetchone("SELECT v FROM side WHERE k = ?", ("b",)) == (2,)
        assert await tx.fetchone("SELECT v FROM side WHERE k = ?", ("zz",)) is None
        assert await tx.execute("UPDATE side SET v = v + 10 WHERE v >= ?", (2,)) == 2


async def test_transaction_sql_with_percent_signs(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE side (k TEXT PRIMARY KEY)")
        await tx.executemany("INSERT INTO side (k) VALUES (?)", [("100%",), ("a%b",), ("abc",)])
        assert await tx.fetchall("SELECT k FROM side WHERE k LIKE 'a%' ORDER BY k") == [("a%b",), ("abc",)]
        assert await tx.fetchall("SELECT k FROM side WHERE k LIKE ? ORDER BY k", ("a%",)) == [
            ("a%b",),
            ("abc",),
        ]
        assert await tx.fetchone("SELECT k FROM side WHERE k = '100%'") == ("100%",)


async def test_rebuild_replays_every_event_in_order(store: EventStore) -> None:
    await create_hook_table(store)
    for i in range(4):
        await store.append(f"s{i % 2}", batch(3))
    async with store.transaction() as tx:
        await tx.execute(HOOK_INSERT, (999, "stale"))  # reset must clear this
    batches: list[list[RecordedEvent]] = []

    async def apply(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        batches.append(list(events))
        await project(tx, events)

    assert await store.rebuild(clear_projection, apply, batch_size=5) == 12
    assert [len(b) for b in batches] == [5, 5, 2]
    replayed = [e for b in batches for e in b]
    assert idents(replayed) == idents(await read_all_paged(store))
    assert await hook_rows(store) == [(e.position, e.stream) for e in replayed]


async def test_rebuild_of_empty_store_still_resets(store: EventStore) -> None:
    await create_hook_table(store)
    async with store.transaction() as tx:
        await tx.execute(HOOK_INSERT, (5, "stale"))
    assert await store.rebuild(clear_projection, project) == 0
    assert await hook_rows(store) == []


async def test_failed_rebuild_rolls_back(store: EventStore) -> None:
    await create_hook_table(store)
    await store.append("s", batch(3), on_append=project)
    rows = await hook_rows(store)

    async def failing(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        await project(tx, events)
        raise Boom

    with pytest.raises(Boom):
        await store.rebuild(clear_projection, failing, batch_size=2)
    assert await hook_rows(store) == rows == [(1, "s"), (2, "s"), (3, "s")]
    res = await store.append("s", batch(1), expected_version=3, on_append=project)
    assert positions(res.events) == [4]


async def test_rebuild_holds_off_concurrent_appends(store: EventStore, store_url: str) -> None:
    await create_hook_table(store)
    for _ in range(3):
        await store.append("s", batch(2), on_append=project)
    gate, in_apply = asyncio.Event(), asyncio.Event()

    async def slow_apply(tx: Transaction, events: Sequence[RecordedEvent]) -> None:
        in_apply.set()
        await gate.wait()
        await project(tx, events)

    async with opened(store_url) as other:
        rebuilding = asyncio.create_task(store.rebuild(clear_projection, slow_apply, batch_size=2))
        appending: asyncio.Task[AppendResult] | None = None
        try:
            await asyncio.wait_for(in_apply.wait(), 5)
            appending = asyncio.create_task(other.append("s", batch(1), on_append=project))
            done, _ = await asyncio.wait({appending}, timeout=0.5)  # bounded: must still be blocked
            assert not done, "an append committed in the middle of a rebuild"
        finally:
            gate.set()
        assert await asyncio.wait_for(rebuilding, 10) == 6
        res = await asyncio.wait_for(appending, 10)
    assert positions(res.events) == [7]
    assert await hook_rows(store) == [(p, "s") for p in range(1, 8)]


# --------------------------------------------------------------------------------------------------
# 11. errors


@pytest.mark.parametrize("url", ["mysql://u:p@localhost/db", "http://example.com/x", "sqlite://", ""])
async def test_unsupported_url_raises_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        await open_store(url)


async def test_unreachable_postgres_raises_store_unavailable() -> None:
    url = "postgresql://u:canarypw123@127.0.0.1:1/x"
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as ei:
        await asyncio.wait_for(open_store(url), 30)
    assert time.monotonic() - t0 < 10
    assert isinstance(ei.value, EventStoreError)
    chain: list[BaseException] = []
    exc: BaseException | None = ei.value
    while exc is not None and len(chain) < 10:  # also what logging/tracebacks may print
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        assert "canarypw123" not in f"{e} {e!r} {e.args!r}"
