"""Commands that start sagas (rotate, roll back, revoke) and the live remediation check."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from typing import Protocol

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.incidents import open_incident
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation, Secret, apply_secret
from lockzero.engine.domain.errors import Conflict, Forbidden, NotFound
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.security.crypto import new_id
from lockzero.engine.unit_of_work import Decision, change_secret, load_secret
from lockzero.eventstore import ConcurrencyError


class SagaQueue(Protocol):
    """Where started sagas go: arq on Redis, or the in-process runner of the embedded default."""

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None: ...


class RotationStarted(msgspec.Struct, frozen=True):
    rotation_id: str
    status: str
    from_version: str | None
    to_version: str | None
    new_version_arn: str | None
    poll: str = "verify_remediation"
    #: What happens next when it is not simply "poll" (e.g. waiting for approvals).
    note: str | None = None


class RollbackStarted(msgspec.Struct, frozen=True):
    rotation_id: str
    status: str
    restored_version: str | None
    restored_version_arn: str | None
    poll: str = "verify_remediation"
    note: str | None = None


class RevokeResult(msgspec.Struct, frozen=True):
    status: str
    revoked_versions: list[str]
    incident_id: str
    alerts_sent: int
    rotation_id: str


def _v(n: int | None) -> str | None:
    return f"v{n}" if n is not None else None


def _approval_note(tenant: str, r: Rotation) -> str | None:
    if r.approved:
        return None
    missing = r.required_approvals - len(r.approvers)
    return (
        f"policy requires {r.required_approvals} human approval(s); {missing} missing. The {r.kind} starts by"
        f" itself once people run `lockzero approve {r.rotation_id} --tenant {tenant} --as NAME`;"
        " poll verify_remediation to follow it"
    )


def _started(tenant: str, secret_id: str, r: Rotation) -> RotationStarted:
    arn = naming.version_arn(tenant, secret_id, r.to_version) if r.to_version else None
    return RotationStarted(
        r.rotation_id, r.status, _v(r.from_version), _v(r.to_version), arn, note=_approval_note(tenant, r)
    )


class Planner(Protocol):
    def __call__(self, secret: Secret) -> tuple[ev.RotationKind, int | None, int | None]: ...


async def _request(
    engine: Engine,
    tenant: str,
    secret_id: str,
    actor: ev.EventMeta,
    plan: Planner,
    reason: str,
    idempotency_key: str | None,
    forced: bool = False,
    *,
    joins: ev.RotationKind,
) -> tuple[Secret, Rotation, bool]:
    """Append RotationRequested unless one is in flight (or has this idempotency key): then return that.

    The stream version makes this exact under concurrency: of N racing callers one appends, the others
    fold again and find its rotation.
    """

    def decide(secret: Secret | None) -> Decision[tuple[Secret, Rotation, bool]]:
        if secret is None:
            raise NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")
        if idempotency_key is not None:
            same = next((r for r in secret.rotations if r.answers(idempotency_key)), None)
            if same is not None:
                return Decision((secret, same, False))
        if secret.in_flight is not None:
            # A keyed call joins the rotation it is answered with, so its retry gets that rotation even after it
            # ended; only one of its own kind (a rollback answered with a rotation in flight is refused anyway).
            if idempotency_key is None or secret.in_flight.kind != joins:
                return Decision((secret, secret.in_flight, False))
            joined = ev.RotationJoined(
                at=engine.clock.now(),
                tenant=tenant,
                secret_id=secret_id,
                rotation_id=secret.in_flight.rotation_id,
                idempotency_key=idempotency_key,
            )
            after = apply_secret(secret, joined, actor)
            assert after is not None and after.in_flight is not None
            return Decision((after, after.in_flight, False), [joined])
        kind, from_v, to_v = plan(secret)
        event = ev.RotationRequested(
            at=engine.clock.now(),
            tenant=tenant,
            secret_id=secret_id,
            rotation_id=new_id("rot"),
            kind=kind,
            reason=reason[:500],
            from_version=from_v,
            to_version=to_v,
            idempotency_key=idempotency_key,
            # Rotations and rollbacks wait for people alike; a revocation is the emergency brake and never waits.
            required_approvals=secret.policy.required_approvals if kind in ("rotate", "rollback") else 0,
            forced=forced,
        )
        # Fold our own event instead of reading the stream back.
        after = apply_secret(secret, event, actor)
        assert after is not None
        rotation = after.rotation(event.rotation_id)
        assert rotation is not None
        return Decision((after, rotation, True), [event])

    return await change_secret(engine, tenant, naming.secret_id(secret_id), actor, decide)


def _plan_rotate(secret: Secret) -> tuple[ev.RotationKind, int | None, int | None]:
    if secret.status == "revoked":
        raise Conflict(f"secret {secret.secret_id!r} is revoked; register a replacement instead of rotating")
    if secret.current_version is None:
        raise Conflict(f"secret {secret.secret_id!r} has no current version to rotate")
    return "rotate", secret.current_version, secret.latest_version + 1


async def rotate(
    engine: Engine,
    queue: SagaQueue,
    tenant: str,
    secret_id: str,
    actor: ev.EventMeta,
    reason: str,
    idempotency_key: str | None = None,
) -> RotationStarted:
    await _check_agent_allowed(engine, tenant, secret_id, actor, "rotate")
    _, rotation, created = await _request(
        engine, tenant, secret_id, actor, _plan_rotate, reason, idempotency_key, joins="rotate"
    )
    if created and rotation.approved:
        await queue.enqueue(tenant, secret_id, rotation.rotation_id)
    return _started(tenant, secret_id, rotation)


async def _check_agent_allowed(engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta, what: str) -> None:
    """`allow_agent_rotation: false` stops agents (not operators); the attempt is a policy_violation incident."""
    if actor.actor_type != "agent":
        return
    secret, _ = await load_secret(engine, tenant, secret_id)
    if secret.policy.allow_agent_rotation:
        return
    incident_id = await open_incident(
        engine,
        tenant,
        actor,
        kind="policy_violation",
        severity="medium",
        secret_id=secret_id,
        summary=f"agent key {actor.actor_id} tried to {what} {secret_id}; its policy forbids agent rotation",
    )
    raise Forbidden(
        f"policy of {secret_id!r} does not allow agents to {what} it; a human must do it"
        f" (incident {incident_id} records the attempt)",
        data={"incident_id": incident_id},
    )


def _plan_rollback(to_version: int | None, now: datetime, force: bool) -> Planner:
    def plan(secret: Secret) -> tuple[ev.RotationKind, int | None, int | None]:
        if secret.status == "revoked":
            raise Conflict(f"secret {secret.secret_id!r} is revoked; revocation is final")
        now_current = secret.current_version
        candidates = [
            v
            for v in secret.versions
            if v.status == "retired"
            and v.number != now_current
            and v.activated_at is not None
            # The grace period is the promise: past it, a version is not restorable even before the scheduler ran.
            and (v.restorable_until is None or v.restorable_until > now)
        ]
        if to_version is not None:
            candidates = [v for v in candidates if v.number == to_version]
        if not candidates:
            which = f"v{to_version}" if to_version is not None else "a previous version"
            raise Conflict(
                f"cannot roll back {secret.secret_id!r}: {which} is not restorable"
                " (never rotated, or its grace period ended)"
            )
        # The previous credential is the one that was current most recently, not the highest number.
        target = max(candidates, key=lambda v: (v.activated_at, v.number))
        if target.compromised and not force:
            seen = f" (incident {target.compromised_by})" if target.compromised_by else ""
            raise Conflict(
                f"v{target.number} of {secret.secret_id!r} is compromised: its value was seen in a leak{seen}."
                " Restoring it brings the leaked credential back; fix forward with rotate_secret, or pass"
                " force: true if you accept that risk",
                data={"compromised_version": f"v{target.number}"},
            )
        return "rollback", now_current, target.number

    return plan


async def rollback(
    engine: Engine,
    queue: SagaQueue,
    tenant: str,
    secret_id: str,
    actor: ev.EventMeta,
    reason: str,
    to_version: int | None = None,
    force: bool = False,
    idempotency_key: str | None = None,
) -> RollbackStarted:
    await _check_agent_allowed(engine, tenant, secret_id, actor, "roll back")
    plan = _plan_rollback(to_version, engine.clock.now(), force)
    _, rotation, created = await _request(
        engine, tenant, secret_id, actor, plan, reason, idempotency_key, force, joins="rollback"
    )
    if not created and rotation.kind != "rollback":
        raise Conflict(
            f"rotation {rotation.rotation_id} of {secret_id!r} is in flight; wait for it (verify_remediation) first"
        )
    if created and rotation.approved:
        await queue.enqueue(tenant, secret_id, rotation.rotation_id)
    arn = naming.version_arn(tenant, secret_id, rotation.to_version) if rotation.to_version else None
    note = _approval_note(tenant, rotation)
    return RollbackStarted(rotation.rotation_id, rotation.status, _v(rotation.to_version), arn, note=note)


async def _cancel_in_flight(engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta) -> None:
    """An emergency revoke waits for nothing: a rotation in flight (or waiting for approvals) is cancelled;
    its runner sees that at its next step, and the revoke sweeps whatever it had created."""
    secret, version = await load_secret(engine, tenant, secret_id)
    pending = secret.in_flight
    if pending is None or pending.kind == "revoke":
        return
    cancelled = ev.RotationFinished(
        at=engine.clock.now(), tenant=tenant, secret_id=secret_id, rotation_id=pending.rotation_id, outcome="cancelled"
    )
    with contextlib.suppress(ConcurrencyError):  # someone else changed it: _request sees the new state
        await engine.append(naming.secret_stream(tenant, secret_id), [cancelled], actor, version)


def _plan_revoke(secret: Secret) -> tuple[ev.RotationKind, int | None, int | None]:
    if secret.status == "revoked":
        raise Conflict(f"secret {secret.secret_id!r} is already revoked")
    return "revoke", secret.current_version, None


async def revoke(
    engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta, reason: str, idempotency_key: str | None = None
) -> RevokeResult:
    """Runs to the end before answering: the credential stops working now, not eventually. A retry (same
    idempotency key, or while it runs) joins the same revocation and its one incident."""
    await _check_agent_allowed(engine, tenant, secret_id, actor, "revoke")
    await _cancel_in_flight(engine, tenant, secret_id, actor)
    secret, rotation, created = await _request(
        engine, tenant, secret_id, actor, _plan_revoke, reason, idempotency_key, joins="revoke"
    )
    if not created and rotation.kind != "revoke":
        # A revocation must not wait for a rotation; it supersedes it once that saga yields.
        raise Conflict(f"rotation {rotation.rotation_id} of {secret_id!r} is in flight; revoke again when it ends")
    incident_id = await open_incident(
        engine,
        tenant,
        actor,
        kind="leaked_credential",
        severity="critical",
        secret_id=secret_id,
        summary=f"{secret_id} revoked: {reason}"[:500],
        # Derived from the revocation: a retry (or a crash before the answer) finds it instead of opening another.
        incident_id=revoke_incident_id(rotation.rotation_id),
    )
    await RotationSaga(engine).run(tenant, secret_id, rotation.rotation_id)
    secret, _ = await load_secret(engine, tenant, secret_id)
    done = secret.rotation(rotation.rotation_id)
    assert done is not None
    alert = done.last("alert")
    sent = (alert.delivered or 0) if alert else 0
    revoked = [f"v{v.number}" for v in secret.versions if v.status == "revoked"]
    return RevokeResult(secret.status, revoked, incident_id, sent, rotation.rotation_id)


def revoke_incident_id(rotation_id: str) -> str:
    return f"inc_{hashlib.sha256(f'lockzero/revoked/{rotation_id}'.encode()).hexdigest()[:16]}"
