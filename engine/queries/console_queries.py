"""Read-model queries the console's pages need and no MCP tool answers (whole-tenant views for people).

Every query takes the tenant and filters on it in SQL: a signed-in operator's tenant is the only one asked for.
"""

from __future__ import annotations

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain.clock import iso

#: Enough for a page; a tenant with more sees the newest (the filter narrows the list).
PAGE_ROWS = 200


class RotationRow(msgspec.Struct, frozen=True):
    rotation_id: str
    secret_id: str
    kind: str
    status: str
    requested_at: str
    actor_id: str
    actor_type: str
    reason: str


class IncidentRow(msgspec.Struct, frozen=True):
    incident_id: str
    kind: str
    severity: str
    secret_id: str | None
    status: str
    opened_at: str
    summary: str


class SecretRow(msgspec.Struct, frozen=True):
    secret_id: str
    provider: str
    environment: str
    labels: dict[str, str]
    status: str
    current_version: int | None
    due_at: str | None
    overdue: bool


class DependentRow(msgspec.Struct, frozen=True):
    service: str
    environment: str
    delivery: str
    adopted_version: int | None
    last_seen_at: str | None


class Overview(msgspec.Struct, frozen=True):
    secrets: int
    overdue: int
    open_incidents_by_kind: dict[str, int]
    in_flight: list[RotationRow]
    pending_approvals: int


_ROTATION_COLUMNS = "rotation_id, secret_id, kind, status, requested_at, actor_id, actor_type, reason"


def _rotation(row: tuple[object, ...]) -> RotationRow:
    return RotationRow(*(str(c) for c in row))


async def in_flight(engine: Engine, tenant: str, *, pending_only: bool = False) -> list[RotationRow]:
    status = " AND status = 'pending_approval'" if pending_only else ""
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT {_ROTATION_COLUMNS} FROM rm_rotations WHERE tenant = ? AND finished_at IS NULL{status}"
            " ORDER BY requested_at DESC LIMIT ?",
            (tenant, PAGE_ROWS),
        )
    return [_rotation(r) for r in rows]


async def overview(engine: Engine, tenant: str) -> Overview:
    now = iso(engine.clock.now())
    async with engine.store.reader() as tx:
        counts = await tx.fetchone(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN due_at IS NOT NULL AND due_at <= ? THEN 1 ELSE 0 END), 0)"
            " FROM rm_secrets WHERE tenant = ? AND status <> 'archived'",
            (now, tenant),
        )
        kinds = await tx.fetchall(
            "SELECT kind, COUNT(*) FROM rm_incidents WHERE tenant = ? AND status <> 'resolved' GROUP BY kind"
            " ORDER BY kind",
            (tenant,),
        )
    flying = await in_flight(engine, tenant)
    return Overview(
        secrets=int(counts[0]) if counts else 0,
        overdue=int(counts[1]) if counts else 0,
        open_incidents_by_kind={str(k): int(n) for k, n in kinds},
        in_flight=flying,
        pending_approvals=sum(1 for r in flying if r.status == "pending_approval"),
    )


async def incidents(engine: Engine, tenant: str) -> list[IncidentRow]:
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT incident_id, kind, severity, secret_id, status, opened_at, summary FROM rm_incidents"
            " WHERE tenant = ? ORDER BY (status = 'resolved'), opened_at DESC LIMIT ?",
            (tenant, PAGE_ROWS),
        )
    return [
        IncidentRow(str(r[0]), str(r[1]), str(r[2]), None if r[3] is None else str(r[3]), *(str(c) for c in r[4:]))
        for r in rows
    ]


async def secrets(engine: Engine, tenant: str, contains: str = "") -> list[SecretRow]:
    now = iso(engine.clock.now())
    # The filter is a substring of the id, matched by the database as a literal (LIKE wildcards escaped).
    pattern = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT secret_id, provider, environment, labels, status, current_version, due_at FROM rm_secrets"
            " WHERE tenant = ? AND secret_id LIKE ? ESCAPE '\\' ORDER BY secret_id LIMIT ?",
            (tenant, pattern, PAGE_ROWS),
        )
    return [
        SecretRow(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            msgspec.json.decode(str(r[3]), type=dict[str, str]),
            str(r[4]),
            None if r[5] is None else int(r[5]),
            None if r[6] is None else str(r[6]),
            r[6] is not None and str(r[6]) <= now,
        )
        for r in rows
    ]


async def dependents(engine: Engine, tenant: str, secret_id: str) -> list[DependentRow]:
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT service, environment, delivery, adopted_version, last_seen_at FROM rm_dependents"
            " WHERE tenant = ? AND secret_id = ? ORDER BY service, environment",
            (tenant, secret_id),
        )
    return [
        DependentRow(str(r[0]), str(r[1]), str(r[2]), None if r[3] is None else int(r[3]), r[4] and str(r[4]))
        for r in rows
    ]
