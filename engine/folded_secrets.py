"""Secret streams folded once per process: a load reads only what was appended since the last one.

A secret's stream grows by about fifteen events per rotation and is read by every verify_remediation,
every saga step and every command on the secret; folding it from the start each time made those calls
slower with every rotation. Folded states are immutable, so a cached one is a pure function of a prefix of
the stream and is correct in any process: a load reads the events after the cached version and folds them
on. The event at the cached version is read again and compared by id, so a stream that is not the one that
was folded (a database restored from a backup) is folded from the start instead of trusted.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.secret import Secret, apply_secret
from lockzero.eventstore import EventStore, RecordedEvent

#: Secrets kept folded per process (least recently loaded dropped first): a few MB at most.
CAPACITY = 4096


@dataclass(frozen=True)
class _Folded:
    state: Secret | None
    version: int
    last_event_id: uuid.UUID


class FoldedSecrets:
    def __init__(self, store: EventStore, capacity: int = CAPACITY) -> None:
        self._store = store
        self._capacity = capacity
        self._folded: OrderedDict[str, _Folded] = OrderedDict()

    async def load(self, stream: str) -> tuple[Secret | None, int]:
        """The secret folded from ``stream`` and the stream version it was folded at (None, 0: no stream)."""
        known = self._folded.get(stream)
        if known is not None:
            recorded = await self._store.read_stream(stream, after_version=known.version - 1)
            if recorded and recorded[0].version == known.version and recorded[0].event_id == known.last_event_id:
                return self._keep(stream, _fold_on(known.state, recorded[1:]), recorded, known)
        recorded = await self._store.read_stream(stream)
        return self._keep(stream, _fold_on(None, recorded), recorded, None)

    def _keep(
        self, stream: str, state: Secret | None, recorded: list[RecordedEvent], known: _Folded | None
    ) -> tuple[Secret | None, int]:
        if not recorded:
            self._folded.pop(stream, None)
            return None, 0
        last = recorded[-1]
        if known is None or last.version != known.version:
            self._folded[stream] = _Folded(state, last.version, last.event_id)
        self._folded.move_to_end(stream)
        while len(self._folded) > self._capacity:
            self._folded.popitem(last=False)
        return state, last.version


def _fold_on(state: Secret | None, recorded: list[RecordedEvent]) -> Secret | None:
    for r in recorded:
        state = apply_secret(state, ev.decode(r.data), ev.decode_meta(r.metadata))
    return state
