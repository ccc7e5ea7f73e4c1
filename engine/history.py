"""Rotation history of a secret, folded from its stream (rotations, rollbacks, revocations)."""

from __future__ import annotations

import msgspec

from engine import naming
from engine.aggregates.secret import fold_secret
from engine.app import Engine
from engine.errors import NotFound
from engine.paging import decode_cursor, encode_cursor, page_limit


class StepRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    step: str
    status: str
    at: str
    error: str | None = None


class RotationRecord(msgspec.Struct, frozen=True):
    rotation_id: str
    kind: str
    requested_at: str
    completed_at: str | None
    actor_id: str
    actor_type: str
    reason: str
    outcome: str
    from_version: str | None
    to_version: str | None
    steps: list[StepRecord]


class RotationHistory(msgspec.Struct, frozen=True):
    secret_id: str
    rotations: list[RotationRecord]
    next_cursor: str | None


async def rotation_history(
    engine: Engine, tenant: str, secret_id: str, *, limit: int | None = None, cursor: str | None = None
) -> RotationHistory:
    """Newest first. The saga's events add records here; a secret never rotated has none."""
    n = page_limit(limit)
    events, _ = await engine.load(naming.secret_stream(tenant, naming.secret_id(secret_id)))
    if fold_secret(events) is None:
        raise NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")
    records: list[RotationRecord] = []  # filled by the saga's rotation events
    start = 0
    if cursor is not None:
        (start,) = decode_cursor(cursor, 1)
        start = int(start)
    page = records[start : start + n]
    more = start + n < len(records)
    return RotationHistory(secret_id, page, encode_cursor([start + n]) if more else None)
