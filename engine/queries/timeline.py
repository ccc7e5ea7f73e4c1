"""An incident's timeline: every event tied to it, across streams, in order, with actors and durations.

Tied to an incident: its own stream; the secret's stream (saga steps, approvals, versions) and the
dependents' adoptions from the moment it opened until it was resolved; and the audit records of calls
on that secret in the same window (detections, rotate/verify calls, denials)."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.incident import fold_incident
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.security.outbound import redact_url, redact_urls_in

#: Calls made just before the incident opened (the detection that opened it) belong to it too.
_LEAD = timedelta(seconds=5)


#: Read calls an agent repeats while it waits: a run of the same one collapses into one entry with a count.
POLL_METHODS = frozenset(
    {
        "verify_remediation",
        "get_secret_metadata",
        "get_rotation_history",
        "get_active_incidents",
        "check_rotation_policy",
        "assess_blast_radius",
        "list_secrets",
        "get_audit_log",
        "ping",
        "tools/list",
    }
)


class TimelineEntry(msgspec.Struct, frozen=True):
    at: str
    offset_ms: float
    stream: str
    event: str
    actor_id: str
    actor_type: str
    summary: str
    #: How many identical polls this entry stands for (1 for everything else), and the offset of the last.
    count: int = 1
    last_offset_ms: float | None = None


class Timeline(msgspec.Struct, frozen=True):
    incident_id: str
    kind: str
    severity: str
    secret_id: str | None
    status: str
    opened_at: str
    resolved_at: str | None
    duration_ms: float | None
    entries: list[TimelineEntry]


def _describe(e: ev.AnyEvent) -> str:
    match e:
        case ev.IncidentOpened():
            return f"incident opened ({e.kind}, {e.severity}): {e.summary}"
        case ev.IncidentLinked():
            return f"linked {e.ref_kind} {e.ref_id}"
        case ev.IncidentResolved():
            return f"resolved: {e.resolution}"
        case ev.IncidentAcknowledged():
            return f"acknowledged by {e.by}"
        case ev.RotationRequested():
            return f"{e.kind} {e.rotation_id} requested: {e.reason}"
        case ev.RotationApproved():
            return f"{e.rotation_id} approved by {e.by}"
        case ev.RotationApprovalsMet():
            return f"{e.rotation_id} approvals met ({', '.join(e.approvers)})"
        case ev.SagaStepStarted():
            return f"{e.rotation_id} {e.step}{' (compensation)' if e.compensating else ''} started"
        case ev.SagaStepCompleted():
            return f"{e.rotation_id} {e.step}{' (compensation)' if e.compensating else ''} completed: {e.detail}"
        case ev.SagaStepFailed():
            return f"{e.rotation_id} {e.step}{' (compensation)' if e.compensating else ''} FAILED: {e.error}"
        case ev.RotationFinished():
            return f"{e.rotation_id} finished: {e.outcome}" + (f" ({e.reason})" if e.reason else "")
        case ev.SecretVersionCreated():
            return f"v{e.version} created ({e.origin})"
        case ev.SecretVersionActivated():
            return f"v{e.version} is current (was v{e.previous_version})"
        case ev.SecretVersionRetired():
            return f"v{e.version} retired (restorable until {e.restorable_until.isoformat()})"
        case ev.SecretVersionRestored():
            return f"v{e.version} restored"
        case ev.SecretRevoked():
            return f"revoked {', '.join(f'v{n}' for n in e.versions)}"
        case ev.SecretVersionDiscarded():
            return f"v{e.version} discarded (the rotation that created it was undone before it became current)"
        case ev.SecretVersionExpired():
            return f"v{e.version} can no longer be restored (grace period over)"
        case ev.SecretRegistered():
            return f"secret registered ({e.provider}, {e.environment})"
        case ev.SecretPolicyChanged():
            return "rotation policy changed"
        case ev.SecretLabelsChanged():
            return "labels changed: " + (", ".join(f"{k}={v}" for k, v in sorted(e.labels.items())) or "none")
        case ev.DependentAdded():
            return f"dependent {e.service} ({e.environment}) added, delivery by {e.delivery}"
        case ev.DependentRemoved():
            return f"dependent {e.dependent_id} removed"
        case ev.SecretVersionCompromised():
            return f"v{e.version} marked compromised (seen by {e.source})"
        case ev.SecretDeleted():
            return f"secret deleted, values destroyed: {e.reason}"
        case ev.IncidentMitigated():
            return e.progress
        case ev.UsageAnomalyObserved():
            version = f" v{e.version}" if e.version is not None else ""
            status = f" [{e.status}]" if e.status != "observed" else ""
            return f"evidence: {e.signal}{version}{status} via {e.source}: {e.detail}"
        case ev.DependentAdopted():
            return f"dependent {e.dependent_id} adopted v{e.version} via {e.via}"
        case ev.DeliveryFailed():
            return f"delivery of v{e.version} to {e.dependent_id} failed: {redact_urls_in(e.error)}"
        case ev.NotificationSent():
            return f"notified {redact_url(e.url)} ({e.topic}) → {e.status}"
        case ev.NotificationFailed():
            return f"notification to {redact_url(e.url)} ({e.topic}) failed: {redact_urls_in(e.error)}"
        case ev.AuditRecorded():
            detail = f" ({e.detail})" if e.detail else ""
            return f"call {e.method} → {e.outcome}{detail} [{e.duration_ms:.0f} ms]"
    # An event without its own sentence still reads as words: "secret.version_restored" → "secret version restored".
    return ev.type_name(e).replace(".", " ").replace("_", " ")


def _poll_key(event: ev.AnyEvent, meta: ev.EventMeta) -> tuple[str, str, str] | None:
    if isinstance(event, ev.AuditRecorded) and event.method in POLL_METHODS:
        return (event.method, meta.actor_id, event.outcome)
    return None


def collapse_polls(rows: list[tuple[datetime, ev.AnyEvent, ev.EventMeta]]) -> list[list[int]]:
    """Group row indexes: a repeated poll (same read call, caller and outcome) joins the first one of its run.
    The run ends when that caller makes any other call, so "polled 12 times, then rotated, then polled 3
    times" stays three lines; saga steps and other events in between do not end it."""
    groups: list[list[int]] = []
    open_runs: dict[tuple[str, str, str], list[int]] = {}
    for i, (_, event, meta) in enumerate(rows):
        key = _poll_key(event, meta)
        if isinstance(event, ev.AuditRecorded):
            # Any other call of this caller ends its runs.
            for other in [k for k in open_runs if k[1] == meta.actor_id and k != key]:
                del open_runs[other]
        if key is not None and key in open_runs:
            open_runs[key].append(i)
            continue
        group = [i]
        groups.append(group)
        if key is not None:
            open_runs[key] = group
    return groups


async def incident_timeline(engine: Engine, tenant: str, incident_id: str) -> Timeline:
    own = await engine.store.read_stream(naming.incident_stream(tenant, incident_id))
    incident = fold_incident(ev.decode(r.data) for r in own)
    if incident is None:
        raise NotFound(f"no incident {incident_id!r} in tenant {tenant!r}")
    start = incident.opened_at - _LEAD
    end = incident.resolved_at or engine.clock.now()
    streams = [naming.incident_stream(tenant, incident_id)]
    if incident.secret_id:
        streams += [
            naming.secret_stream(tenant, incident.secret_id),
            naming.adoption_stream(tenant, incident.secret_id),
            naming.audit_stream(tenant),
        ]
    rows: list[tuple[datetime, int, str, ev.AnyEvent, ev.EventMeta]] = []
    for stream in streams:
        for r in await engine.store.read_stream(stream):
            event = ev.decode(r.data)
            if stream == naming.audit_stream(tenant) and (
                not isinstance(event, ev.AuditRecorded) or event.secret_id != incident.secret_id
            ):
                continue
            # Only calls get the lead-in (the detection that opened it); other streams start at the opening.
            since = start if isinstance(event, ev.AuditRecorded) else incident.opened_at
            if stream != streams[0] and not since <= event.at <= end:
                continue
            rows.append((event.at, r.position, stream, event, ev.decode_meta(r.metadata)))
    rows.sort(key=lambda x: (x[0], x[1]))

    def offset(at: datetime) -> float:
        return round((at - incident.opened_at).total_seconds() * 1000, 1)

    entries = []
    for group in collapse_polls([(at, event, meta) for at, _, _, event, meta in rows]):
        at, _, stream, event, meta = rows[group[0]]
        last, _, _, last_event, _ = rows[group[-1]]
        # A run of polls reads as its last answer (e.g. the verify that finally passed).
        summary = _describe(last_event)
        if len(group) > 1:
            summary += f" ×{len(group)} over {(last - at).total_seconds():.1f} s"
        entries.append(
            TimelineEntry(
                at=at.isoformat(),
                offset_ms=offset(at),
                stream=stream.split("-", 1)[0],
                event=ev.type_name(event),
                actor_id=meta.actor_id,
                actor_type=meta.actor_type,
                summary=summary,
                count=len(group),
                last_offset_ms=offset(last) if len(group) > 1 else None,
            )
        )
    duration = (incident.resolved_at - incident.opened_at).total_seconds() * 1000 if incident.resolved_at else None
    return Timeline(
        incident_id=incident.incident_id,
        kind=incident.kind,
        severity=incident.severity,
        secret_id=incident.secret_id,
        status=incident.status,
        opened_at=incident.opened_at.isoformat(),
        resolved_at=incident.resolved_at.isoformat() if incident.resolved_at else None,
        duration_ms=round(duration, 1) if duration is not None else None,
        entries=entries,
    )
