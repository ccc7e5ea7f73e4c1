"""The scheduler's audit-chain check between passes (engine/audit/chain_watch.py), on both backends: a
first full walk, then what was appended plus a slice of older history; an edit anywhere is still found
(new records at once, old ones within a round of slices however fast records arrive, a changed or moved head
at once); a failure, once found, is named at every pass; checkpoints are checked once each, and all again when
the slices start over; passes under concurrent appends name nothing."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.audit import chain as audit_chain
from lockzero.engine.audit import records as audit
from lockzero.engine.audit.chain_watch import ChainWatch, watch_of
from tests.engine.support import OPERATOR
from tests.engine.test_audit_chain import mixed_calls, positions_of, sql

SLICE = 40


@pytest.fixture(params=[7, 2000], ids=["chunks of 7", "one chunk"])
async def watched(engine: Engine, request: pytest.FixtureRequest) -> tuple[Engine, ChainWatch]:
    """Walks read a chunk per snapshot: a chunk smaller than the slice makes every walk several of them."""
    await mixed_calls(engine, 150)
    watch = ChainWatch(scrub_records=SLICE, chunk=request.param)
    first = await watch.run(engine, None)
    assert first.ok and first.records == await engine.store.head_position()  # the first pass walks everything
    return engine, watch


async def more(engine: Engine, n: int, tenant: str = "acme") -> None:
    await asyncio.gather(*(audit.record(engine, tenant, OPERATOR, "list_secrets", "ok") for _ in range(n)))


async def test_later_passes_walk_what_was_appended_and_one_slice(watched: tuple[Engine, ChainWatch]) -> None:
    engine, watch = watched
    await more(engine, 10)
    second = await watch.run(engine, None)
    assert second.ok and second.records == 10 + SLICE
    assert (await watch.run(engine, None)).records == SLICE  # nothing new: the next slice only


async def test_an_edit_of_an_old_record_is_found_when_the_slices_reach_it(watched: tuple[Engine, ChainWatch]) -> None:
    engine, watch = watched
    head = await engine.store.head_position()
    target = (await positions_of(engine, "acme"))[-5]  # near the end: the last slice of the round reaches it
    await sql(engine, "UPDATE lz_events SET metadata = ? WHERE position = ?", (b"{}", target))
    verdicts = []
    for _ in range(math.ceil(head / SLICE) + 1):
        verdicts.append(await watch.run(engine, None))
        if not verdicts[-1].ok:
            break
    assert [v.ok for v in verdicts[:-1]] == [True] * (len(verdicts) - 1)  # the slices before it were clean
    assert len(verdicts) >= head // SLICE  # found by the slice that reached it, not before
    found = verdicts[-1]
    assert (found.ok, found.first_bad_position, found.failures[0].kind) == (False, target, "modified")
    again = await watch.run(engine, None)  # a failure, once found, is named at every pass
    assert not again.ok and again.first_bad_position == target and again.records <= SLICE


async def test_an_old_edit_is_found_within_a_round_while_records_arrive_faster_than_a_slice(
    watched: tuple[Engine, ChainWatch],
) -> None:
    """Slices chasing a head that moves on by more than a slice per pass would never meet it: a round ends where
    the head was when it began."""
    engine, watch = watched
    head = await engine.store.head_position()
    for _ in range(2):  # the slices move past the record before it is edited, so a new round must reach it
        assert (await watch.run(engine, None)).ok
    target = (await positions_of(engine, "acme"))[2]
    await sql(engine, "UPDATE lz_events SET metadata = ? WHERE position = ?", (b"{}", target))
    # This round ends at the head when it began; the next one reaches the record: two rounds at most.
    for _ in range(2 * math.ceil(head / SLICE) + 2):
        await more(engine, 2 * SLICE)
        found = await watch.run(engine, None)
        if not found.ok:
            break
    assert (found.ok, found.first_bad_position) == (False, target)


async def test_a_deleted_head_of_a_quiet_chain_is_found_at_the_next_pass(engine: Engine) -> None:
    await mixed_calls(engine, 150)
    # A slice of one record (acme's first): only the walk of new records, which has none of beta's, can tell.
    watch = ChainWatch(scrub_records=1)
    assert (await watch.run(engine, None)).ok
    await more(engine, 5, tenant="acme")
    await sql(engine, "DELETE FROM lz_chain_heads WHERE chain = 'beta'")
    found = await watch.run(engine, None)
    assert not found.ok and (found.failures[0].tenant, found.failures[0].kind) == ("beta", "inserted")


async def test_a_head_row_moved_past_the_store_head_is_found_at_the_next_pass(engine: Engine) -> None:
    """Walks end at the head when the pass begins; a head row naming a later position must still name a record
    of its chain (the _system chain has no checkpoints to tell otherwise)."""
    await mixed_calls(engine, 40)
    watch = ChainWatch(scrub_records=1)
    assert (await watch.run(engine, None)).ok
    await sql(engine, "UPDATE lz_chain_heads SET position = 10000000000 WHERE chain = 'beta'")
    found = await watch.run(engine, None)
    assert not found.ok and (found.failures[0].tenant, found.failures[0].kind) == ("beta", "deleted")
    assert [f.position for f in found.failures] == [10_000_000_000]  # named once, not once per source
    whole = await audit_chain.verify(engine)  # a forged far position costs the whole walk no memory either
    assert not whole.ok and whole.failures[0].tenant == "beta"


async def test_a_torn_witness_file_is_unverifiable_not_a_crash(engine: Engine, tmp_path: Path) -> None:
    await mixed_calls(engine, 20)
    witness = audit_chain.FileWitness(str(tmp_path / "w.jsonl"))
    await audit_chain.checkpoint(engine, "acme", witness)
    with (tmp_path / "w.jsonl").open("a") as f:
        f.write('{"tenant": "acme", "se\n')  # a write cut short
    result = await ChainWatch().run(engine, witness)
    assert not result.ok and {f.kind for f in result.failures} == {"unverifiable"}
    assert "line 2" in result.failures[0].detail


async def test_a_bad_checkpoint_is_found_within_a_round_under_load(engine: Engine) -> None:
    await mixed_calls(engine, 150)
    head = await engine.store.head_position()
    await audit_chain.checkpoint(engine, "acme")
    watch = ChainWatch(scrub_records=SLICE)
    assert (await watch.run(engine, None)).ok
    await sql(engine, "UPDATE lz_audit_checkpoints SET signature = ? WHERE tenant = 'acme'", (bytes(64),))
    for _ in range(2 * math.ceil(head / SLICE) + 2):
        await more(engine, 2 * SLICE)
        found = await watch.run(engine, None)
        if not found.ok:
            break
    assert not found.ok and found.failures[0].kind == "rewritten" and "bad signature" in found.failures[0].detail


async def test_a_tampered_new_record_is_found_at_the_next_pass(watched: tuple[Engine, ChainWatch]) -> None:
    engine, watch = watched
    await more(engine, 10)
    target = (await positions_of(engine, "acme"))[-3]
    await sql(engine, "UPDATE lz_events SET metadata = ? WHERE position = ?", (b"{}", target))
    found = await watch.run(engine, None)
    assert (found.ok, found.first_bad_position) == (False, target)


async def test_a_changed_head_is_found_at_the_next_pass(watched: tuple[Engine, ChainWatch]) -> None:
    """The record and the head table agree with each other but not with what the last pass verified (a rewrite
    that reached the head): the chain states kept in memory tell, with no new record to walk."""
    engine, watch = watched
    last = (await positions_of(engine, "beta"))[-1]
    forged = bytes(range(32))
    await sql(engine, "UPDATE lz_events SET chain_hash = ? WHERE position = ?", (forged, last))
    await sql(engine, "UPDATE lz_chain_heads SET hash = ? WHERE chain = 'beta'", (forged,))
    found = await watch.run(engine, None)
    assert not found.ok
    assert (found.failures[0].tenant, found.failures[0].position, found.failures[0].kind) == ("beta", last, "modified")


async def test_checkpoints_are_checked_once_and_again_when_the_slices_start_over(engine: Engine) -> None:
    await mixed_calls(engine, 150)
    head = await engine.store.head_position()
    await audit_chain.checkpoint(engine, "acme")
    await audit_chain.checkpoint(engine, "beta")
    watch = ChainWatch(scrub_records=SLICE)
    assert (await watch.run(engine, None)).checkpoints == 2
    await more(engine, 3)
    await audit_chain.checkpoint(engine, "acme")
    assert (await watch.run(engine, None)).checkpoints == 1  # the new one only
    checked = []
    for _ in range(math.ceil(head / SLICE) + 1):
        checked.append((await watch.run(engine, None)).checkpoints)
    assert 3 in checked  # the pass whose slice reached the end checked all three again
    assert set(checked) <= {0, 3}


async def test_passes_while_records_are_appended_name_nothing(engine: Engine) -> None:
    await mixed_calls(engine, 150)
    watch = ChainWatch(scrub_records=SLICE, chunk=7)
    writing = True

    async def writer() -> int:
        appended = 0
        while writing:
            await more(engine, 5)
            appended += 5
        return appended

    writers = [asyncio.create_task(writer()) for _ in range(2)]
    try:
        verdicts = [await watch.run(engine, None) for _ in range(6)]
    finally:
        writing = False
        appended = sum(await asyncio.gather(*writers))
    assert appended > 0
    assert [v.message() for v in verdicts if not v.ok] == []
    assert (await audit_chain.verify(engine)).ok


async def test_the_scheduler_keeps_one_watch_per_engine(engine: Engine) -> None:
    assert watch_of(engine) is watch_of(engine)
