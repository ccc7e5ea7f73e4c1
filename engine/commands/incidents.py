"""Incidents: opened by detection, policy and the saga; listed for agents and replayed for timelines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.incident import fold_incident
from lockzero.engine.domain.clock import parse_iso
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.queries.paging import decode_cursor, encode_cursor, page_limit
from lockzero.engine.saga.notify import notify
from lockzero.engine.security.crypto import new_id
from lockzero.eventstore import NO_STREAM, ConcurrencyError

KINDS = ("leaked_credential", "overdue_rotation", "policy_violation", "usage_anomaly", "rotation_failed")
SEVERITIES = ("low", "medium", "high", "critical")


class IncidentView(msgspec.Struct, frozen=True):
    incident_id: str
    kind: str
    severity: str
    secret_id: str | None
    opened_at: str
    status: str
    summary: str
    #: How far remediation got while not resolved (e.g. "mitigated: rotated to v3; 1 dependent behind").
    progress: str | None = None


class IncidentPage(msgspec.Struct, frozen=True):
    incidents: list[IncidentView]
    next_cursor: str | None


async def open_incident(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    *,
    kind: ev.IncidentKind,
    severity: ev.Severity,
    secret_id: str | None,
    summary: str,
    incident_id: str | None = None,
) -> str:
    """Open an incident. With ``incident_id`` given (derived from what caused it) opening is idempotent: a
    repeat after a crash finds the incident already there and neither opens nor notifies again."""
    given = incident_id is not None
    incident_id = incident_id or new_id("inc")
    event = ev.IncidentOpened(
        at=engine.clock.now(),
        tenant=tenant,
        incident_id=incident_id,
        kind=kind,
        severity=severity,
        secret_id=secret_id,
        summary=summary,
    )
    try:
        await engine.append(naming.incident_stream(tenant, incident_id), [event], actor, NO_STREAM)
    except ConcurrencyError:
        if not given:
            raise
        return incident_id
    if secret_id is not None:
        await notify(
            engine,
            tenant,
            secret_id,
            f"incident.{kind}",
            f"{severity} {kind.replace('_', ' ')} on {secret_id}: {summary}",
            {"incident_id": incident_id, "secret_id": secret_id, "kind": kind, "severity": severity},
        )
    return incident_id


async def active_incidents(
    engine: Engine,
    tenant: str,
    *,
    kind: str | None = None,
    severity: str | None = None,
    secret_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    visible: tuple[str, ...] = (),
) -> IncidentPage:
    """Open and acknowledged incidents, newest first. ``visible`` (LIKE patterns from a key's scopes)
    hides incidents of secrets outside them."""
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"kind must be one of: {', '.join(KINDS)}")
    if severity is not None and severity not in SEVERITIES:
        raise InvalidInput(f"severity must be one of: {', '.join(SEVERITIES)}")
    limit = page_limit(limit)
    where: list[str] = ["tenant = ?", "status <> 'resolved'"]
    params: list[object] = [tenant]
    for column, value in (("kind", kind), ("severity", severity), ("secret_id", secret_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if visible:
        where.append("(" + " OR ".join(["secret_id LIKE ? ESCAPE '\\'"] * len(visible)) + ")")
        params.extend(visible)
    if cursor is not None:
        opened_at, incident_id = decode_cursor(cursor, 2, (str, str))
        where.append("(opened_at < ? OR (opened_at = ? AND incident_id < ?))")
        params.extend([opened_at, opened_at, incident_id])
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT incident_id, kind, severity, secret_id, opened_at, status, summary, progress FROM rm_incidents"
            f" WHERE {' AND '.join(where)} ORDER BY opened_at DESC, incident_id DESC LIMIT ?",
            (*params, limit + 1),
        )
    items = [_view(r) for r in rows[:limit]]
    last: Any = rows[limit - 1] if len(rows) > limit else None
    return IncidentPage(items, encode_cursor([last[4], last[0]]) if last else None)


def _view(row: tuple[Any, ...]) -> IncidentView:
    incident_id, kind, severity, secret_id, opened_at, status, summary, progress = row
    opened = parse_iso(opened_at).isoformat()
    return IncidentView(incident_id, kind, severity, secret_id, opened, status, summary, progress)


async def resolve_for_secret(
    engine: Engine,
    tenant: str,
    secret_id: str,
    kinds: tuple[ev.IncidentKind, ...],
    *,
    resolution: str,
    ref_kind: str,
    ref_id: str,
    actor: ev.EventMeta,
) -> list[str]:
    """Resolve the secret's open incidents of these kinds, linking what resolved them."""
    marks = ", ".join("?" * len(kinds))
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT incident_id FROM rm_incidents WHERE tenant = ? AND secret_id = ? AND status <> 'resolved'"
            f" AND kind IN ({marks})",
            (tenant, secret_id, *kinds),
        )
    ids = [str(r[0]) for r in rows]
    await resolve_incidents(engine, tenant, ids, resolution=resolution, ref_kind=ref_kind, ref_id=ref_id, actor=actor)
    return ids


async def resolve_incidents(
    engine: Engine,
    tenant: str,
    incident_ids: list[str],
    *,
    resolution: str,
    ref_kind: str,
    ref_id: str,
    actor: ev.EventMeta,
) -> None:
    """Resolve these incidents, each linked to what resolved it. One resolved meanwhile (by hand, or by the saga
    and a verify_remediation settling the same rotation at once) is left as it is: a resolution is never
    overwritten, and the timeline shows it once."""
    for incident_id in incident_ids:
        stream = naming.incident_stream(tenant, incident_id)
        while True:
            history, version = await engine.load(stream)
            incident = fold_incident(history)
            if incident is None or incident.status == "resolved":
                break
            now = engine.clock.now()
            events: list[ev.Event] = [
                ev.IncidentLinked(at=now, tenant=tenant, incident_id=incident_id, ref_kind=ref_kind, ref_id=ref_id),
                ev.IncidentResolved(at=now, tenant=tenant, incident_id=incident_id, resolution=resolution),
            ]
            try:
                await engine.append(stream, events, actor, version)
                break
            except ConcurrencyError:
                continue  # it changed since the read (resolved, acknowledged, linked): look again


async def open_incident_ids(
    engine: Engine, tenant: str, secret_id: str, kinds: tuple[ev.IncidentKind, ...]
) -> list[tuple[str, str | None, str, datetime]]:
    """The secret's unresolved incidents of these kinds (oldest first): id, recorded progress, kind, opened at."""
    marks = ", ".join("?" * len(kinds))
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT incident_id, progress, kind, opened_at FROM rm_incidents WHERE tenant = ? AND secret_id = ?"
            f" AND status <> 'resolved' AND kind IN ({marks}) ORDER BY opened_at",
            (tenant, secret_id, *kinds),
        )
    return [(str(r[0]), r[1], str(r[2]), parse_iso(str(r[3]))) for r in rows]


async def mark_mitigated(
    engine: Engine, tenant: str, incident_id: str, progress: str, *, ref_kind: str, ref_id: str, actor: ev.EventMeta
) -> None:
    now = engine.clock.now()
    events: list[ev.Event] = [
        ev.IncidentLinked(at=now, tenant=tenant, incident_id=incident_id, ref_kind=ref_kind, ref_id=ref_id),
        ev.IncidentMitigated(at=now, tenant=tenant, incident_id=incident_id, progress=progress[:300]),
    ]
    await engine.append(naming.incident_stream(tenant, incident_id), events, actor)


class IncidentDetail(msgspec.Struct, frozen=True):
    incident_id: str
    kind: str
    severity: str
    secret_id: str | None
    status: str
    summary: str
    opened_at: str
    progress: str | None
    resolved_at: str | None
    resolution: str | None
    #: Who resolved it (the actor of the resolution: a person, an operator, or the saga).
    resolved_by: str | None
    #: What it is tied to: ("rotation", rot_…), ("detection", …).
    links: list[tuple[str, str]]


async def incident_detail(engine: Engine, tenant: str, incident_id: str) -> IncidentDetail:
    events, metas, _ = await engine.load_with_meta(naming.incident_stream(tenant, incident_id))
    incident = fold_incident(events)
    if incident is None:
        raise NotFound(f"no incident {incident_id!r} in tenant {tenant!r}")
    resolver = next(
        (
            f"{m.actor_type}:{m.actor_id}"
            for e, m in zip(events, metas, strict=True)
            if isinstance(e, ev.IncidentResolved)
        ),
        None,
    )
    return IncidentDetail(
        incident.incident_id,
        incident.kind,
        incident.severity,
        incident.secret_id,
        incident.status,
        incident.summary,
        incident.opened_at.isoformat(),
        incident.progress,
        incident.resolved_at.isoformat() if incident.resolved_at else None,
        incident.resolution,
        resolver,
        [(kind, ref) for kind, ref in incident.links],
    )


async def resolve_incident(
    engine: Engine, tenant: str, incident_id: str, actor: ev.EventMeta, note: str
) -> IncidentDetail:
    """Resolve by hand: the note says why, the event's actor says who. Once only; a second resolve is a
    conflict, so a resolution is never overwritten."""
    note = note.strip()
    if not note:
        raise InvalidInput("say why the incident is resolved (the note goes to its timeline and the audit log)")
    if len(note) > 500:
        raise InvalidInput("the note is longer than 500 characters")
    stream = naming.incident_stream(tenant, incident_id)
    events, version = await engine.load(stream)
    incident = fold_incident(events)
    if incident is None:
        raise NotFound(f"no incident {incident_id!r} in tenant {tenant!r}")
    if incident.status == "resolved":
        raise Conflict(f"incident {incident_id} is already resolved: {incident.resolution}")
    resolved = ev.IncidentResolved(at=engine.clock.now(), tenant=tenant, incident_id=incident_id, resolution=note)
    try:
        await engine.append(stream, [resolved], actor, version)
    except ConcurrencyError:
        raise Conflict(f"incident {incident_id} changed while resolving it; look at it again") from None
    return await incident_detail(engine, tenant, incident_id)
