"""Audit of refused calls that cannot become an amplifier.

Every refused call (bad key, foreign Origin, rate limit, malformed request, unknown method…) is in the
audit, but a flood of them must not turn into a flood of writes. Per source (tenant, actor, method,
reason, client address) the first ``individual`` refusals of a ``window_s`` window are recorded one
row each, as usual; the rest only bump a counter, and when the window ends one summary row says how
many there were, the first and last time, and the source. Rows per source are so bounded by
``individual + 1`` per window, whatever the request rate.

Refusals with no known tenant (an unknown bearer token, a foreign Origin without a valid key) go to
the reserved audit stream of ``SYSTEM_TENANT``, which no tenant name can collide with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from lockzero.engine.app import Engine
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.records import make_record
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.clock import iso

log = logging.getLogger("lockzero.audit")

#: Tenant names start with a letter or digit, so this one is never a real tenant's.
SYSTEM_TENANT = "_system"
SYSTEM_ACTOR = ev.EventMeta(actor_id="unauthenticated", actor_type="system")
#: When more sources than this are counting at once (e.g. many addresses), further ones share one
#: counter per tenant/method/reason: memory stays bounded and the count stays right.
MAX_SOURCES = 10_000


@dataclass
class _Window:
    started: float
    individual: int = 0
    suppressed: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None


#: tenant, actor_id, actor_type, method, outcome, reason, source
_SourceKey = tuple[str, str, str, str, str, str, str]


class AuditFloodGuard:
    def __init__(
        self,
        engine: Engine,
        batcher: AuditBatcher,
        *,
        window_s: float = 5.0,
        individual: int = 20,
        tick_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._batcher = batcher
        self._window_s = window_s
        self._individual = individual
        self._tick_s = tick_s
        self._windows: dict[_SourceKey, _Window] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._summaries: set[asyncio.Task[None]] = set()

    async def refused(
        self,
        tenant: str | None,
        actor: ev.EventMeta | None,
        method: str,
        outcome: str,
        *,
        reason: str,
        source: str,
        secret_id: str | None = None,
        detail: str = "",
    ) -> None:
        """Record one refused call: as its own row while the source is under the limit, else counted
        into the source's summary. ``detail`` must already be free of caller values."""
        tenant = tenant or SYSTEM_TENANT
        actor = actor or SYSTEM_ACTOR
        self._ensure_flusher()
        now = time.monotonic()
        skey: _SourceKey = (tenant, actor.actor_id, actor.actor_type, method, outcome, reason, source)
        window = self._windows.get(skey)
        if window is None:
            if len(self._windows) >= MAX_SOURCES:
                skey = (tenant, actor.actor_id, actor.actor_type, method, outcome, reason, "many sources")
                window = self._windows.get(skey)
            if window is None:
                window = self._windows[skey] = _Window(now)
        if window.individual < self._individual:
            window.individual += 1
            event = make_record(
                self._engine,
                tenant,
                actor,
                method,
                outcome,
                secret_id=secret_id,
                detail=f"{detail or reason} (from {source})",
            )
            await self._batcher.record(event, actor)
            return
        at = self._engine.clock.now()
        window.suppressed += 1
        window.first_at = window.first_at or at
        window.last_at = at

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._windows:
            await asyncio.sleep(self._tick_s)
            self._flush(time.monotonic() - self._window_s)

    def _flush(self, older_than: float) -> None:
        for skey in [k for k, w in self._windows.items() if w.started <= older_than]:
            window = self._windows.pop(skey)
            if window.suppressed:
                task = asyncio.create_task(self._write_summary(skey, window))
                self._summaries.add(task)
                task.add_done_callback(self._summaries.discard)

    async def _write_summary(self, skey: _SourceKey, window: _Window) -> None:
        tenant, actor_id, actor_type, method, outcome, reason, source = skey
        actor = ev.EventMeta(actor_id=actor_id, actor_type=actor_type)  # type: ignore[arg-type]
        assert window.first_at is not None and window.last_at is not None
        detail = (
            f"summary: count={window.suppressed} first={iso(window.first_at)} last={iso(window.last_at)}"
            f" source={source} reason={reason}"
        )
        event = make_record(self._engine, tenant, actor, method, outcome, detail=detail)
        try:
            await self._batcher.record(event, actor)
        except Exception as exc:  # nobody waits on a summary; say so in the log instead
            log.error(
                "audit summary of %d refused calls could not be written (%s)", window.suppressed, type(exc).__name__
            )

    async def close(self) -> None:
        """Write every open summary now (shutdown): counted refusals are not lost with the process."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._flush(float("inf"))
        if self._summaries:
            await asyncio.gather(*self._summaries, return_exceptions=True)
