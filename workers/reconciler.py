"""Finding sagas that stopped moving. The event store is the truth; Redis is only a trigger, so
whatever was lost there (a flushed queue, a worker killed holding a job) is found here again."""

from __future__ import annotations

from datetime import timedelta

from lockzero.engine.app import Engine
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.rotation_status import AWAITING_APPROVAL


async def stalled_rotations(engine: Engine, quiet_for_s: float) -> list[tuple[str, str, str]]:
    """(tenant, secret_id, rotation_id) of unfinished rotations with no event for ``quiet_for_s``."""
    threshold = iso(engine.clock.now() - timedelta(seconds=quiet_for_s))
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT tenant, secret_id, rotation_id FROM rm_rotations"
            " WHERE finished_at IS NULL AND status <> ? AND updated_at <= ?"
            " ORDER BY updated_at LIMIT 500",
            (AWAITING_APPROVAL, threshold),
        )
    return [(r[0], r[1], r[2]) for r in rows]
