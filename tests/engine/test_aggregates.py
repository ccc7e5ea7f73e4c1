"""Aggregates folded from events (engine/aggregates/): pure functions, no database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.api_key import fold_api_key
from lockzero.engine.domain.aggregates.incident import fold_incident
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.domain.aggregates.tenant import fold_tenant
from tests.engine.support import T0


def at(minutes: int) -> object:
    return T0 + timedelta(minutes=minutes)


S = {"tenant": "acme", "secret_id": "prod/db"}

SECRET_HISTORY: list[ev.Event] = [
    ev.SecretRegistered(
        at=at(0),
        **S,
        provider="redis_acl",
        environment="prod",
        labels={"team": "core"},
        policy=ev.Policy(max_age_s=86400),
        has_config=True,
    ),
    ev.SecretVersionCreated(at=at(0), **S, version=1, origin="imported", username="app"),
    ev.SecretVersionActivated(at=at(0), **S, version=1, previous_version=None),
    ev.DependentAdded(at=at(1), **S, dependent_id="dep_a", service="api", environment="prod", delivery="pull"),
    ev.DependentAdded(
        at=at(2),
        **S,
        dependent_id="dep_b",
        service="hooks",
        environment="prod",
        delivery="webhook",
        target="https://h.example/x",
    ),
    ev.SecretVersionCreated(at=at(10), **S, version=2, origin="rotation", username="app"),
    ev.SecretVersionActivated(at=at(11), **S, version=2, previous_version=1),
    ev.DependentRemoved(at=at(12), **S, dependent_id="dep_a"),
    ev.SecretLabelsChanged(at=at(13), **S, labels={"team": "payments", "tier": "1"}),
    ev.SecretPolicyChanged(at=at(14), **S, policy=ev.Policy(max_age_s=7 * 86400, required_approvals=1)),
]


def test_fold_secret_registration_only() -> None:
    secret = fold_secret(SECRET_HISTORY[:3])
    assert secret is not None
    assert (secret.tenant, secret.secret_id, secret.provider, secret.environment) == (
        "acme",
        "prod/db",
        "redis_acl",
        "prod",
    )
    assert secret.status == "active"
    assert secret.current_version == 1 and secret.latest_version == 1
    assert secret.last_rotated_at is None  # the first activation is registration, not a rotation
    assert secret.created_at == at(0)
    assert secret.has_config
    v1 = secret.version(1)
    assert v1 is not None and (v1.origin, v1.username, v1.activated_at) == ("imported", "app", at(0))
    assert secret.dependents == ()


def test_fold_secret_full_history() -> None:
    secret = fold_secret(SECRET_HISTORY)
    assert secret is not None
    assert secret.current_version == 2
    assert [(v.number, v.origin, v.activated_at) for v in secret.versions] == [
        (1, "imported", at(0)),
        (2, "rotation", at(11)),
    ]
    assert secret.latest_version == 2
    assert secret.last_rotated_at == at(11)
    assert [(d.dependent_id, d.service, d.delivery, d.target, d.added_at) for d in secret.dependents] == [
        ("dep_b", "hooks", "webhook", "https://h.example/x", at(2))
    ]
    assert secret.labels == {"team": "payments", "tier": "1"}
    assert secret.policy == ev.Policy(max_age_s=7 * 86400, required_approvals=1)
    assert secret.version(3) is None


def test_fold_secret_created_but_not_activated_version() -> None:
    secret = fold_secret(SECRET_HISTORY[:6])
    assert secret is not None
    assert secret.current_version == 1 and secret.latest_version == 2
    v2 = secret.version(2)
    assert v2 is not None and v2.activated_at is None


def test_fold_secret_rollback_to_an_older_version() -> None:
    rollback = ev.SecretVersionActivated(at=at(20), **S, version=1, previous_version=2)
    secret = fold_secret([*SECRET_HISTORY, rollback])
    assert secret is not None
    assert secret.current_version == 1 and secret.latest_version == 2
    assert secret.last_rotated_at == at(20)
    v1 = secret.version(1)
    assert v1 is not None and v1.activated_at == at(20)


def test_fold_secret_ignores_events_before_registration_and_foreign_events() -> None:
    assert fold_secret([]) is None
    assert fold_secret(SECRET_HISTORY[1:3]) is None
    foreign = ev.AuditRecorded(
        at=at(3), tenant="acme", audit_id="aud_1", actor_id="x", actor_type="agent", method="m", outcome="ok"
    )
    assert fold_secret([*SECRET_HISTORY[:3], foreign]) == fold_secret(SECRET_HISTORY[:3])


def test_fold_secret_removing_an_unknown_dependent_changes_nothing() -> None:
    extra = ev.DependentRemoved(at=at(30), **S, dependent_id="dep_zzz")
    assert fold_secret([*SECRET_HISTORY, extra]) == fold_secret(SECRET_HISTORY)


KEY = {"tenant": "acme", "key_id": "key_1"}
CREATED = ev.ApiKeyCreated(at=at(0), **KEY, name="ci", token_hash="h", read_only=True, scopes=("prod/*",))


def test_fold_api_key() -> None:
    assert fold_api_key([]) is None
    key = fold_api_key([CREATED])
    assert key is not None
    assert (key.key_id, key.name, key.read_only, key.scopes, key.created_at) == (
        "key_1",
        "ci",
        True,
        ("prod/*",),
        at(0),
    )
    assert key.revoked_at is None and key.usable(at(1))
    revoked = fold_api_key([CREATED, ev.ApiKeyRevoked(at=at(5), **KEY)])
    assert revoked is not None and revoked.revoked_at == at(5)
    assert not revoked.usable(at(6))


def test_fold_api_key_revocation_before_creation_is_ignored() -> None:
    assert fold_api_key([ev.ApiKeyRevoked(at=at(0), **KEY)]) is None
    key = fold_api_key([ev.ApiKeyRevoked(at=at(0), **KEY), CREATED])
    assert key is not None and key.revoked_at is None


def test_fold_incident() -> None:
    base = {"tenant": "acme", "incident_id": "inc_1"}
    opened = ev.IncidentOpened(
        at=at(0), **base, kind="leaked_credential", severity="high", secret_id="prod/db", summary="leak"
    )
    assert fold_incident([]) is None
    incident = fold_incident(
        [
            opened,
            ev.IncidentLinked(at=at(1), **base, ref_kind="rotation", ref_id="rot_1"),
            ev.IncidentAcknowledged(at=at(2), **base, by="alice"),
        ]
    )
    assert incident is not None
    assert (incident.status, incident.links, incident.opened_at) == ("acknowledged", (("rotation", "rot_1"),), at(0))
    resolved = fold_incident([opened, ev.IncidentResolved(at=at(9), **base, resolution="rotated")])
    assert resolved is not None
    assert (resolved.status, resolved.resolved_at, resolved.resolution) == ("resolved", at(9), "rotated")
    # Acknowledging a resolved incident does not reopen it.
    again = fold_incident(
        [
            opened,
            ev.IncidentResolved(at=at(9), **base, resolution="r"),
            ev.IncidentAcknowledged(at=at(10), **base, by="b"),
        ]
    )
    assert again is not None and again.status == "resolved"


def test_fold_tenant() -> None:
    assert fold_tenant([]) is None
    tenant = fold_tenant([ev.TenantCreated(at=at(0), tenant="acme")])
    assert tenant is not None and (tenant.name, tenant.created_at) == ("acme", at(0))


@pytest.mark.parametrize("event", [*SECRET_HISTORY, CREATED, ev.ApiKeyRevoked(at=at(5), **KEY)])
def test_events_round_trip_through_their_encoding(event: ev.Event) -> None:
    data = ev.encode(event)
    assert ev.decode(data) == event
    assert ev.type_name(event) in data.decode()


def test_meta_round_trip() -> None:
    meta = ev.EventMeta(actor_id="cli:alice", actor_type="operator", correlation_id="c1")
    assert ev.decode_meta(ev.encode_meta(meta)) == meta
    assert ev.encode_meta(ev.EventMeta(actor_id="a", actor_type="agent")) == b'{"actor_id":"a","actor_type":"agent"}'


def test_fold_secret_version_lifecycle_and_rotations() -> None:
    meta = ev.EventMeta(actor_id="key_agent", actor_type="agent")
    rot = {"rotation_id": "rot_1"}
    history: list[ev.Event] = [
        *SECRET_HISTORY[:3],
        ev.RotationRequested(at=at(1), **S, **rot, kind="rotate", reason="leak", from_version=1, to_version=2),
        ev.SagaStepStarted(at=at(1), **S, **rot, step="create"),
        ev.SecretVersionCreated(at=at(2), **S, version=2, origin="rotation"),
        ev.SagaStepCompleted(at=at(2), **S, **rot, step="create", detail="v2"),
        ev.SecretVersionActivated(at=at(3), **S, version=2, previous_version=1),
        ev.SecretVersionRetired(at=at(4), **S, version=1, restorable_until=at(60)),
    ]
    secret = fold_secret(history, [meta] * len(history))
    assert secret is not None
    assert [(v.number, v.status) for v in secret.versions] == [(1, "retired"), (2, "current")]
    v1 = secret.version(1)
    assert v1 is not None and v1.restorable_until == at(60)
    rotation = secret.in_flight
    assert rotation is not None and rotation.rotation_id == "rot_1"
    assert (rotation.actor_id, rotation.status, rotation.from_version, rotation.to_version) == (
        "key_agent",
        "in_progress",
        1,
        2,
    )
    step = rotation.last("create")
    assert step is not None and (step.status, step.finished_at, step.detail) == ("completed", at(2), "v2")

    finished = fold_secret([*history, ev.RotationFinished(at=at(5), **S, **rot, outcome="completed")])
    assert finished is not None and finished.in_flight is None
    done = finished.rotation("rot_1")
    assert done is not None and (done.status, done.finished_at) == ("completed", at(5))

    restored = fold_secret([*history, ev.SecretVersionRestored(at=at(6), **S, version=1)])
    assert restored is not None
    v1 = restored.version(1)
    assert v1 is not None and (v1.status, v1.restorable_until) == ("live", None)

    revoked = fold_secret([*history, ev.SecretRevoked(at=at(7), **S, versions=(1, 2))])
    assert revoked is not None and revoked.status == "revoked"
    assert {v.status for v in revoked.versions} == {"revoked"}


def test_fold_secret_failed_step_means_compensating() -> None:
    rot = {"rotation_id": "rot_9"}
    secret = fold_secret(
        [
            *SECRET_HISTORY[:3],
            ev.RotationRequested(at=at(1), **S, **rot, kind="rotate", reason="r", from_version=1, to_version=2),
            ev.SagaStepStarted(at=at(1), **S, **rot, step="validate"),
            ev.SagaStepFailed(at=at(2), **S, **rot, step="validate", error="rejected"),
            ev.SecretVersionDiscarded(at=at(3), **S, version=2),
        ]
    )
    assert secret is not None
    rotation = secret.rotation("rot_9")
    assert rotation is not None and rotation.compensating and rotation.status == "compensating"
    step = rotation.last("validate")
    assert step is not None and (step.status, step.detail) == ("failed", "rejected")
    assert rotation.actor_id == "unknown"  # folded without metadata
