"""Commands that start sagas (rotate, roll back, revoke) and the live remediation check."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Protocol

import msgspec

from engine import events as ev
from engine import naming
from engine.aggregates.secret import Rotation, Secret, fold_secret
from engine.app import Engine
from engine.crypto import new_id
from engine.delivery import adopted_versions
from engine.errors import Conflict, Forbidden, NotFound
from engine.incidents import open_incident
from engine.provider_access import credential, open_provider
from engine.saga import RotationSaga
from eventstore import ConcurrencyError


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


class RevokeResult(msgspec.Struct, frozen=True):
    status: str
    revoked_versions: list[str]
    incident_id: str
    alerts_sent: int
    rotation_id: str


class AdoptionCheck(msgspec.Struct, frozen=True):
    adopted: int
    total: int
    pending: list[str]


class Checks(msgspec.Struct, frozen=True):
    new_credential_valid: bool | None
    old_credential_rejected: bool | None
    dependents_adopted: AdoptionCheck


class Verification(msgspec.Struct, frozen=True):
    verified: bool
    status: str
    rotation_id: str | None
    checks: Checks
    completed_at: str | None
    next_action: str


def _v(n: int | None) -> str | None:
    return f"v{n}" if n is not None else None


async def _load(engine: Engine, tenant: str, secret_id: str) -> tuple[Secret, int]:
    events, metas, version = await engine.load_with_meta(naming.secret_stream(tenant, naming.secret_id(secret_id)))
    secret = fold_secret(events, metas)
    if secret is None:
        raise NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")
    return secret, version


def _started(tenant: str, secret_id: str, r: Rotation) -> RotationStarted:
    arn = naming.version_arn(tenant, secret_id, r.to_version) if r.to_version else None
    note = None
    if not r.approved:
        missing = r.required_approvals - len(r.approvers)
        note = (
            f"policy requires {r.required_approvals} human approval(s); {missing} missing. The rotation starts by"
            f" itself once people run `lockzero approve {r.rotation_id} --tenant {tenant} --as NAME`;"
            " poll verify_remediation to follow it"
        )
    return RotationStarted(r.rotation_id, r.status, _v(r.from_version), _v(r.to_version), arn, note=note)


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
) -> tuple[Secret, Rotation, bool]:
    """Append RotationRequested unless one is in flight (or has this idempotency key): then return that.

    The stream version makes this exact under concurrency: of N racing callers one appends, the others
    fold again and find its rotation.
    """
    for _ in range(20):
        secret, version = await _load(engine, tenant, secret_id)
        if idempotency_key is not None:
            same = next((r for r in secret.rotations if r.idempotency_key == idempotency_key), None)
            if same is not None:
                return secret, same, False
        if secret.in_flight is not None:
            return secret, secret.in_flight, False
        kind, from_v, to_v = plan(secret)
        rotation_id = new_id("rot")
        event = ev.RotationRequested(
            at=engine.clock.now(),
            tenant=tenant,
            secret_id=secret_id,
            rotation_id=rotation_id,
            kind=kind,
            reason=reason[:500],
            from_version=from_v,
            to_version=to_v,
            idempotency_key=idempotency_key,
            required_approvals=secret.policy.required_approvals if kind == "rotate" else 0,
        )
        try:
            await engine.append(naming.secret_stream(tenant, secret_id), [event], actor, version)
        except ConcurrencyError:
            continue
        secret, _ = await _load(engine, tenant, secret_id)
        rotation = secret.rotation(rotation_id)
        assert rotation is not None
        return secret, rotation, True
    raise Conflict(f"secret {secret_id!r} is changing too fast to start a rotation; retry")


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
    _, rotation, created = await _request(engine, tenant, secret_id, actor, _plan_rotate, reason, idempotency_key)
    if created and rotation.approved:
        await queue.enqueue(tenant, secret_id, rotation.rotation_id)
    return _started(tenant, secret_id, rotation)


async def _check_agent_allowed(engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta, what: str) -> None:
    """`allow_agent_rotation: false` stops agents (not operators); the attempt is a policy_violation incident."""
    if actor.actor_type != "agent":
        return
    secret, _ = await _load(engine, tenant, secret_id)
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


def _plan_rollback(to_version: int | None, now: datetime) -> Planner:
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
) -> RollbackStarted:
    await _check_agent_allowed(engine, tenant, secret_id, actor, "roll back")
    _, rotation, created = await _request(
        engine, tenant, secret_id, actor, _plan_rollback(to_version, engine.clock.now()), reason, None
    )
    if not created and rotation.kind != "rollback":
        raise Conflict(
            f"rotation {rotation.rotation_id} of {secret_id!r} is in flight; wait for it (verify_remediation) first"
        )
    if created:
        await queue.enqueue(tenant, secret_id, rotation.rotation_id)
    arn = naming.version_arn(tenant, secret_id, rotation.to_version) if rotation.to_version else None
    return RollbackStarted(rotation.rotation_id, rotation.status, _v(rotation.to_version), arn)


async def _cancel_in_flight(engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta) -> None:
    """An emergency revoke waits for nothing: a rotation in flight (or waiting for approvals) is cancelled;
    its runner sees that at its next step, and the revoke sweeps whatever it had created."""
    secret, version = await _load(engine, tenant, secret_id)
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


async def revoke(engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta, reason: str) -> RevokeResult:
    """Runs to the end before answering: the credential stops working now, not eventually."""
    await _check_agent_allowed(engine, tenant, secret_id, actor, "revoke")
    await _cancel_in_flight(engine, tenant, secret_id, actor)
    secret, rotation, created = await _request(engine, tenant, secret_id, actor, _plan_revoke, reason, None)
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
    )
    await RotationSaga(engine).run(tenant, secret_id, rotation.rotation_id)
    secret, _ = await _load(engine, tenant, secret_id)
    done = secret.rotation(rotation.rotation_id)
    assert done is not None
    alert = done.last("alert")
    sent = int(alert.detail.split("alerts sent: ")[1].split(",")[0]) if alert and "alerts sent: " in alert.detail else 0
    revoked = [f"v{v.number}" for v in secret.versions if v.status == "revoked"]
    return RevokeResult(secret.status, revoked, incident_id, sent, rotation.rotation_id)


async def verify(engine: Engine, tenant: str, secret_id: str, rotation_id: str | None = None) -> Verification:
    """Live checks against the provider, not a replay of what the saga recorded."""
    secret, _ = await _load(engine, tenant, secret_id)
    rotation = secret.rotation(rotation_id) if rotation_id else (secret.rotations[-1] if secret.rotations else None)
    if rotation is None and rotation_id is not None:
        raise NotFound(f"no rotation {rotation_id!r} of secret {secret_id!r}")
    if rotation is None:
        return await _never_rotated(engine, secret)
    adopted = await adopted_versions(engine, tenant, secret_id)
    target = rotation.to_version if rotation.kind != "revoke" else None
    pending = [d.service for d in secret.dependents if adopted.get(d.dependent_id) != target]
    adoption = AdoptionCheck(len(secret.dependents) - len(pending), len(secret.dependents), pending)
    provider = await open_provider(engine, secret)
    try:
        if rotation.kind == "revoke":
            creds = [await credential(engine, secret, v.number) for v in secret.versions if v.status == "revoked"]
            still = [c for c in creds if c is not None and await provider.validate(c)]
            new_ok, old_rejected = None, not still
            adoption = AdoptionCheck(0, 0, [])
        else:
            new = await credential(engine, secret, rotation.to_version)
            old = await credential(engine, secret, rotation.from_version)
            new_ok = bool(new and await provider.validate(new))
            old_rejected = bool(old and not await provider.validate(old))
    finally:
        await provider.close()
    status = rotation.status
    if status == "pending_approval":
        missing = rotation.required_approvals - len(rotation.approvers)
        return Verification(
            False,
            status,
            rotation.rotation_id,
            Checks(None, None, adoption),
            None,
            f"waiting for {missing} more human approval(s) (`lockzero approve {rotation.rotation_id} --as NAME`);"
            " nothing has changed yet",
        )
    verified = status == "completed" and bool(new_ok in (True, None) and old_rejected)
    if rotation.kind != "revoke":
        verified = verified and not pending
    if verified:
        hint = "remediation verified; nothing more to do"
    elif status in ("in_progress", "compensating"):
        hint = "the saga is still running; poll verify_remediation again in a second or two"
    elif status == "completed":
        hint = "completed, but a live check fails: inspect get_rotation_history, then consider rollback_secret"
    else:
        hint = f"the rotation {status}; the secret is on a working credential. See get_active_incidents"
    return Verification(
        verified,
        status,
        rotation.rotation_id,
        Checks(new_ok, old_rejected, adoption),
        rotation.finished_at.isoformat() if rotation.finished_at else None,
        hint,
    )


async def _never_rotated(engine: Engine, secret: Secret) -> Verification:
    """Nothing to verify yet; still report, live, whether the current credential works."""
    adopted = await adopted_versions(engine, secret.tenant, secret.secret_id)
    pending = [d.service for d in secret.dependents if adopted.get(d.dependent_id) != secret.current_version]
    provider = await open_provider(engine, secret)
    try:
        current = await credential(engine, secret, secret.current_version)
        works = bool(current and await provider.validate(current))
    finally:
        await provider.close()
    return Verification(
        False,
        "never_rotated",
        None,
        Checks(works, None, AdoptionCheck(len(secret.dependents) - len(pending), len(secret.dependents), pending)),
        None,
        "this secret has not been rotated; if it leaked, call rotate_secret and poll verify_remediation",
    )
