"""Rotations across a tenant (the rm_rotations read model) and one rotation with its steps' durations."""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation, Secret
from lockzero.engine.domain.clock import parse_iso
from lockzero.engine.domain.errors import InvalidInput, NotFound
from lockzero.engine.domain.rotation_status import RotationStatus
from lockzero.engine.queries.paging import decode_cursor, encode_cursor, page_limit

#: What `--status` may ask for: the rotation statuses, plus "in_flight" for every unfinished one.
STATUSES = ("in_flight", *get_args(RotationStatus))


class RotationSummary(msgspec.Struct, frozen=True):
    rotation_id: str
    secret_id: str
    kind: str
    status: str
    requested_at: str
    finished_at: str | None
    from_version: str | None
    to_version: str | None
    actor_id: str
    actor_type: str
    reason: str


class RotationPage(msgspec.Struct, frozen=True):
    rotations: list[RotationSummary]
    next_cursor: str | None


class StepTiming(msgspec.Struct, frozen=True):
    step: str
    status: str
    started_at: str
    finished_at: str | None
    duration_ms: float | None
    detail: str | None = None


class RotationDetail(msgspec.Struct, frozen=True):
    rotation_id: str
    secret_id: str
    kind: str
    status: str
    reason: str
    actor_id: str
    actor_type: str
    requested_at: str
    finished_at: str | None
    from_version: str | None
    to_version: str | None
    required_approvals: int
    approvers: list[str]
    steps: list[StepTiming]


def _v(n: int | None) -> str | None:
    return None if n is None else f"v{n}"


def _summary(r: tuple[Any, ...]) -> RotationSummary:
    rid, sid, kind, status, requested, finished, frm, to, actor_id, actor_type, reason = r
    return RotationSummary(
        str(rid),
        str(sid),
        str(kind),
        str(status),
        parse_iso(str(requested)).isoformat(),
        parse_iso(str(finished)).isoformat() if finished else None,
        _v(frm),
        _v(to),
        str(actor_id),
        str(actor_type),
        str(reason),
    )


async def list_rotations(
    engine: Engine,
    tenant: str,
    *,
    secret_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> RotationPage:
    """Newest first, paged like every other list."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of: {', '.join(STATUSES)}")
    n = page_limit(limit)
    where, params = ["tenant = ?"], [tenant]
    if secret_id is not None:
        where.append("secret_id = ?")
        params.append(naming.secret_id(secret_id))
    if status == "in_flight":
        where.append("finished_at IS NULL")
    elif status is not None:
        where.append("status = ?")
        params.append(status)
    if cursor is not None:
        requested, rotation_id = decode_cursor(cursor, 2, (str, str))
        where.append("(requested_at < ? OR (requested_at = ? AND rotation_id < ?))")
        params.extend([requested, requested, rotation_id])
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT rotation_id, secret_id, kind, status, requested_at, finished_at, from_version, to_version,"
            f" actor_id, actor_type, reason FROM rm_rotations WHERE {' AND '.join(where)}"
            " ORDER BY requested_at DESC, rotation_id DESC LIMIT ?",
            (*params, n + 1),
        )
    more = len(rows) > n
    last = rows[n - 1] if more else None
    return RotationPage([_summary(r) for r in rows[:n]], encode_cursor([last[4], last[0]]) if last else None)


def _no_rotation(tenant: str, rotation_id: str) -> NotFound:
    return NotFound(f"no rotation {rotation_id!r} in tenant {tenant!r}")


async def _secret_id_of(engine: Engine, tenant: str, rotation_id: str) -> str | None:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT secret_id FROM rm_rotations WHERE tenant = ? AND rotation_id = ?", (tenant, rotation_id)
        )
    return None if row is None else str(row[0])


async def secret_of_rotation(engine: Engine, tenant: str, rotation_id: str) -> str:
    """The secret a rotation of this tenant is about; NotFound otherwise (another tenant's id included)."""
    secret_id = await _secret_id_of(engine, tenant, rotation_id)
    if secret_id is None:
        raise _no_rotation(tenant, rotation_id)
    return secret_id


def rotation_of(secret: Secret | None, tenant: str, rotation_id: str) -> Rotation:
    rotation = secret.rotation(rotation_id) if secret else None
    if rotation is None:
        raise _no_rotation(tenant, rotation_id)
    return rotation


async def load_rotation(engine: Engine, tenant: str, rotation_id: str) -> tuple[Secret, Rotation] | None:
    """The rotation as its secret's events tell it now, with that secret; None when the tenant has no such one."""
    secret_id = await _secret_id_of(engine, tenant, rotation_id)
    if secret_id is None:
        return None
    secret, _ = await engine.secrets.load(naming.secret_stream(tenant, secret_id))
    found = secret.rotation(rotation_id) if secret is not None else None
    return None if secret is None or found is None else (secret, found)


async def rotation_detail(engine: Engine, tenant: str, rotation_id: str) -> RotationDetail:
    """The rotation as its secret's events tell it, each saga step with how long it took."""
    loaded = await load_rotation(engine, tenant, rotation_id)
    if loaded is None:
        raise _no_rotation(tenant, rotation_id)
    secret, found = loaded
    steps = [
        StepTiming(
            f"{s.step} (compensation)" if s.compensating else s.step,
            s.status,
            s.started_at.isoformat(),
            s.finished_at.isoformat() if s.finished_at else None,
            round((s.finished_at - s.started_at).total_seconds() * 1000, 1) if s.finished_at else None,
            s.detail if s.status == "failed" else None,
        )
        for s in found.steps
    ]
    return RotationDetail(
        found.rotation_id,
        secret.secret_id,
        found.kind,
        found.status,
        found.reason,
        found.actor_id,
        found.actor_type,
        found.requested_at.isoformat(),
        found.finished_at.isoformat() if found.finished_at else None,
        _v(found.from_version),
        _v(found.to_version),
        found.required_approvals,
        list(found.approvers),
        steps,
    )
