from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import msgspec

from lockzero.engine.domain.events import (
    AnyEvent,
    IncidentAcknowledged,
    IncidentKind,
    IncidentLinked,
    IncidentMitigated,
    IncidentOpened,
    IncidentResolved,
    Severity,
)

IncidentStatus = Literal["open", "acknowledged", "mitigated", "resolved"]


class Incident(msgspec.Struct, frozen=True):
    tenant: str
    incident_id: str
    kind: IncidentKind
    severity: Severity
    secret_id: str | None
    summary: str
    opened_at: datetime
    status: IncidentStatus = "open"
    links: tuple[tuple[str, str], ...] = ()
    resolved_at: datetime | None = None
    resolution: str | None = None
    progress: str | None = None


def apply_incident(state: Incident | None, event: AnyEvent) -> Incident | None:
    if isinstance(event, IncidentOpened):
        return Incident(
            event.tenant, event.incident_id, event.kind, event.severity, event.secret_id, event.summary, event.at
        )
    if state is None:
        return None
    replace = msgspec.structs.replace
    match event:
        case IncidentLinked():
            return replace(state, links=(*state.links, (event.ref_kind, event.ref_id)))
        case IncidentAcknowledged() if state.status == "open":
            return replace(state, status="acknowledged")
        case IncidentMitigated() if state.status != "resolved":
            return replace(state, status="mitigated", progress=event.progress)
        case IncidentResolved():
            return replace(state, status="resolved", resolved_at=event.at, resolution=event.resolution)
    return state


def fold_incident(events: Iterable[AnyEvent]) -> Incident | None:
    state: Incident | None = None
    for event in events:
        state = apply_incident(state, event)
    return state
