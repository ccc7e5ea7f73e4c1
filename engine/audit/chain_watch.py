"""An incremental audit-chain check for the scheduler: what each pass verifies, kept between the passes of one
process. NOT wired into the scheduler yet (engine/saga/scheduler.py still walks every chain at every pass): in CI a
live `lockzero serve` on SQLite opened a false audit incident with it, and its per-engine lock met two event
loops in one test; both are to be understood before it replaces the full walk.

Walking every chain from the first record at every pass costs time in proportion to the whole history
(about 20 µs a record: a minute a pass at three million records, every 30 s, in the serving process).
So after a first full walk a pass verifies, up to the head as it was when the pass began:

- every record appended since the last pass, from the chain states that pass ended on (kept in memory, not
  read back: a rewrite of earlier records that reaches a chain head no longer links to them, and shows at once);
- the next slice of the older history (``scrub_records`` records), resuming where the last slice stopped; once
  the slices meet the walk of new records, their chain states must agree, and they start over from the first
  record. So an edit of an old record is found within one round of slices, however fast records arrive;
- the checkpoints signed since the last pass, and all of them again each time the slices start over.

Every walk goes in chunks of CHUNK records, each read in a snapshot of its own and handed the chain states the
last one ended on: on SQLite a snapshot holds the store's one connection, so a pass never keeps appends
waiting longer than one chunk. A failure, once found, is reported at every later pass of the process (the
scheduler opens its incident once) and its chain is not walked further, as a full walk would stop at it.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field, replace

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.audit.chain import (
    UNVERIFIABLE,
    FailureView,
    Verdict,
    Witness,
    check_checkpoints,
    signed_tenants,
    verdict,
)
from lockzero.eventstore.chain import ChainState, VerifyReport, verify_chain

#: Older records re-verified per pass: about 0.4 s of CPU at 20 µs a record.
SCRUB_RECORDS = 20_000
#: Records per snapshot: tens of milliseconds.
CHUNK = 2_000


@dataclass
class _Cursor:
    """Where a walk stopped: the last position it verified and the chain states there."""

    position: int = 0
    chains: dict[str, ChainState] = field(default_factory=dict)


def _end(report: VerifyReport) -> _Cursor:
    """Where a walk stopped, with copies of its chain states."""
    return _Cursor(report.last_position, {c: replace(s) for c, s in report.chains.items()})


class ChainWatch:
    def __init__(self, scrub_records: int = SCRUB_RECORDS, chunk: int = CHUNK) -> None:
        if scrub_records < 1 or chunk < 1:
            raise ValueError("a slice and a chunk hold at least one record")
        self.scrub_records = scrub_records
        self.chunk = chunk
        #: Where the walk of new records stopped; None until the first (full) walk.
        self._head: _Cursor | None = None
        self._scrub = _Cursor()
        #: Where the current round of slices ends: the walk of new records as it was when the round began (a head
        #: that moves on while the slices go would never be met when records arrive faster than a slice).
        self._round_end = _Cursor()
        #: Per tenant, the last checkpoint seq checked.
        self._checked: dict[str, int] = {}
        #: Every failure found so far: reported again at every pass, as a full walk would find it again (a broken
        #: chain stays broken). Its chain is marked failed in the cursors, so the walks do not trip over it again.
        self._known: list[FailureView] = []
        self._lock = asyncio.Lock()

    async def run(self, engine: Engine, witness: Witness | None) -> Verdict:
        async with self._lock:
            # Bounded by the head when the pass starts: under steady appends a walk would never catch up.
            target = await engine.store.head_position()
            new = await self._walk(engine, self._head or _Cursor(), None, target)
            failures = _views(new)
            walked = new.records
            if self._head is not None:
                end = self._round_end
                old = await self._walk(engine, self._scrub, self.scrub_records, end.position)
                failures += _views(old)
                walked += old.records
                if old.reached_end:
                    # The round of slices met where the walks of new records were when it began: they must agree
                    # there. Start over, and check every checkpoint again, as a full walk does.
                    failures += _disagreements(_end(old), end)
                    self._scrub, self._round_end, self._checked = _Cursor(), _end(new), {}
                else:
                    self._scrub = _end(old)
            else:
                self._round_end, self._checked = _end(new), {}
            # Remembered before the cursors move past them: a later step that fails must not lose them.
            self._remember(failures)
            self._head = _end(new)
            async with engine.store.reader() as tx:
                tenants = await signed_tenants(tx, new)
            checked, checkpoint_failures = await self._checkpoints(engine, witness, tenants)
            self._remember(checkpoint_failures)
            transient = [f for f in checkpoint_failures if f.kind == UNVERIFIABLE]
            # The walk's own failures are in _known by now: the verdict takes them from there, once.
            result = verdict(replace(new, failures=[]), checked, self._known + transient)
            return msgspec.structs.replace(result, records=walked)

    def _remember(self, failures: list[FailureView]) -> None:
        seen = {(f.tenant, f.position, f.kind) for f in self._known}
        for f in failures:
            # A witness that could not be reached is not a property of the chain: it is reported when it happens.
            if f.kind != UNVERIFIABLE and (f.tenant, f.position, f.kind) not in seen:
                seen.add((f.tenant, f.position, f.kind))
                self._known.append(f)

    async def _walk(self, engine: Engine, start: _Cursor, budget: int | None, until: int) -> VerifyReport:
        """From ``start`` up to position ``until``, at most ``budget`` records (None: no limit), a chunk per
        snapshot."""
        total = VerifyReport(chains={c: replace(s, records=0, legacy=0) for c, s in start.chains.items()})
        total.last_position, cursor = start.position, start
        while budget is None or budget > 0:
            limit = self.chunk if budget is None else min(self.chunk, budget)
            async with engine.store.snapshot() as tx:
                part = await verify_chain(
                    tx, since=cursor.position + 1, anchors=cursor.chains, limit=limit, until=until
                )
            _add(total, part)
            if budget is not None:
                budget -= part.last_position - cursor.position  # rows read: positions have no gaps
            cursor = _end(part)
            if part.reached_end:
                break
        total.reached_end = cursor.position >= until or total.reached_end
        return total

    async def _checkpoints(
        self, engine: Engine, witness: Witness | None, tenants: list[str]
    ) -> tuple[int, list[FailureView]]:
        """The checkpoints after the last one checked of each tenant (all of them after a reset of _checked)."""
        checked, failures = 0, []
        for tenant in tenants:
            result = await check_checkpoints(engine, tenant, witness, self._checked.get(tenant, 0))
            checked += result.count
            failures += result.failures
            self._checked[tenant] = max(result.last_seq, self._checked.get(tenant, 0))
        return checked, failures


def _views(report: VerifyReport) -> list[FailureView]:
    return [FailureView(f.chain, f.position, f.kind, f.detail) for f in report.failures]


def _disagreements(scrub: _Cursor, head: _Cursor) -> list[FailureView]:
    """Chains whose state where the slices met the head differs from the head walk's: history rewritten behind it."""
    out = []
    for chain in sorted(scrub.chains.keys() | head.chains.keys()):
        s, h = scrub.chains.get(chain), head.chains.get(chain)
        if (s is not None and s.failed) or (h is not None and h.failed):
            continue
        if s is None or h is None or (s.seq, s.hash, s.position) != (h.seq, h.hash, h.position):
            at = max(x.position for x in (s, h) if x is not None)
            out.append(FailureView(chain, at, "modified", "the chain differs from what earlier passes verified"))
    return out


def _add(total: VerifyReport, part: VerifyReport) -> None:
    """Fold one chunk's report into the walk's: its chain states, with the counts added up."""
    for chain, state in part.chains.items():
        before = total.chains.get(chain)
        counted = replace(state)
        if before is not None:
            counted.records += before.records
            counted.legacy += before.legacy
        total.chains[chain] = counted
    total.failures += part.failures
    total.last_position, total.reached_end = part.last_position, part.reached_end


_watches: weakref.WeakKeyDictionary[Engine, ChainWatch] = weakref.WeakKeyDictionary()


def watch_of(engine: Engine) -> ChainWatch:
    """The engine's watch: the scheduler's passes in one process share what was verified."""
    watch = _watches.get(engine)
    if watch is None:
        watch = _watches[engine] = ChainWatch()
    return watch
