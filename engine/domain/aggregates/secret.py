"""The Secret aggregate: registration, versions and their lifecycle, dependents, and its rotations
(each rotation's saga progress is folded from the same stream, so one stream version guards both)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import msgspec

from lockzero.engine.domain import events as ev
from lockzero.engine.domain.rotation_status import RotationStatus, status_after

VersionStatus = Literal["live", "current", "retired", "expired", "discarded", "revoked"]

replace = msgspec.structs.replace


class Version(msgspec.Struct, frozen=True):
    number: int
    origin: str
    created_at: datetime
    username: str | None = None
    status: VersionStatus = "live"
    activated_at: datetime | None = None
    restorable_until: datetime | None = None
    #: When it was last retired (its credential stopped being handed out and the provider removed or disabled it).
    retired_at: datetime | None = None
    #: Seen in a leak (detect_exposure, an incident): never restored without ``force``.
    compromised: bool = False
    compromised_by: str | None = None

    @property
    def state(self) -> str:
        """The state people and agents see: pending | current | retired | compromised | revoked | discarded."""
        if self.status in ("revoked", "discarded"):
            return self.status
        if self.compromised:
            return "compromised"
        if self.status == "live":
            return "pending"
        return "retired" if self.status == "expired" else self.status


class Dependent(msgspec.Struct, frozen=True):
    dependent_id: str
    service: str
    environment: str
    delivery: ev.DeliveryKind
    target: str | None
    added_at: datetime
    #: The sealed webhook URL (then ``target`` is its redacted form); None for older events and other kinds.
    target_sealed: str | None = None


class StepRecord(msgspec.Struct, frozen=True):
    step: ev.SagaStep
    compensating: bool
    status: Literal["started", "completed", "failed"]
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""
    delivered: int | None = None


class Rotation(msgspec.Struct, frozen=True):
    rotation_id: str
    kind: ev.RotationKind
    reason: str
    from_version: int | None
    to_version: int | None
    requested_at: datetime
    actor_id: str
    actor_type: str
    idempotency_key: str | None = None
    required_approvals: int = 0
    approvers: tuple[str, ...] = ()
    #: Keys of calls that joined this rotation while it was in flight (RotationJoined).
    joined_keys: tuple[str, ...] = ()
    approved: bool = True
    steps: tuple[StepRecord, ...] = ()
    outcome: Literal["completed", "compensated", "failed", "cancelled"] | None = None
    finished_at: datetime | None = None
    #: Set by every event that moves it (engine/domain/rotation_status.py), never computed here.
    status: RotationStatus = "in_progress"

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def compensating(self) -> bool:
        return any(s.status == "failed" and not s.compensating for s in self.steps)

    def answers(self, idempotency_key: str) -> bool:
        return self.idempotency_key == idempotency_key or idempotency_key in self.joined_keys

    def last(self, step: ev.SagaStep, compensating: bool = False) -> StepRecord | None:
        found = [s for s in self.steps if s.step == step and s.compensating == compensating]
        return found[-1] if found else None


class Secret(msgspec.Struct, frozen=True):
    tenant: str
    secret_id: str
    provider: str
    environment: str
    labels: dict[str, str]
    policy: ev.Policy
    has_config: bool
    created_at: datetime
    status: ev.SecretStatus = "active"
    versions: tuple[Version, ...] = ()
    current_version: int | None = None
    last_rotated_at: datetime | None = None
    dependents: tuple[Dependent, ...] = ()
    rotations: tuple[Rotation, ...] = ()

    @property
    def latest_version(self) -> int:
        return self.versions[-1].number if self.versions else 0

    def version(self, number: int | None) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)

    def rotation(self, rotation_id: str) -> Rotation | None:
        return next((r for r in self.rotations if r.rotation_id == rotation_id), None)

    @property
    def in_flight(self) -> Rotation | None:
        return next((r for r in reversed(self.rotations) if not r.finished), None)


def _set_version(state: Secret, number: int, **changes: object) -> tuple[Version, ...]:
    return tuple(replace(v, **changes) if v.number == number else v for v in state.versions)


def _update_rotation(state: Secret, rotation_id: str, change: object) -> tuple[Rotation, ...]:
    return tuple(change(r) if r.rotation_id == rotation_id else r for r in state.rotations)  # type: ignore[operator]


def apply_secret(state: Secret | None, event: ev.AnyEvent, meta: ev.EventMeta | None = None) -> Secret | None:
    state = _apply(state, event, meta)
    # A requested rotation gets its first status where it is created (in _apply); later events move it here.
    if state is None or not isinstance(event, ev.RotationApprovalsMet | ev.SagaStepFailed | ev.RotationFinished):
        return state
    became = status_after(event)
    if became is None:
        return state
    return replace(state, rotations=_update_rotation(state, event.rotation_id, lambda r: replace(r, status=became)))


def _apply(state: Secret | None, event: ev.AnyEvent, meta: ev.EventMeta | None) -> Secret | None:
    if isinstance(event, ev.SecretRegistered):
        return Secret(
            event.tenant,
            event.secret_id,
            event.provider,
            event.environment,
            dict(event.labels),
            event.policy,
            event.has_config,
            event.at,
        )
    if state is None:
        return None
    match event:
        case ev.SecretVersionCreated():
            v = Version(event.version, event.origin, event.at, event.username)
            return replace(state, versions=(*state.versions, v))
        case ev.SecretVersionActivated():
            versions = tuple(
                replace(v, status="current", activated_at=event.at)
                if v.number == event.version
                else (replace(v, status="live") if v.status == "current" else v)
                for v in state.versions
            )
            # The first activation is registration, not a rotation.
            rotated = event.at if event.previous_version is not None else state.last_rotated_at
            return replace(state, versions=versions, current_version=event.version, last_rotated_at=rotated)
        case ev.SecretVersionRetired():
            versions = _set_version(
                state, event.version, status="retired", restorable_until=event.restorable_until, retired_at=event.at
            )
            return replace(state, versions=versions)
        case ev.SecretVersionRestored():
            return replace(state, versions=_set_version(state, event.version, status="live", restorable_until=None))
        case ev.SecretVersionExpired():
            return replace(state, versions=_set_version(state, event.version, status="expired", restorable_until=None))
        case ev.SecretVersionDiscarded():
            return replace(state, versions=_set_version(state, event.version, status="discarded"))
        case ev.SecretVersionCompromised():
            versions = _set_version(state, event.version, compromised=True, compromised_by=event.incident_id)
            return replace(state, versions=versions)
        case ev.SecretDeleted():
            return None
        case ev.SecretRevoked():
            versions = tuple(replace(v, status="revoked") if v.number in event.versions else v for v in state.versions)
            return replace(state, versions=versions, status="revoked")
        case ev.SecretLabelsChanged():
            return replace(state, labels=dict(event.labels))
        case ev.SecretPolicyChanged():
            return replace(state, policy=event.policy)
        case ev.DependentAdded():
            dep = Dependent(
                event.dependent_id,
                event.service,
                event.environment,
                event.delivery,
                event.target,
                event.at,
                event.target_sealed,
            )
            return replace(state, dependents=(*state.dependents, dep))
        case ev.DependentRemoved():
            return replace(state, dependents=tuple(d for d in state.dependents if d.dependent_id != event.dependent_id))
        case ev.RotationRequested():
            rotation = Rotation(
                event.rotation_id,
                event.kind,
                event.reason,
                event.from_version,
                event.to_version,
                event.at,
                meta.actor_id if meta else "unknown",
                meta.actor_type if meta else "system",
                event.idempotency_key,
                required_approvals=event.required_approvals,
                approved=event.required_approvals == 0,
                status=status_after(event) or "in_progress",
            )
            return replace(state, rotations=(*state.rotations, rotation))
        case ev.RotationApproved():
            return replace(
                state,
                rotations=_update_rotation(
                    state,
                    event.rotation_id,
                    lambda r: r if event.by in r.approvers else replace(r, approvers=(*r.approvers, event.by)),
                ),
            )
        case ev.RotationJoined():
            return replace(
                state,
                rotations=_update_rotation(
                    state, event.rotation_id, lambda r: replace(r, joined_keys=(*r.joined_keys, event.idempotency_key))
                ),
            )
        case ev.RotationApprovalsMet():
            return replace(
                state, rotations=_update_rotation(state, event.rotation_id, lambda r: replace(r, approved=True))
            )
        case ev.SagaStepStarted():
            record = StepRecord(event.step, event.compensating, "started", event.at)
            return replace(
                state,
                rotations=_update_rotation(state, event.rotation_id, lambda r: replace(r, steps=(*r.steps, record))),
            )
        case ev.SagaStepCompleted() | ev.SagaStepFailed():
            status = "completed" if isinstance(event, ev.SagaStepCompleted) else "failed"
            detail = event.detail if isinstance(event, ev.SagaStepCompleted) else event.error

            def finish_step(r: Rotation) -> Rotation:
                steps = list(r.steps)
                for i in range(len(steps) - 1, -1, -1):
                    s = steps[i]
                    if s.step == event.step and s.compensating == event.compensating and s.status == "started":
                        delivered = event.delivered if isinstance(event, ev.SagaStepCompleted) else None
                        steps[i] = replace(s, status=status, finished_at=event.at, detail=detail, delivered=delivered)
                        break
                return replace(r, steps=tuple(steps))

            return replace(state, rotations=_update_rotation(state, event.rotation_id, finish_step))
        case ev.RotationFinished():
            return replace(
                state,
                rotations=_update_rotation(
                    state, event.rotation_id, lambda r: replace(r, outcome=event.outcome, finished_at=event.at)
                ),
            )
    return state


def fold_secret(events: Iterable[ev.AnyEvent], metas: Iterable[ev.EventMeta | None] | None = None) -> Secret | None:
    state: Secret | None = None
    meta_list = list(metas) if metas is not None else None
    for i, event in enumerate(events):
        state = apply_secret(state, event, meta_list[i] if meta_list is not None else None)
    return state


def is_deleted(events: Iterable[ev.AnyEvent]) -> bool:
    """The stream's last life ended in a tombstone (its id may be registered again)."""
    last = None
    for event in events:
        if isinstance(event, ev.SecretRegistered | ev.SecretDeleted):
            last = event
    return isinstance(last, ev.SecretDeleted)
