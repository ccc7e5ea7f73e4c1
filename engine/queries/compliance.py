"""The compliance report of one tenant: each secret's rotation age against its policy, what is overdue, how much
of the estate has a policy, rotations and their outcomes, time to remediation, incidents and approvals.

Secrets, rotations and incidents come from the read models; approvals from the rotation events themselves
(rm_rotations keeps a rotation's status, not who approved it or when). Everything that happened is counted
within the window [since, until); the state of the secrets is as of ``until`` (the engine's clock).
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.errors import InvalidInput, NotFound

DAY_S = 86400.0
MAX_DAYS = 3660
#: Outcomes of finished rotations, then the states of unfinished ones (rm_rotations.status).
OUTCOMES = ("completed", "compensated", "failed", "cancelled", "in_progress", "compensating", "pending_approval")
_APPROVAL_TYPES = tuple(
    str(t.__struct_config__.tag)
    for t in (ev.RotationRequested, ev.RotationApproved, ev.RotationApprovalsMet, ev.RotationFinished)
)


class SecretCompliance(msgspec.Struct, frozen=True):
    secret_id: str
    provider: str
    environment: str
    status: str
    #: Days since the last rotation (else since registration), as of the report's end.
    age_days: float
    #: The policy's maximum age; None when the secret has no rotation policy.
    max_age_days: float | None
    due_at: str | None
    overdue: bool
    overdue_days: float | None
    last_rotated_at: str | None
    required_approvals: int
    auto_rotate: bool
    rotations_in_window: int
    failed_in_window: int


class Coverage(msgspec.Struct, frozen=True):
    secrets: int
    with_max_age: int
    with_approvals: int
    with_auto_rotate: int
    agent_rotation_blocked: int
    #: Share of secrets with a maximum age, 0-100 (100 when there are no secrets).
    percent_with_max_age: float


class Durations(msgspec.Struct, frozen=True):
    count: int
    mean_s: float | None
    median_s: float | None
    max_s: float | None


class RotationStats(msgspec.Struct, frozen=True):
    total: int
    by_outcome: dict[str, int]
    by_kind: dict[str, int]
    by_actor_type: dict[str, int]
    #: Completed rotations that were not cancelled, as a share of finished ones, 0-100 (None: none finished).
    success_percent: float | None


class IncidentStats(msgspec.Struct, frozen=True):
    opened: int
    resolved: int
    open_now: int
    opened_by_kind: dict[str, int]
    opened_by_severity: dict[str, int]
    #: Opened → resolved, for the incidents resolved within the window.
    time_to_resolve: Durations


class ApprovalStats(msgspec.Struct, frozen=True):
    rotations_needing_approval: int
    approvals_given: int
    approved: int
    denied: int
    pending: int
    approvers: list[str]
    #: Requested → enough approvals, for the rotations approved within the window.
    time_to_approval: Durations


class DayCount(msgspec.Struct, frozen=True):
    day: str
    completed: int
    failed: int
    other: int
    incidents_opened: int
    incidents_resolved: int


class ComplianceReport(msgspec.Struct, frozen=True):
    tenant: str
    generated_at: str
    since: str
    until: str
    secrets: list[SecretCompliance]
    overdue: list[str]
    coverage: Coverage
    rotations: RotationStats
    #: Requested → finished, for completed rotations that finished within the window (what
    #: lockzero_time_to_remediation_seconds measures).
    time_to_remediation: Durations
    incidents: IncidentStats
    approvals: ApprovalStats
    daily: list[DayCount]


def durations(seconds: list[float]) -> Durations:
    if not seconds:
        return Durations(0, None, None, None)
    return Durations(
        len(seconds),
        round(statistics.fmean(seconds), 3),
        round(statistics.median(seconds), 3),
        round(max(seconds), 3),
    )


def _between(start: str, end: str) -> float:
    return (parse_iso(end) - parse_iso(start)).total_seconds()


def _days(seconds: float) -> float:
    return round(seconds / DAY_S, 2)


async def compliance_report(engine: Engine, tenant: str, days: int = 30) -> ComplianceReport:
    naming.tenant_name(tenant)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"--days must be from 1 to {MAX_DAYS}")
    until = engine.clock.now()
    since = until - timedelta(days=days)
    lo, hi = iso(since), iso(until)
    async with engine.store.reader() as tx:
        if await tx.fetchone("SELECT 1 FROM rm_tenants WHERE tenant = ?", (tenant,)) is None:
            raise NotFound(f"no tenant {tenant!r}")
        secret_rows = await tx.fetchall(
            "SELECT secret_id, provider, environment, status, created_at, last_rotated_at, max_age_s, due_at, policy"
            " FROM rm_secrets WHERE tenant = ? ORDER BY secret_id",
            (tenant,),
        )
        rotation_rows = await tx.fetchall(
            "SELECT secret_id, kind, status, requested_at, finished_at, actor_type FROM rm_rotations"
            " WHERE tenant = ? AND requested_at >= ? AND requested_at < ?",
            (tenant, lo, hi),
        )
        finished_rows = await tx.fetchall(
            "SELECT status, requested_at, finished_at FROM rm_rotations"
            " WHERE tenant = ? AND finished_at >= ? AND finished_at < ?",
            (tenant, lo, hi),
        )
        incident_rows = await tx.fetchall(
            "SELECT kind, severity, status, opened_at, updated_at FROM rm_incidents WHERE tenant = ?", (tenant,)
        )
        # Every secret stream of the tenant (a prefix compared exactly: a range would depend on PG's collation).
        prefix = naming.secret_stream(tenant, "")
        approval_rows = await tx.fetchall(
            "SELECT data FROM lz_events WHERE type IN (?, ?, ?, ?)"
            f" AND substr(stream, 1, {len(prefix):d}) = ? ORDER BY position",
            (*_APPROVAL_TYPES, prefix),
        )

    per_secret = Counter(str(r[0]) for r in rotation_rows)
    failed_per_secret = Counter(str(r[0]) for r in rotation_rows if r[2] in ("failed", "compensated"))
    secrets = [_secret(row, until, per_secret, failed_per_secret) for row in secret_rows]
    live = [s for s in secrets if s.status != "revoked"]
    policies = [msgspec.json.decode(str(row[8]), type=ev.Policy) for row in secret_rows]
    coverage = Coverage(
        len(secrets),
        sum(s.max_age_days is not None for s in secrets),
        sum(p.required_approvals > 0 for p in policies),
        sum(p.auto_rotate for p in policies),
        sum(not p.allow_agent_rotation for p in policies),
        round(100.0 * sum(s.max_age_days is not None for s in secrets) / len(secrets), 1) if secrets else 100.0,
    )
    by_outcome = Counter({o: 0 for o in OUTCOMES})
    by_outcome.update(str(r[2]) for r in rotation_rows)
    finished = sum(by_outcome[o] for o in ("completed", "compensated", "failed", "cancelled"))
    rotations = RotationStats(
        len(rotation_rows),
        dict(by_outcome),
        dict(Counter(str(r[1]) for r in rotation_rows)),
        dict(Counter(str(r[5]) for r in rotation_rows)),
        round(100.0 * by_outcome["completed"] / finished, 1) if finished else None,
    )
    ttr = durations([_between(str(r[1]), str(r[2])) for r in finished_rows if r[0] == "completed"])
    opened = [r for r in incident_rows if lo <= str(r[3]) < hi]
    resolved = [r for r in incident_rows if r[2] == "resolved" and lo <= str(r[4]) < hi]
    incidents = IncidentStats(
        len(opened),
        len(resolved),
        sum(r[2] != "resolved" for r in incident_rows),
        dict(Counter(str(r[0]) for r in opened)),
        dict(Counter(str(r[1]) for r in opened)),
        durations([_between(str(r[3]), str(r[4])) for r in resolved]),
    )
    return ComplianceReport(
        tenant=tenant,
        generated_at=iso(until),
        since=lo,
        until=hi,
        secrets=secrets,
        overdue=[s.secret_id for s in live if s.overdue],
        coverage=coverage,
        rotations=rotations,
        time_to_remediation=ttr,
        incidents=incidents,
        approvals=_approvals([ev.decode(bytes(r[0])) for r in approval_rows], since, until),
        daily=_daily(since, days, rotation_rows, opened, resolved),
    )


def _secret(row: Any, now: datetime, rotations: Counter[str], failed: Counter[str]) -> SecretCompliance:
    secret_id, provider, environment, status, created_at, last_rotated_at, max_age_s, due_at, policy = row
    p = msgspec.json.decode(str(policy), type=ev.Policy)
    age_s = (now - parse_iso(str(last_rotated_at or created_at))).total_seconds()
    late_s = (now - parse_iso(str(due_at))).total_seconds() if due_at else None
    overdue = late_s is not None and late_s > 0 and status != "revoked"
    return SecretCompliance(
        secret_id=str(secret_id),
        provider=str(provider),
        environment=str(environment),
        status=str(status),
        age_days=_days(age_s),
        max_age_days=_days(float(max_age_s)) if max_age_s is not None else None,
        due_at=str(due_at) if due_at else None,
        overdue=overdue,
        overdue_days=_days(late_s) if overdue and late_s is not None else None,
        last_rotated_at=str(last_rotated_at) if last_rotated_at else None,
        required_approvals=p.required_approvals,
        auto_rotate=p.auto_rotate,
        rotations_in_window=rotations[str(secret_id)],
        failed_in_window=failed[str(secret_id)],
    )


def _approvals(events: list[ev.AnyEvent], since: datetime, until: datetime) -> ApprovalStats:
    requested: dict[str, datetime] = {}
    needing: set[str] = set()
    given = 0
    approvers: set[str] = set()
    met: dict[str, datetime] = {}
    denied: set[str] = set()
    ended: set[str] = set()
    for e in events:
        if isinstance(e, ev.RotationRequested):
            requested[e.rotation_id] = e.at
            if e.required_approvals and since <= e.at < until:
                needing.add(e.rotation_id)
        elif isinstance(e, ev.RotationApproved) and since <= e.at < until:
            given += 1
            approvers.add(e.by)
        elif isinstance(e, ev.RotationApprovalsMet) and since <= e.at < until:
            met[e.rotation_id] = e.at
        elif isinstance(e, ev.RotationFinished):
            ended.add(e.rotation_id)
            # A denial is the only way a rotation waiting for people ends cancelled (engine/commands/denial.py).
            if e.outcome == "cancelled" and e.reason.startswith("denied by ") and since <= e.at < until:
                denied.add(e.rotation_id)
    waits = [(at - requested[r]).total_seconds() for r, at in met.items() if r in requested]
    return ApprovalStats(
        rotations_needing_approval=len(needing),
        approvals_given=given,
        approved=len(met),
        denied=len(denied),
        pending=len({r for r in needing if r not in met and r not in ended}),
        approvers=sorted(approvers),
        time_to_approval=durations(waits),
    )


def _daily(since: datetime, days: int, rotations: list[Any], opened: list[Any], resolved: list[Any]) -> list[DayCount]:
    """One row per UTC day of the window (the last 90 at most: a chart, not a ledger)."""
    shown = min(days, 90)
    first = (since + timedelta(days=days - shown)).date()
    labels = [(first + timedelta(days=i)).isoformat() for i in range(shown + 1)]
    count: dict[str, Counter[str]] = {d: Counter() for d in labels}

    def add(at: Any, what: str) -> None:
        day = str(at)[:10]
        if day in count:
            count[day][what] += 1

    for r in rotations:
        outcome = str(r[2])
        add(
            r[3],
            outcome if outcome in ("completed",) else "failed" if outcome in ("failed", "compensated") else "other",
        )
    for r in opened:
        add(r[3], "opened")
    for r in resolved:
        add(r[4], "resolved")
    return [
        DayCount(d, c["completed"], c["failed"], c["other"], c["opened"], c["resolved"])
        for d, c in count.items()
        if d >= first.isoformat()
    ]
