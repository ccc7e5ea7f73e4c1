"""Audit-chain benchmark (issue 16): appends/s with the hash chain on vs off, in one run, per backend;
then the issue's 10,000 mixed engine calls and a clean `audit verify` over them, timed.

Run with ``make bench`` (or ``.venv/bin/python -m pytest -q -s -m bench tests/bench/test_audit_chain_bench.py``).
"Off" is the store as it was before the chain: on PostgreSQL the group-commit function of migration 2
put back in the same database version, on SQLite the store's private ``_chain`` switch. Configurations
run interleaved ROUNDS times and the table shows the median; the goal (chain costs <= 10 %) is printed,
the assertions are sanity only (every append landed, the chain verifies).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.audit import chain as audit_chain
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import EventStore, NewEvent, open_store
from lockzero.eventstore.migrations import _APPEND_BATCH_FUNCTION_V2
from tests.conftest import fresh_pg_database
from tests.engine.support import ManualClock
from tests.engine.test_audit_chain import mixed_calls

pytestmark = pytest.mark.bench

APPENDS = 3_000
WRITERS = 16
ROUNDS = 3
MIXED_CALLS = 10_000


async def _timed(store: EventStore, tag: str) -> float:
    per = APPENDS // WRITERS

    async def writer(w: int) -> None:
        for i in range(per):
            data = f'{{"w": {w}, "i": {i}, "pad": "{"x" * 150}"}}'.encode()
            await store.append(f"audit-t{w % 4}", [NewEvent(type="AuditRecorded", data=data)])

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    return per * WRITERS / (time.perf_counter() - started)


async def _pg_stores(on_url: str, off_url: str) -> tuple[EventStore, EventStore]:
    on, off = await open_store(on_url), await open_store(off_url)
    await on.migrate()
    await off.migrate()
    async with off.transaction() as tx:
        await tx.execute(_APPEND_BATCH_FUNCTION_V2.replace("%", "%%"))
        # As migration 2 left it (CREATE OR REPLACE drops the function's SET clause).
        await tx.execute(
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_custom_plan"
        )
    return on, off


async def _sqlite_stores(tmp: Path) -> tuple[EventStore, EventStore]:
    on, off = await open_store(f"sqlite:///{tmp / 'on.db'}"), await open_store(f"sqlite:///{tmp / 'off.db'}")
    await on.migrate()
    await off.migrate()
    off._chain = False  # type: ignore[attr-defined]
    return on, off


async def _compare(name: str, on: EventStore, off: EventStore) -> tuple[float, float]:
    rates: dict[str, list[float]] = {"on": [], "off": []}
    await _timed(on, "warm-up")
    await _timed(off, "warm-up")
    for r in range(ROUNDS):
        for label, store in (("off", off), ("on", on)) if r % 2 else (("on", on), ("off", off)):
            rates[label].append(await _timed(store, label))
    on_rate, off_rate = statistics.median(rates["on"]), statistics.median(rates["off"])
    print(
        f"{name:<10} chain off {off_rate:9.0f} appends/s   chain on {on_rate:9.0f} appends/s"
        f"   cost {100 * (1 - on_rate / off_rate):5.1f} %   (goal <= 10 %)"
    )
    async with on.reader() as tx:
        from lockzero.eventstore.chain import verify_chain

        report = await verify_chain(tx)
    assert report.ok and report.records == APPENDS // WRITERS * WRITERS * (ROUNDS + 1)
    return on_rate, off_rate


async def test_chain_on_vs_off(tmp_path: Path) -> None:
    print(f"\nappends of one event, {WRITERS} concurrent writers, {APPENDS} appends per run, median of {ROUNDS}")
    with fresh_pg_database() as on_url, fresh_pg_database() as off_url:
        on, off = await _pg_stores(on_url, off_url)
        try:
            await _compare("postgresql", on, off)
        finally:
            await on.close()
            await off.close()
    on, off = await _sqlite_stores(tmp_path)
    try:
        await _compare("sqlite", on, off)
    finally:
        await on.close()
        await off.close()


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
