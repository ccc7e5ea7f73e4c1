"""Rotation history of a secret, folded from its stream (rotations, rollbacks, revocations)."""

from __future__ import annotations

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation
from lockzero.engine.domain.errors import InvalidInput, NotFound
from lockzero.engine.queries.paging import decode_cursor, encode_cursor, page_limit


class StepRecord(msgspec.Struct, frozen=True):
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


class VersionRecord(msgspec.Struct, frozen=True):
    version: str
    #: pending | current | retired | compromised | revoked | discarded
    state: str
    created_at: str
    #: The incident that saw its value, when compromised.
    compromised_by: str | None = None


class RotationHistory(msgspec.Struct, frozen=True):
    secret_id: str
    rotations: list[RotationRecord]
    next_cursor: str | None
    versions: list[VersionRecord] = []


def _v(n: int | None) -> str | None:
    return f"v{n}" if n is not None else None


def _record(r: Rotation) -> RotationRecord:
    steps = [
        StepRecord(
            step=f"{s.step} (compensation)" if s.compensating else s.step,
            status=s.status,
            at=(s.finished_at or s.started_at).isoformat(),
            error=s.detail if s.status == "failed" else None,
        )
        for s in r.steps
    ]
    return RotationRecord(
        rotation_id=r.rotation_id,
        kind=r.kind,
        requested_at=r.requested_at.isoformat(),
        completed_at=r.finished_at.isoformat() if r.finished_at else None,
        actor_id=r.actor_id,
        actor_type=r.actor_type,
        reason=r.reason,
        outcome=r.status,
        from_version=_v(r.from_version),
        to_version=_v(r.to_version),
        steps=steps,
    )


async def rotation_history(
    engine: Engine, tenant: str, secret_id: str, *, limit: int | None = None, cursor: str | None = None
) -> RotationHistory:
    """Newest first. The saga's events add records here; a secret never rotated has none."""
    n = page_limit(limit)
    secret, _ = await engine.secrets.load(naming.secret_stream(tenant, naming.secret_id(secret_id)))
    if secret is None:
        raise NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")
    records = [_record(r) for r in reversed(secret.rotations)]
    start = 0
    if cursor is not None:
        (position,) = decode_cursor(cursor, 1)
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < 10**9:
            raise InvalidInput("cursor is not one this server returned; start again without a cursor")
        start = position
    page = records[start : start + n]
    more = start + n < len(records)
    versions = [
        VersionRecord(f"v{v.number}", v.state, v.created_at.isoformat(), v.compromised_by) for v in secret.versions
    ]
    return RotationHistory(secret_id, page, encode_cursor([start + n]) if more else None, versions)
