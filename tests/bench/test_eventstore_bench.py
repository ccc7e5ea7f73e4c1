"""Event-store benchmark: Lockzero appends against a plain-INSERT baseline, and replay throughput.

Run with ``make bench``. Everything runs in ONE fresh PostgreSQL database, so the baseline and the
store share server, disk and client. The test prints a table and asserts only sanity (every
appended event is read back exactly once), never a speed threshold.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from psycopg_pool import AsyncConnectionPool

from lockzero.eventstore import EventStore, NewEvent, open_store
from lockzero.eventstore.migrations import STORE_MIGRATIONS
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.bench

POOL_SIZE = 10
APPENDS_PER_CONFIG = 2_000  # timed appends per (backend, writers) configuration and round
WARMUP_PER_WRITER = 25  # untimed appends per writer before each timed run
ROUNDS = 3  # configurations run interleaved this many times; the table shows the median
WRITER_COUNTS = (1, 8)
PAYLOAD_BYTES = 200

REPLAY_EVENTS = 100_000
REPLAY_STREAMS = 1_000  # one append per stream: REPLAY_EVENTS // REPLAY_STREAMS events per append
REPLAY_LOAD_WRITERS = 8
REPLAY_PAGE = 5_000

APPEND_GOAL_RATIO = 0.60  # Lockzero appends/s >= 60% of plain INSERT at 8 writers (issue 17; issue 2 asked 50%)
REPLAY_GOAL = 100_000  # events/s

EVENT_TYPES = ("SecretLeaked", "RotationStarted", "CredentialIssued", "RotationCompleted")

# lz_events as its first migration creates it: the same columns, types and unique indexes (so index maintenance
# costs the same); position comes from a BIGSERIAL instead of the head-row lock, and nothing is checked first.
_EVENTS_DDL = next(m for m in STORE_MIGRATIONS if (m.namespace, m.name) == ("eventstore", "events")).postgresql[0]
PLAIN_DDL = _EVENTS_DDL.replace("CREATE TABLE lz_events (", "CREATE TABLE bench_plain (").replace(
    " position BIGINT PRIMARY KEY,", " position BIGSERIAL PRIMARY KEY,"
)
assert PLAIN_DDL.startswith("CREATE TABLE bench_plain ( position BIGSERIAL PRIMARY KEY,"), PLAIN_DDL
PLAIN_INSERT = (
    "INSERT INTO bench_plain (stream, version, event_id, type, data, metadata) VALUES (%s, %s, %s, %s, %s, %s)"
)


class Payload(msgspec.Struct):
    secret_id: str
    provider: str
    seq: int
    note: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Payload)
_PAD = "x" * (PAYLOAD_BYTES - len(_encoder.encode(Payload("sec_000000000000", "aws-iam", 0, ""))))


def payload(seq: int) -> bytes:
    """A ~200-byte JSON document."""
    return _encoder.encode(Payload(f"sec_{seq:012d}", "aws-iam", seq, _PAD))


def event_type(version: int) -> str:
    return EVENT_TYPES[version % len(EVENT_TYPES)]


# --------------------------------------------------------------------------------------------------
# Writers. Each returns the event ids it wrote so the test can check every one is read back once.


async def lockzero_writer(store: EventStore, stream: str, version: int, count: int, ids: list[uuid.UUID]) -> int:
    """``count`` single-event appends to ``stream``, each with expected_version = current version."""
    for _ in range(count):
        ev = NewEvent(type=event_type(version + 1), data=payload(version + 1))
        result = await store.append(stream, [ev], expected_version=version)
        version = result.stream_version
        ids.append(ev.event_id)
    return version


async def plain_writer(pool: AsyncConnectionPool, stream: str, version: int, count: int, ids: list[uuid.UUID]) -> int:
    """``count`` autocommit single-row INSERTs: one transaction per row, like one append."""
    for _ in range(count):
        version += 1
        event_id = uuid.uuid4()
        async with pool.connection() as conn:
            await conn.execute(PLAIN_INSERT, (stream, version, event_id, event_type(version), payload(version), b"{}"))
        ids.append(event_id)
    return version


Writer = Callable[[str, int, int, list[uuid.UUID]], Awaitable[int]]


class Sample(msgspec.Struct, frozen=True):
    rate: float  # appends (rows) per second
    cpu_ms: float  # client (this process) CPU milliseconds per append


async def run_config(write: Writer, label: str, writers: int, ids: list[uuid.UUID]) -> Sample:
    """Warm up, then time APPENDS_PER_CONFIG appends split over ``writers`` tasks on fresh streams."""
    streams = [f"bench-{label}-w{writers}-{i}-{uuid.uuid4().hex[:8]}" for i in range(writers)]
    versions = await asyncio.gather(*(write(s, 0, WARMUP_PER_WRITER, ids) for s in streams))
    per_writer = APPENDS_PER_CONFIG // writers
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(write(s, v, per_writer, ids) for s, v in zip(streams, versions, strict=True)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    done = per_writer * writers
    return Sample(rate=done / elapsed, cpu_ms=1e3 * cpu / done)


def median(samples: list[Sample]) -> Sample:
    rates = sorted(s.rate for s in samples)
    cpus = sorted(s.cpu_ms for s in samples)
    return Sample(rate=rates[len(rates) // 2], cpu_ms=cpus[len(cpus) // 2])


# --------------------------------------------------------------------------------------------------
# Replay.


class StreamState(msgspec.Struct):
    count: int = 0
    last_type: str = ""
    last_seq: int = 0


async def load_replay_events(store: EventStore) -> dict[str, list[uuid.UUID]]:
    """REPLAY_EVENTS events over REPLAY_STREAMS streams, one batched append per stream."""
    per_stream = REPLAY_EVENTS // REPLAY_STREAMS
    queue: asyncio.Queue[str] = asyncio.Queue()
    written: dict[str, list[uuid.UUID]] = {}
    for i in range(REPLAY_STREAMS):
        queue.put_nowait(f"replay-{i:05d}")

    async def loader() -> None:
        while not queue.empty():
            stream = queue.get_nowait()
            batch = [NewEvent(type=event_type(v), data=payload(v)) for v in range(1, per_stream + 1)]
            await store.append(stream, batch, expected_version=0)
            written[stream] = [e.event_id for e in batch]

    await asyncio.gather(*(loader() for _ in range(REPLAY_LOAD_WRITERS)))
    return written


async def replay(store: EventStore, after: int) -> tuple[dict[str, StreamState], list[uuid.UUID], int, float]:
    """Page through read_all from ``after`` and fold every event; returns (state, ids, pages, seconds)."""
    state: dict[str, StreamState] = {}
    ids: list[uuid.UUID] = []
    pages = 0
    t0 = time.perf_counter()
    while True:
        page = await store.read_all(after, limit=REPLAY_PAGE)
        if not page:
            break
        pages += 1
        for event in page:
            body = _decoder.decode(event.data)
            s = state.get(event.stream)
            if s is None:
                s = state[event.stream] = StreamState()
            s.count += 1
            s.last_type = event.type
            s.last_seq = body.seq
            ids.append(event.event_id)
        after = page[-1].position
    return state, ids, pages, time.perf_counter() - t0


async def read_all_ids(store: EventStore, after: int, upto: int) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    while after < upto:
        page = await store.read_all(after, limit=REPLAY_PAGE)
        page = [e for e in page if e.position <= upto]
        if not page:
            break
        ids.extend(e.event_id for e in page)
        after = page[-1].position
    return ids


# --------------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


async def test_eventstore_bench() -> None:
    with fresh_pg_database() as url:
        store = await open_store(url, pool_size=POOL_SIZE)
        plain = AsyncConnectionPool(
            url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False, kwargs={"autocommit": True}
        )
        try:
            await store.migrate()
            await plain.open(wait=True)
            async with plain.connection() as conn:
                await conn.execute(PLAIN_DDL)
            await _bench(store, plain)
        finally:
            await plain.close()
            await store.close()


async def _bench(store: EventStore, plain: AsyncConnectionPool) -> None:
    lz_ids: list[uuid.UUID] = []
    plain_ids: list[uuid.UUID] = []

    async def lz(stream: str, version: int, count: int, ids: list[uuid.UUID]) -> int:
        return await lockzero_writer(store, stream, version, count, ids)

    async def pl(stream: str, version: int, count: int, ids: list[uuid.UUID]) -> int:
        return await plain_writer(plain, stream, version, count, ids)

    # Interleave backends and repeat, so drift (autovacuum, checkpoints, other load on the machine)
    # hits both alike; report the median round.
    samples: dict[tuple[str, int], list[Sample]] = {}
    for _ in range(ROUNDS):
        for writers in WRITER_COUNTS:
            samples.setdefault(("lockzero", writers), []).append(await run_config(lz, "lz", writers, lz_ids))
            samples.setdefault(("plain", writers), []).append(await run_config(pl, "plain", writers, plain_ids))
    med = {key: median(v) for key, v in samples.items()}
    lz_pool = getattr(store, "_pool", None)
    lz_pool_size = lz_pool.get_stats().get("pool_size", "?") if lz_pool is not None else "?"

    # ---- sanity: the append phase wrote exactly what it said it wrote ------------------------
    expected_appends = ROUNDS * sum(APPENDS_PER_CONFIG // w * w + w * WARMUP_PER_WRITER for w in WRITER_COUNTS)
    assert len(lz_ids) == expected_appends
    assert len(plain_ids) == expected_appends
    head_after_appends = await store.head_position()
    assert head_after_appends == len(lz_ids)
    async with plain.connection() as conn:
        cur = await conn.execute("SELECT count(*), count(DISTINCT event_id) FROM bench_plain")
        assert await cur.fetchone() == (len(plain_ids), len(plain_ids))
    appended_read = await read_all_ids(store, 0, head_after_appends)
    assert len(appended_read) == len(lz_ids)
    assert set(appended_read) == set(lz_ids)

    # ---- replay ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    written = await load_replay_events(store)
    load_s = time.perf_counter() - t0
    state, replay_ids, pages, replay_s = await replay(store, head_after_appends)
    replay_rate = len(replay_ids) / replay_s

    per_stream = REPLAY_EVENTS // REPLAY_STREAMS
    all_written = [i for ids in written.values() for i in ids]
    assert len(all_written) == REPLAY_EVENTS
    assert len(replay_ids) == REPLAY_EVENTS
    assert len(set(replay_ids)) == REPLAY_EVENTS  # exactly once
    assert set(replay_ids) == set(all_written)
    assert set(state) == set(written)
    assert all(s.count == per_stream for s in state.values())
    assert all(s.last_type == event_type(per_stream) and s.last_seq == per_stream for s in state.values())
    head_after_replay = await store.head_position()
    assert head_after_replay == head_after_appends + REPLAY_EVENTS

    # ---- informational: the same append cells once more, now that lz_events is large ---------
    late_ids: list[uuid.UUID] = []
    late = {w: await run_config(lz, "late", w, late_ids) for w in WRITER_COUNTS}
    late_read = await read_all_ids(store, head_after_replay, await store.head_position())
    assert len(late_read) == len(late_ids)
    assert set(late_read) == set(late_ids)

    # ---- report ------------------------------------------------------------------------------
    ratio = {w: med["lockzero", w].rate / med["plain", w].rate for w in WRITER_COUNTS}

    def spread(key: tuple[str, int]) -> str:
        rates = [x.rate for x in samples[key]]
        return f"{min(rates):,.0f}-{max(rates):,.0f}"

    hr = "-" * 100
    lines = [
        "",
        hr,
        "Lockzero event store benchmark (PostgreSQL, one fresh database, one run)",
        f"appends: {APPENDS_PER_CONFIG:,} timed single-event appends per cell and round, after"
        f" {WARMUP_PER_WRITER} warm-up appends/writer; ~{PAYLOAD_BYTES}-byte JSON payload; one stream per"
        f" writer, expected_version = current",
        f"         pool size {POOL_SIZE} (Lockzero's pool grew to {lz_pool_size}); median of {ROUNDS}"
        " interleaved rounds, [min-max]; CPU = client CPU ms per append",
        "plain:   one autocommit INSERT per row into bench_plain (lz_events' columns and unique indexes,"
        " BIGSERIAL position, no head lock, no checks)",
        hr,
        f"{'writers':>7} | {'Lockzero appends/s':>30} | {'plain INSERT rows/s':>30} | {'Lockzero/plain':>14}",
        hr,
    ]
    for w in WRITER_COUNTS:
        lz_s, pl_s = med["lockzero", w], med["plain", w]
        lz_txt = f"{lz_s.rate:,.0f} [{spread(('lockzero', w))}] cpu {lz_s.cpu_ms:.2f}"
        pl_txt = f"{pl_s.rate:,.0f} [{spread(('plain', w))}] cpu {pl_s.cpu_ms:.2f}"
        lines.append(f"{w:>7} | {lz_txt:>30} | {pl_txt:>30} | {ratio[w]:>14.1%}")
    lines += [
        hr,
        f"goal >= {APPEND_GOAL_RATIO:.0%} of plain INSERT at 8 writers: {_met(ratio[8] >= APPEND_GOAL_RATIO)}"
        f" ({ratio[8]:.1%})",
        hr,
        f"replay: {REPLAY_EVENTS:,} events over {REPLAY_STREAMS:,} streams (loaded in {load_s:.1f}s as"
        f" {per_stream}-event appends by {REPLAY_LOAD_WRITERS} tasks)",
        f"        read_all(after, limit={REPLAY_PAGE:,}) x {pages} pages + msgspec decode into a Struct"
        " + per-stream fold (count, last type)",
        f"        {len(replay_ids):,} events in {replay_s:.3f}s = {replay_rate:,.0f} events/s",
        f"goal >= {REPLAY_GOAL:,} events/s: {_met(replay_rate >= REPLAY_GOAL)}",
        hr,
        f"info: Lockzero appends/s re-measured after the replay load (lz_events ~{head_after_replay:,} rows,"
        " 1 round): " + ", ".join(f"{w} writer{'s' if w > 1 else ''} {late[w].rate:,.0f}" for w in WRITER_COUNTS),
        hr,
    ]
    print("\n".join(lines))
