"""The scheduler's audit-chain check: what each pass verifies, kept between the passes of one process.

Walking every chain from the first record at every pass costs time in proportion to the whole history
(about 20 µs a record: a minute a pass at three million records, every 30 s, in the serving process).
So after a first full walk a pass verifies:

- every record appended since the last pass, from the chain states that pass ended on (kept in memory, not
  read back: a rewrite of earlier records that reaches a chain head no longer links to them, and shows at once);
- the next slice of the older history (``scrub_records`` records), resuming where the last slice stopped and
  starting over from the first record once it reaches the end, so an edit of an old record is found within
  one round of slices;
- the checkpoints signed since the last pass, and all of them again each time the slices start over.

After a failure the next pass walks everything again, so a broken chain is reported at every pass (the
scheduler opens its incident once).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.audit.chain import (
    CheckpointResult,
    FailureView,
    Verdict,
    Witness,
    check_checkpoints,
    checkpoint_all,
    signed_tenants,
    verdict,
)
from lockzero.eventstore.chain import ChainState, VerifyReport, verify_chain

#: Older records re-verified per pass: about 0.4 s of CPU at 20 µs a record.
SCRUB_RECORDS = 20_000


@dataclass
class _Cursor:
    """Where a walk stopped: the last position it verified and the chain states there."""

    position: int = 0
    chains: dict[str, ChainState] = field(default_factory=dict)

    @classmethod
    def after(cls, report: VerifyReport) -> _Cursor:
        return cls(report.last_position, dict(report.chains))


class ChainWatch:
    def __init__(self, scrub_records: int = SCRUB_RECORDS) -> None:
        self.scrub_records = scrub_records
        #: The end of the newest verified record; None until a full walk passed (or after a failure).
        self._head: _Cursor | None = None
        self._scrub = _Cursor()
        #: Per tenant, the last checkpoint seq checked.
        self._checked: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def run(self, engine: Engine, witness: Witness | None) -> Verdict:
        async with self._lock:
            if self._head is None:
                return await self._full(engine, witness)
            return await self._since_last(engine, witness, self._head)

    async def _full(self, engine: Engine, witness: Witness | None) -> Verdict:
        report, tenants = await self._walk(engine, 0, None, None)
        checked, failures = await self._checkpoints(engine, witness, tenants, {})
        result = verdict(report, checked, failures)
        if result.ok:
            self._head, self._scrub = _Cursor.after(report), _Cursor()
        return result

    async def _since_last(self, engine: Engine, witness: Witness | None, head: _Cursor) -> Verdict:
        report, tenants = await self._walk(engine, head.position + 1, head.chains, None)
        scrub = self._scrub
        old, _ = await self._walk(engine, scrub.position + 1, scrub.chains, self.scrub_records)
        # A round of slices that reached the end checks every checkpoint again, as a full walk does.
        after = {} if old.reached_end else self._checked
        checked, failures = await self._checkpoints(engine, witness, tenants, after)
        failures += [FailureView(f.chain, f.position, f.kind, f.detail) for f in old.failures]
        result = msgspec.structs.replace(verdict(report, checked, failures), records=report.records + old.records)
        if not result.ok:
            self._head, self._scrub, self._checked = None, _Cursor(), {}
            return result
        self._head = _Cursor.after(report)
        self._scrub = _Cursor() if old.reached_end else _Cursor.after(old)
        return result

    @staticmethod
    async def _walk(
        engine: Engine, since: int, anchors: dict[str, ChainState] | None, limit: int | None
    ) -> tuple[VerifyReport, list[str]]:
        async with engine.store.snapshot() as tx:
            report = await verify_chain(tx, since=since, anchors=anchors, limit=limit)
            return report, await signed_tenants(tx, report)

    async def _checkpoints(
        self, engine: Engine, witness: Witness | None, tenants: list[str], after: dict[str, int]
    ) -> tuple[int, list[FailureView]]:
        checked, failures = 0, []
        for tenant in tenants:
            result = await check_checkpoints(engine, tenant, witness, after.get(tenant, 0))
            checked += result.count
            failures += result.failures
            self._checked[tenant] = result.last_seq
        return checked, failures


_watches: weakref.WeakKeyDictionary[Engine, ChainWatch] = weakref.WeakKeyDictionary()


def watch_of(engine: Engine) -> ChainWatch:
    """The engine's watch: the scheduler's passes in one process share what was verified."""
    watch = _watches.get(engine)
    if watch is None:
        watch = _watches[engine] = ChainWatch()
    return watch


async def audit_pass(engine: Engine, witness: Witness | None) -> tuple[list[CheckpointResult], Verdict]:
    """The scheduler's step: checkpoint every tenant's chain head (pushing to the witness), then verify."""
    results = await checkpoint_all(engine, witness)
    return results, await watch_of(engine).run(engine, witness)
