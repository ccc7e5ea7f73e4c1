"""Read-model queries the console's pages need and no MCP tool answers (whole-tenant views for people).

Every query takes the tenant and filters on it in SQL: a signed-in operator's tenant is the only one asked for.
"""

from __future__ import annotations

import statistics
from datetime import timedelta

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.queries.rotations import load_rotation
from lockzero.engine.security.outbound import redact_url, redact_urls_in

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


class StepBar(msgspec.Struct, frozen=True):
    """One saga step of a rotation: when it started after the rotation's first step, and how long it took
    (None while it runs)."""

    step: str
    status: str
    offset_ms: float
    duration_ms: float | None


async def step_durations(engine: Engine, tenant: str, secret_id: str, limit: int = 20) -> dict[str, list[StepBar]]:
    """The steps of the secret's newest rotations, by rotation id, folded from its stream."""
    secret, _ = await engine.secrets.load(naming.secret_stream(tenant, naming.secret_id(secret_id)))
    if secret is None:
        return {}
    out: dict[str, list[StepBar]] = {}
    for r in list(reversed(secret.rotations))[:limit]:
        out[r.rotation_id] = _bars(r)
    return out


def _ms(delta: timedelta) -> float:
    return round(delta.total_seconds() * 1000, 1)


class Waiting(msgspec.Struct, frozen=True):
    """A dependent the rotation's shift step waits for: it does not hold the new version yet."""

    service: str
    environment: str
    delivery: str
    adopted_version: int | None


class RotationProgress(msgspec.Struct, frozen=True):
    rotation_id: str
    secret_id: str
    kind: str
    status: str
    reason: str
    actor_id: str
    actor_type: str
    requested_at: str
    finished_at: str | None
    from_version: int | None
    to_version: int | None
    required_approvals: int
    approvers: list[str]
    steps: list[StepBar]
    #: Filled while the new version is being delivered (shift started, not finished): who it waits for.
    waiting_for: list[Waiting]
    #: When shift stops waiting and retires the old version anyway.
    adoption_deadline_at: str | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


async def rotation_progress(engine: Engine, tenant: str, rotation_id: str) -> RotationProgress | None:
    """One rotation as its secret's events tell it now, with the dependents it waits for; None when the
    tenant has no such rotation."""
    loaded = await load_rotation(engine, tenant, rotation_id)
    if loaded is None:
        return None
    secret, r = loaded
    shift = r.last("shift")
    waiting: list[Waiting] = []
    deadline = None
    if shift is not None and shift.status == "started" and r.to_version is not None:
        deadline = iso(shift.started_at + timedelta(seconds=secret.policy.adoption_deadline_s))
        async with engine.store.reader() as tx:
            adopted = await tx.fetchall(
                "SELECT dependent_id, adopted_version FROM rm_dependents WHERE tenant = ? AND secret_id = ?",
                (tenant, secret.secret_id),
            )
        held = {str(d): None if v is None else int(v) for d, v in adopted}
        waiting = [
            Waiting(d.service, d.environment, d.delivery, held.get(d.dependent_id))
            for d in secret.dependents
            if held.get(d.dependent_id) != r.to_version
        ]
    return RotationProgress(
        rotation_id=r.rotation_id,
        secret_id=secret.secret_id,
        kind=r.kind,
        status=r.status,
        reason=r.reason,
        actor_id=r.actor_id,
        actor_type=r.actor_type,
        requested_at=iso(r.requested_at),
        finished_at=iso(r.finished_at) if r.finished_at else None,
        from_version=r.from_version,
        to_version=r.to_version,
        required_approvals=r.required_approvals,
        approvers=list(r.approvers),
        steps=_bars(r),
        waiting_for=waiting,
        adoption_deadline_at=deadline,
    )


def _bars(r: Rotation) -> list[StepBar]:
    # Offsets count from the first step, not the request: hours of waiting for approvals would squash the steps.
    start = r.steps[0].started_at if r.steps else r.requested_at
    return [
        StepBar(
            f"{s.step} (compensation)" if s.compensating else s.step,
            s.status,
            _ms(s.started_at - start),
            _ms(s.finished_at - s.started_at) if s.finished_at else None,
        )
        for s in r.steps
    ]


class RemediationDay(msgspec.Struct, frozen=True):
    """Incidents resolved on one UTC day and the median time from opening to resolution."""

    day: str
    resolved: int
    median_ms: float | None


class RotationAge(msgspec.Struct, frozen=True):
    secret_id: str
    age_days: float
    max_age_days: float | None
    overdue: bool


async def remediation_by_day(engine: Engine, tenant: str, days: int = 30) -> list[RemediationDay]:
    """The last ``days`` UTC days, oldest first, each with the incidents resolved that day."""
    now = engine.clock.now()
    first = (now - timedelta(days=days - 1)).date()
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT opened_at, updated_at FROM rm_incidents WHERE tenant = ? AND status = 'resolved'"
            " AND updated_at >= ?",
            (tenant, first.isoformat()),
        )
    by_day: dict[str, list[float]] = {(first + timedelta(days=i)).isoformat(): [] for i in range(days)}
    for opened, resolved in rows:
        done = parse_iso(str(resolved))
        took = (done - parse_iso(str(opened))).total_seconds() * 1000
        by_day.setdefault(done.date().isoformat(), []).append(max(took, 0.0))
    return [
        RemediationDay(day, len(took), round(statistics.median(took), 1) if took else None)
        for day, took in sorted(by_day.items())
        if day >= first.isoformat()
    ]


async def rotation_ages(engine: Engine, tenant: str, limit: int = 40) -> list[RotationAge]:
    """The secrets whose credential is oldest (since the last rotation, else since registration), oldest first."""
    now = engine.clock.now()
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT secret_id, COALESCE(last_rotated_at, created_at), max_age_s, due_at FROM rm_secrets"
            " WHERE tenant = ? AND status = 'active' ORDER BY COALESCE(last_rotated_at, created_at), secret_id"
            " LIMIT ?",
            (tenant, limit),
        )
    return [
        RotationAge(
            str(sid),
            round((now - parse_iso(str(since))).total_seconds() / 86400, 2),
            None if max_age is None else round(int(max_age) / 86400, 2),
            due is not None and parse_iso(str(due)) <= now,
        )
        for sid, since, max_age, due in rows
    ]


class PolicyRow(msgspec.Struct, frozen=True):
    secret_id: str
    policy: ev.Policy


class NotificationRow(msgspec.Struct, frozen=True):
    at: str
    secret_id: str
    #: Redacted when recorded (engine.security.outbound.redact_url); shown as recorded.
    url: str
    topic: str
    outcome: str


async def policies(engine: Engine, tenant: str) -> list[PolicyRow]:
    """Every active secret's policy as stored (notify URLs redacted)."""
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT secret_id, policy FROM rm_secrets WHERE tenant = ? AND status <> 'archived'"
            " ORDER BY secret_id LIMIT ?",
            (tenant, PAGE_ROWS),
        )
    return [PolicyRow(str(sid), msgspec.json.decode(str(p), type=ev.Policy)) for sid, p in rows]


async def notifications(engine: Engine, tenant: str, limit: int = 50) -> list[NotificationRow]:
    """The tenant's newest notification deliveries (recorded on its secrets' adoption streams)."""
    prefix = naming.adoption_stream(tenant, "")
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT data FROM lz_events WHERE type IN ('notification.sent', 'notification.failed')"
            " AND stream LIKE ? ESCAPE '\\' ORDER BY position DESC LIMIT ?",
            (pattern, limit),
        )
    out = []
    for (data,) in rows:
        e = ev.decode(bytes(data))
        # The stream name already says the tenant; the event's own field is checked too.
        if isinstance(e, ev.NotificationSent) and e.tenant == tenant:
            out.append(NotificationRow(iso(e.at), e.secret_id, redact_url(e.url), e.topic, f"HTTP {e.status}"))
        elif isinstance(e, ev.NotificationFailed) and e.tenant == tenant:
            out.append(
                NotificationRow(
                    iso(e.at), e.secret_id, redact_url(e.url), e.topic, f"failed: {redact_urls_in(e.error)}"
                )
            )
    return out


async def secret_of(engine: Engine, tenant: str, *, rotation_id: str = "", incident_id: str = "") -> str | None:
    """The secret a rotation or an incident is about (for the audit record of an action on it); None when the
    tenant has no such rotation or incident, or the incident names no secret."""
    table, column, value = (
        ("rm_rotations", "rotation_id", rotation_id) if rotation_id else ("rm_incidents", "incident_id", incident_id)
    )
    async with engine.store.reader() as tx:
        row = await tx.fetchone(f"SELECT secret_id FROM {table} WHERE tenant = ? AND {column} = ?", (tenant, value))
    return None if row is None or row[0] is None else str(row[0])
