"""Audit-chain benchmark (issue 16): appends/s with the hash chain on vs off, in one run, per backend, twice:
bare event-store appends (no read model: the strictest ratio, a path no Lockzero append takes), and audit
records as the API records them (AuditBatcher -> Engine.append_each, the rm_audit projection in the same
transaction, as every engine append has one); then the issue's 10,000 mixed engine calls and a clean `audit verify` over
them, timed.

Run with ``make bench`` (or ``.venv/bin/python -m pytest -q -s -m bench tests/bench/test_audit_chain_bench.py``).
On PostgreSQL "off" is measured two ways, each in its own database of the same version: the append
function of migration 2 (the store as it was before the chain), and the function of migration 8 with its
chain parts taken out (``_UNCHAINED_APPEND``: the same one-INSERT batch, no heads, no hashes) — the second
is the chain's own cost. On SQLite "off" is the store's private ``_chain`` switch. Configurations run
interleaved ROUNDS times; the table shows the median and the range; the goal (chain costs <= 10 %) is
printed, the assertions are sanity only (every append landed, the chain verifies).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from lockzero.engine.app import Engine
from lockzero.engine.audit import chain as audit_chain
from lockzero.engine.audit import records as audit
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.chain_watch import SCRUB_RECORDS, ChainWatch
from lockzero.engine.audit.records import make_record
from lockzero.engine.domain import events as ev
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import EventStore, NewEvent, open_store
from lockzero.eventstore.chain import verify_chain
from lockzero.eventstore.migrations import _APPEND_BATCH_FUNCTION_V2
from tests.conftest import ADMIN_DSN, fresh_pg_database
from tests.engine.support import OPERATOR, ManualClock
from tests.engine.test_audit_chain import mixed_calls

pytestmark = pytest.mark.bench

#: Appends per timed run: about a second on each backend, so that a run outlasts the machine's jitter.
APPENDS = {"postgresql": 12_000, "sqlite": 1_500}
WRITERS = 16
#: History sizes at which the scheduler's pass is timed beside a whole walk (audit records, PostgreSQL).
HISTORY = (20_000, 60_000, 120_000)
#: Records appended between two scheduler passes in that measure (about 30 s of a busy API process's audit).
BETWEEN_PASSES = 1_000
ROUNDS = 7
_SIGNATURE = "lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"

#: Migration 8's append function less every chain statement: the baseline for the chain's own cost.
_UNCHAINED_APPEND = r"""
CREATE OR REPLACE FUNCTION lz_append_batch(
    p_streams text[], p_expected int[], p_counts int[],
    p_ids uuid[], p_types text[], p_data bytea[], p_meta bytea[], p_at timestamptz
) RETURNS TABLE (idx int, status text, stream_version int, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    cur int;
    ev int := 1;
    n int;
    si int;
    m int := 0;
    x int;
    streams text[];
    versions int[];
    stored_ids uuid[];
    taken_ids uuid[] := '{}';
    e_at int[] := '{}';
    e_stream text[] := '{}';
    e_version int[] := '{}';
BEGIN
    SELECT position INTO head FROM lz_event_head WHERE id = 1 FOR UPDATE;
    SELECT r.streams, r.versions, r.stored_ids INTO streams, versions, stored_ids
      FROM lz_append_reads(p_streams, p_ids) AS r;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        n := p_counts[i];
        idx := i;
        IF p_ids[ev : ev + n - 1] && taken_ids OR p_ids[ev : ev + n - 1] && stored_ids THEN
            status := 'duplicate'; stream_version := NULL; first_position := NULL;
        ELSE
            si := array_position(streams, p_streams[i]);
            cur := versions[si];
            IF p_expected[i] <> -1 AND p_expected[i] <> cur THEN
                status := 'conflict'; stream_version := cur; first_position := NULL;
            ELSE
                FOR k IN 1 .. n LOOP
                    m := m + 1;
                    x := ev + k - 1;
                    e_at[m] := x;
                    e_stream[m] := p_streams[i];
                    e_version[m] := cur + k;
                END LOOP;
                taken_ids := taken_ids || p_ids[ev : ev + n - 1];
                versions[si] := cur + n;
                status := 'ok'; stream_version := cur + n; first_position := head + 1;
                head := head + n;
            END IF;
        END IF;
        RETURN NEXT;
        ev := ev + n;
    END LOOP;
    IF m > 0 THEN
        INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at)
        SELECT head - m + j, e_stream[j], e_version[j], p_ids[e_at[j]], p_types[e_at[j]], p_data[e_at[j]],
               p_meta[e_at[j]], p_at
        FROM generate_series(1, m) AS j;
    END IF;
    UPDATE lz_event_head SET position = head WHERE id = 1;
    PERFORM pg_notify('lz_events', head::text);
END $$
"""
MIXED_CALLS = 10_000


#: One append of writer ``w``'s ``i``-th record to ``store`` (or to the engine on top of it).
Append = Callable[[EventStore, int, int], Awaitable[object]]


async def _bare_append(store: EventStore, w: int, i: int) -> object:
    data = f'{{"w": {w}, "i": {i}, "pad": "{"x" * 150}"}}'.encode()
    return await store.append(f"audit-t{w % 4}", [NewEvent(type="AuditRecorded", data=data)])


async def _timed(store: EventStore, appends: int, database: str | None, append: Append) -> tuple[float, float]:
    """Appends/s, and CPU µs per append of this process and of the store's PostgreSQL backends together."""
    per = appends // WRITERS

    async def writer(w: int) -> None:
        for i in range(per):
            await append(store, w, i)

    server_before, client_before = _server_cpu_s(database), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - client_before + _server_cpu_s(database) - server_before
    return per * WRITERS / elapsed, cpu * 1e6 / (per * WRITERS)


def _server_cpu_s(database: str | None) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to ``database`` (None: SQLite, in this process).
    The store's pooled connections live across runs, so a difference between two readings is that run's."""
    if database is None:
        return 0.0
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def _pg_store(url: str, append_function: str | None = None, plan_cache_mode: str = "") -> EventStore:
    store = await open_store(url)
    await store.migrate()
    if append_function is not None:
        async with store.transaction() as tx:
            await tx.execute(append_function.replace("%", "%%"))
            # As its migration left it (CREATE OR REPLACE drops the function's SET clause).
            await tx.execute(f"ALTER FUNCTION {_SIGNATURE} SET plan_cache_mode = {plan_cache_mode}")
    return store


async def _sqlite_stores(tmp: Path) -> tuple[EventStore, EventStore]:
    on, off = await open_store(f"sqlite:///{tmp / 'on.db'}"), await open_store(f"sqlite:///{tmp / 'off.db'}")
    await on.migrate()
    await off.migrate()
    off._chain = False  # type: ignore[attr-defined]
    return on, off


async def _compare(
    name: str, stores: dict[str, tuple[EventStore, str | None]], append: Append = _bare_append, extra: int = 0
) -> None:
    """``stores``: label -> (store, its PostgreSQL database or None); the first is the one with the chain.
    ``extra``: events in the chained store before the first run (the verify at the end counts them too)."""
    appends = APPENDS[name]
    rates: dict[str, list[float]] = {label: [] for label in stores}
    cpus: dict[str, list[float]] = {label: [] for label in stores}
    for store, database in stores.values():
        await _timed(store, appends, database, append)  # warm-up
    for r in range(ROUNDS):
        order = list(stores.items())
        for label, (store, database) in order[r % len(order) :] + order[: r % len(order)]:
            rate, cpu = await _timed(store, appends, database, append)
            rates[label].append(rate)
            cpus[label].append(cpu)
    on_label = next(iter(stores))
    on_rate, on_cpu = statistics.median(rates[on_label]), statistics.median(cpus[on_label])
    for label in stores:
        rate, cpu = statistics.median(rates[label]), statistics.median(cpus[label])
        line = (
            f"{name:<10} {label:<32} {rate:7.0f} appends/s [{min(rates[label]):.0f}-{max(rates[label]):.0f}]"
            f"  {cpu:5.0f} µs CPU/append [{min(cpus[label]):.0f}-{max(cpus[label]):.0f}]"
        )
        if label != on_label:
            line += (
                f"   chain costs {100 * (1 - on_rate / rate):5.1f} % of appends/s (goal <= 10 %),"
                f" {100 * (on_cpu / cpu - 1):5.1f} % more CPU"
            )
        print(line)
    on_store = stores[on_label][0]
    async with on_store.reader() as tx:
        report = await verify_chain(tx)
    assert report.ok and report.records == appends // WRITERS * WRITERS * (ROUNDS + 1) + extra


async def test_chain_on_vs_off(tmp_path: Path) -> None:
    runs = ", ".join(f"{n:,} on {backend}" for backend, n in APPENDS.items())
    print(f"\nappends of one event, {WRITERS} concurrent writers; appends per run: {runs}; median of {ROUNDS} rounds")
    with fresh_pg_database() as on_url, fresh_pg_database() as before_url, fresh_pg_database() as unchained_url:
        on = await _pg_store(on_url)
        before = await _pg_store(before_url, _APPEND_BATCH_FUNCTION_V2, "force_custom_plan")
        unchained = await _pg_store(unchained_url, _UNCHAINED_APPEND, "force_generic_plan")
        try:
            await _compare(
                "postgresql",
                {
                    "chain on": (on, _database(on_url)),
                    "off: one INSERT, no chain": (unchained, _database(unchained_url)),
                    "off: before the chain (migr. 2)": (before, _database(before_url)),
                },
            )
        finally:
            for store in (on, before, unchained):
                await store.close()
    on, off = await _sqlite_stores(tmp_path)
    try:
        await _compare("sqlite", {"chain on": (on, None), "chain off": (off, None)})
    finally:
        await on.close()
        await off.close()


async def test_chain_on_vs_off_as_the_engine_appends() -> None:
    """The same comparison on the path every audit record takes: each writer's call records through the engine's
    AuditBatcher (as the API's calls do), which appends the records waiting for one tenant together
    (Engine.append_each), each append with its read-model projection (the rm_audit rows) in the same
    transaction. No engine append goes without a projection; the table above has none."""
    print(
        f"\naudit records through AuditBatcher -> Engine.append_each (with their rm_audit projection),"
        f" {WRITERS} writers, one record per call; median of {ROUNDS} rounds; rate = records/s"
    )
    actor = ev.EventMeta(actor_id="key_bench", actor_type="agent")
    batchers: dict[int, tuple[Engine, AuditBatcher]] = {}

    async def record(store: EventStore, w: int, i: int) -> object:
        engine, batcher = batchers[id(store)]
        tenant = f"t{w % 4}"
        await batcher.record(
            make_record(engine, tenant, actor, "get_secret_metadata", "ok", secret_id=f"prod/s{i % 50}"), actor
        )
        return tenant

    with fresh_pg_database() as on_url, fresh_pg_database() as unchained_url:
        on = await _pg_store(on_url)
        unchained = await _pg_store(unchained_url, _UNCHAINED_APPEND, "force_generic_plan")
        try:
            for store in (on, unchained):
                engine = Engine(store, MasterKey.generate(), ManualClock())
                await engine.migrate()
                batchers[id(store)] = (engine, AuditBatcher(engine))
            await _compare(
                "postgresql",
                {
                    "chain on": (on, _database(on_url)),
                    "off: one INSERT, no chain": (unchained, _database(unchained_url)),
                },
                record,
                extra=await on.head_position(),
            )
        finally:
            for store in (on, unchained):
                await store.close()


def _database(url: str) -> str:
    return str(conninfo_to_dict(url)["dbname"])


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_ten_thousand_mixed_calls_verify_clean(backend: str, tmp_path: Path) -> None:
    async def run(url: str) -> None:
        engine = Engine(await open_store(url), MasterKey.generate(), ManualClock())
        await engine.migrate()
        try:
            started = time.perf_counter()
            await mixed_calls(engine, MIXED_CALLS)
            calls_s = time.perf_counter() - started
            started = time.perf_counter()
            verdict = await audit_chain.verify(engine)
            verify_s = time.perf_counter() - started
            print(
                f"\n{backend}: {MIXED_CALLS} mixed calls in {calls_s:.1f} s; audit verify of {verdict.records}"
                f" records in {verify_s:.2f} s ({verdict.records / verify_s:.0f} records/s)"
            )
            assert verdict.ok and verdict.records == await engine.store.head_position()
        finally:
            await engine.close()

    if backend == "sqlite":
        await run(f"sqlite:///{tmp_path / 'mixed.db'}")
    else:
        with fresh_pg_database() as url:
            await run(url)
    _ = uuid  # ids come from the engine


async def test_scheduler_pass_stays_bounded_as_history_grows() -> None:
    """The scheduler's chain check (engine/audit/chain_watch.py, default slice) against the baseline it replaced, a
    whole walk (`audit verify`), as the history grows: the pass walks the records appended since the last one plus
    one slice of older history, so its time stays flat while the whole walk's grows with the history."""
    with fresh_pg_database() as url:
        engine = Engine(await open_store(url), MasterKey.generate(), ManualClock())
        await engine.migrate()
        try:
            await mixed_calls(engine, 10, tenants_=("acme",))
            watch = ChainWatch()
            assert (await watch.run(engine, None)).ok  # the first pass: a whole walk, not what is measured
            rows = []
            for size in HISTORY:
                await _audit_records(engine, size - await engine.store.head_position() - BETWEEN_PASSES)
                assert (await watch.run(engine, None)).ok  # the pass that takes in the bulk: not measured
                await _audit_records(engine, BETWEEN_PASSES)
                started = time.perf_counter()
                checked = await watch.run(engine, None)
                pass_s = time.perf_counter() - started
                started = time.perf_counter()
                whole = await audit_chain.verify(engine)
                whole_s = time.perf_counter() - started
                assert checked.ok and whole.ok and whole.records == await engine.store.head_position()
                rows.append((whole.records, whole_s, checked.records, pass_s))
        finally:
            await engine.close()
    print(
        f"\nscheduler chain check, PostgreSQL, {BETWEEN_PASSES:,} records appended between passes,"
        f" slices of {SCRUB_RECORDS:,}:"
    )
    for records, whole_s, walked, pass_s in rows:
        print(
            f"   history {records:>9,}: whole walk (baseline, audit verify) {whole_s:6.2f} s;"
            f" scheduler pass {pass_s:6.2f} s for {walked:,} records"
        )


async def _audit_records(engine: Engine, n: int) -> None:
    batch = 500  # concurrent, so that they are group-committed as the API's are
    for start in range(0, max(n, 0), batch):
        await asyncio.gather(
            *(audit.record(engine, "acme", OPERATOR, "list_secrets", "ok") for _ in range(min(batch, n - start)))
        )
