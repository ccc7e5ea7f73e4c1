from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from engine.events import (
    AnyEvent,
    DeliveryKind,
    DependentAdded,
    DependentRemoved,
    Policy,
    SecretLabelsChanged,
    SecretPolicyChanged,
    SecretRegistered,
    SecretStatus,
    SecretVersionActivated,
    SecretVersionCreated,
)


class Version(msgspec.Struct, frozen=True):
    number: int
    origin: str
    created_at: datetime
    username: str | None = None
    activated_at: datetime | None = None


class Dependent(msgspec.Struct, frozen=True):
    dependent_id: str
    service: str
    environment: str
    delivery: DeliveryKind
    target: str | None
    added_at: datetime


class Secret(msgspec.Struct, frozen=True):
    tenant: str
    secret_id: str
    provider: str
    environment: str
    labels: dict[str, str]
    policy: Policy
    has_config: bool
    created_at: datetime
    status: SecretStatus = "active"
    versions: tuple[Version, ...] = ()
    current_version: int | None = None
    last_rotated_at: datetime | None = None
    dependents: tuple[Dependent, ...] = ()

    @property
    def latest_version(self) -> int:
        return self.versions[-1].number if self.versions else 0

    def version(self, number: int) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)


def apply_secret(state: Secret | None, event: AnyEvent) -> Secret | None:
    if isinstance(event, SecretRegistered):
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
    replace = msgspec.structs.replace
    match event:
        case SecretVersionCreated():
            v = Version(event.version, event.origin, event.at, event.username)
            return replace(state, versions=(*state.versions, v))
        case SecretVersionActivated():
            versions = tuple(
                replace(v, activated_at=event.at) if v.number == event.version else v for v in state.versions
            )
            # The first activation is registration, not a rotation.
            rotated = event.at if event.previous_version is not None else state.last_rotated_at
            return replace(state, versions=versions, current_version=event.version, last_rotated_at=rotated)
        case SecretLabelsChanged():
            return replace(state, labels=dict(event.labels))
        case SecretPolicyChanged():
            return replace(state, policy=event.policy)
        case DependentAdded():
            dep = Dependent(
                event.dependent_id, event.service, event.environment, event.delivery, event.target, event.at
            )
            return replace(state, dependents=(*state.dependents, dep))
        case DependentRemoved():
            return replace(state, dependents=tuple(d for d in state.dependents if d.dependent_id != event.dependent_id))
    return state


def fold_secret(events: Iterable[AnyEvent]) -> Secret | None:
    state: Secret | None = None
    for event in events:
        state = apply_secret(state, event)
    return state
