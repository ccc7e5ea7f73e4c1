"""The live proof of a remediation (verify_remediation) and what it settles (leak incidents).

Every check is three-valued. ``passed`` needs a protocol-level answer from the provider (the new
credential authenticated; the old one was refused at authentication). Anything that gave no such
answer (a timeout, an unreachable system, a permission error) is ``unknown`` with its reason, and
``verified`` is true only when every check passed. While a rotation waits for dependents the result
names each one, what it waits for and since when; it never advises a rollback because one is slow.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Literal, cast

import msgspec

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.incidents import mark_mitigated, open_incident_ids, resolve_incidents
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.secret import Dependent, Rotation, Secret
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.domain.rotation_status import RUNNING
from lockzero.engine.saga.delivery import adopted_versions
from lockzero.engine.saga.provider_access import Credentials, open_with
from lockzero.engine.unit_of_work import load_secret
from lockzero.providers.base import Auth, Provider

log = logging.getLogger("lockzero.verification")

CheckState = Literal["passed", "failed", "unknown"]

LEAK_KINDS: tuple[ev.IncidentKind, ...] = ("leaked_credential",)
#: What a verified rotation settles: leaks, and usage anomalies opened before it was requested.
SETTLED_KINDS: tuple[ev.IncidentKind, ...] = (*LEAK_KINDS, "usage_anomaly")
#: Open incidents as open_incident_ids reads them: id, recorded progress, kind, opened at.
Incidents = list[tuple[str, str | None, str, datetime]]
#: A long poll re-reads the rotation at least this often, in case a store notification was missed.
WAKE_AT_LEAST_EVERY_S = 1.0


class PendingDependent(msgspec.Struct, frozen=True):
    service: str
    delivery: str
    #: What adoption would be: "a pull of v3", "a 2xx answer to the webhook carrying v3", "the file write of v3".
    waiting_for: str
    #: When delivery of the version began (the saga's shift step); None before it began.
    since: str | None


class AdoptionCheck(msgspec.Struct, frozen=True):
    adopted: int
    total: int
    pending: list[PendingDependent]


class Checks(msgspec.Struct, frozen=True):
    #: None where the check does not apply (a revocation issues no new credential).
    new_credential_valid: CheckState | None
    old_credential_rejected: CheckState | None
    dependents_adopted: AdoptionCheck
    #: One short line per check that did not pass, keyed by the check's name.
    reasons: dict[str, str] = {}


class Verification(msgspec.Struct, frozen=True):
    verified: bool
    status: str
    rotation_id: str | None
    checks: Checks
    completed_at: str | None
    next_action: str
    #: While the saga waits for dependents: when it stops waiting and retires the old credential anyway.
    adoption_deadline_at: str | None = None
    #: Versions of this secret seen in a leak (never restored without force).
    compromised_versions: list[str] = []


def valid(auth: Auth) -> CheckState:
    return {"accepted": "passed", "refused": "failed", "unknown": "unknown"}[auth.verdict]  # type: ignore[return-value]


def rejected(auth: Auth) -> CheckState:
    return {"refused": "passed", "accepted": "failed", "unknown": "unknown"}[auth.verdict]  # type: ignore[return-value]


def _v(n: int | None) -> str:
    return f"v{n}" if n is not None else "none"


async def _load(engine: Engine, tenant: str, secret_id: str) -> Secret:
    secret, _ = await load_secret(engine, tenant, secret_id)
    return secret


def _waiting_for(dep: Dependent, secret_id: str, version: int) -> str:
    if dep.delivery == "pull":
        return f"a pull of v{version} (GET /api/v1/secrets/{secret_id}/current with its lz_svc_ token)"
    if dep.delivery == "webhook":
        return f"a 2xx answer to the signed webhook carrying v{version}"
    return f"the file write of v{version}"


async def pending_dependents(
    engine: Engine, secret: Secret, version: int | None, since: datetime | None
) -> tuple[int, list[PendingDependent]]:
    adopted = await adopted_versions(engine, secret.tenant, secret.secret_id)
    behind = [d for d in secret.dependents if version is None or adopted.get(d.dependent_id) != version]
    stamp = since.isoformat() if since else None
    pending = [
        PendingDependent(d.service, d.delivery, _waiting_for(d, secret.secret_id, version or 0), stamp)
        for d in behind
        if version is not None
    ]
    return len(secret.dependents) - len(pending), pending


def _names(pending: list[PendingDependent]) -> str:
    shown = ", ".join(f"{p.service} ({p.delivery})" for p in pending[:5])
    return shown + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")


async def _auth(provider: Provider, creds: Credentials, version: int | None) -> Auth | None:
    cred = creds.get(version) if version is not None else None
    if cred is None:
        return None
    return await provider.authenticate(cred)


async def verify(
    engine: Engine, tenant: str, secret_id: str, rotation_id: str | None = None, wait_s: float = 0.0
) -> Verification:
    """Live checks against the provider, not a replay of what the saga recorded.

    ``wait_s`` > 0 is a long poll: while the rotation is running (in progress or compensating) the answer waits,
    up to ``wait_s`` seconds, for it to finish, woken by the store's notification of each append; then the
    checks run once. An agent learns the outcome as it happens instead of on its next poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        # Read before the rotation: an append after it wakes the wait at once.
        head = await engine.store.wait_head() if wait_s > 0 else 0
        secret = await _load(engine, tenant, secret_id)
        rotation = _rotation(secret, rotation_id)
        left = deadline - loop.time()
        if rotation is None or rotation.status not in RUNNING or left <= 0:
            break
        await engine.store.wait_for_events(head, min(left, WAKE_AT_LEAST_EVERY_S))
    if rotation is None and rotation_id is not None:
        raise NotFound(f"no rotation {rotation_id!r} of secret {secret_id!r}")
    if rotation is None:
        return await _never_rotated(engine, secret)
    if rotation.status == "pending_approval":
        missing = rotation.required_approvals - len(rotation.approvers)
        return Verification(
            False,
            rotation.status,
            rotation.rotation_id,
            Checks(None, None, AdoptionCheck(0, len(secret.dependents), []), {"approval": "not approved yet"}),
            None,
            f"waiting for {missing} more human approval(s) (`lockzero approve {rotation.rotation_id} --as NAME`);"
            " nothing has changed yet",
            compromised_versions=_compromised(secret),
        )
    if rotation.kind == "revoke":
        return await _verify_revoke(engine, secret, rotation)
    # The saga settles leaks when it finishes, but a check that could not run then (a provider slow under load)
    # leaves them open with nothing to retry: proof of the latest rotation seen now settles them, so an agent
    # told "verified" finds its leak resolved. They are read alongside the live checks: only a completed rotation
    # can be verified, and only leaks opened before it was requested count, so reading them early misses none.
    settles = rotation is secret.rotations[-1] and rotation.status == "completed"
    found = asyncio.ensure_future(_open_leaks(engine, tenant, secret_id)) if settles else None
    try:
        result = await _verify_rotation(engine, secret, rotation)
    finally:
        # Shielded, never cut off half-way (that would cost its pooled connection): if this call is cancelled
        # meanwhile, the read ends by itself.
        leaks = await asyncio.shield(found) if found is not None else None
    if result.verified and leaks is not None:
        try:
            await settle_leaks(engine, tenant, secret_id, SYSTEM, proven=result, found=leaks)
        except Exception as exc:
            log.warning(
                "settling the leaks of verified rotation %s failed (%s)", rotation.rotation_id, type(exc).__name__
            )
    return result


async def _open_leaks(engine: Engine, tenant: str, secret_id: str) -> Incidents | Exception:
    try:
        return await open_incident_ids(engine, tenant, secret_id, SETTLED_KINDS)
    except Exception as exc:  # settle_leaks reports it; the verification's own answer does not depend on it
        return exc


def _rotation(secret: Secret, rotation_id: str | None) -> Rotation | None:
    if rotation_id:
        return secret.rotation(rotation_id)
    return secret.rotations[-1] if secret.rotations else None


def _compromised(secret: Secret) -> list[str]:
    return [f"v{v.number}" for v in secret.versions if v.compromised]


async def _verify_rotation(engine: Engine, secret: Secret, rotation: Rotation) -> Verification:
    shift = rotation.last("shift")
    delivering_since = shift.started_at if shift else None
    # The dependents' adoption is read while the provider's credentials are: a long-polling agent waits for this.
    dependents = asyncio.ensure_future(pending_dependents(engine, secret, rotation.to_version, delivering_since))
    try:
        provider, creds = await open_with(engine, secret, (rotation.to_version, rotation.from_version))
    except BaseException:
        dependents.cancel()
        raise
    try:
        adopted, pending = await dependents
        # Two independent logins (each on a connection of its own): at once, not one after the other. Both
        # end before the provider closes, even when one raises; then the first error goes on as it would have.
        both = await asyncio.gather(
            _auth(provider, creds, rotation.to_version),
            _auth(provider, creds, rotation.from_version),
            return_exceptions=True,
        )
        for outcome in both:
            if isinstance(outcome, BaseException):
                raise outcome
        new_auth, old_auth = cast(list[Auth | None], both)
    finally:
        dependents.cancel()  # done by now unless this call was cancelled
        await provider.close()
    adoption = AdoptionCheck(adopted, len(secret.dependents), pending)
    reasons: dict[str, str] = {}
    new_state: CheckState = valid(new_auth) if new_auth else "unknown"
    old_state: CheckState = rejected(old_auth) if old_auth else "unknown"
    if new_state != "passed":
        reasons["new_credential_valid"] = new_auth.reason if new_auth else f"{_v(rotation.to_version)} has no value"
    if old_state != "passed":
        reasons["old_credential_rejected"] = (
            old_auth.reason if old_auth else f"{_v(rotation.from_version)} has no stored value to try"
        )
    if pending:
        reasons["dependents_adopted"] = f"{len(pending)} of {len(secret.dependents)} not on {_v(rotation.to_version)}"
    status = rotation.status
    verified = status == "completed" and new_state == "passed" and old_state == "passed" and not pending
    deadline_at = None
    if status == "in_progress" and delivering_since is not None:
        deadline_at = (delivering_since + timedelta(seconds=secret.policy.adoption_deadline_s)).isoformat()
    hint = _next_action(secret, rotation, new_state, old_state, pending, deadline_at, reasons, verified)
    return Verification(
        verified,
        status,
        rotation.rotation_id,
        Checks(new_state, old_state, adoption, reasons),
        rotation.finished_at.isoformat() if rotation.finished_at else None,
        hint,
        deadline_at,
        _compromised(secret),
    )


def _next_action(
    secret: Secret,
    rotation: Rotation,
    new_state: CheckState,
    old_state: CheckState,
    pending: list[PendingDependent],
    deadline_at: str | None,
    reasons: dict[str, str],
    verified: bool,
) -> str:
    new, old = _v(rotation.to_version), _v(rotation.from_version)
    if verified:
        return "remediation verified; nothing more to do"
    status = rotation.status
    if status in ("in_progress", "compensating"):
        if status == "in_progress" and deadline_at is not None and pending:
            waits = "; ".join(f"{p.service}: {p.waiting_for}, since {p.since}" for p in pending[:5])
            return (
                f"waiting for {len(pending)} dependent(s) to adopt {new}: {waits}. At {deadline_at} (the adoption"
                f" deadline) {old} is retired whether or not they adopted; call verify_remediation again (wait_seconds"
                " long-polls)"
            )
        step = next((s.step for s in reversed(rotation.steps)), "start")
        what = "undoing the rotation" if status == "compensating" else f"at step {step}"
        return f"the saga is {what}; call verify_remediation again with wait_seconds, or poll it in a second or two"
    if status == "completed":
        if new_state == "failed":
            previous = secret.version(rotation.from_version)
            back = (
                ""
                if previous is not None and previous.compromised
                else f", or rollback_secret ({old} is not known to be compromised)"
            )
            return (
                f"{new} is refused at the provider now ({reasons['new_credential_valid']}): rotate_secret again{back}"
            )
        if old_state == "failed":
            return (
                f"{old} still authenticates at the provider ({reasons['old_credential_rejected']}): rotate_secret"
                " again to retire it, or revoke_secret if it is being abused now"
            )
        if pending:
            return (
                f"rotation completed and {old} is retired, but {len(pending)} dependent(s) still hold it and will fail"
                f" until they take {new}: {_names(pending)}. Make each fetch {new} (restart it, or fix its webhook"
                f" endpoint); do not roll back to {old}"
            )
        unknown = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        return f"the rotation completed but not every check could be proven ({unknown}); poll again later"
    current = _v(secret.current_version)
    return f"the rotation {status}; the secret is on a working credential ({current}). See get_active_incidents"


async def _verify_revoke(engine: Engine, secret: Secret, rotation: Rotation) -> Verification:
    revoked = [v.number for v in secret.versions if v.status == "revoked"]
    provider, creds = await open_with(engine, secret, revoked)
    try:
        auths = [await _auth(provider, creds, v) for v in revoked]
    finally:
        await provider.close()
    states = [rejected(a) for a in auths if a is not None]
    old_state: CheckState = "failed" if "failed" in states else ("unknown" if "unknown" in states else "passed")
    reasons = {"old_credential_rejected": next(a.reason for a in auths if a and rejected(a) == old_state)}
    if old_state == "passed":
        reasons = {}
    verified = rotation.status == "completed" and old_state == "passed"
    hint = (
        "revocation verified: no revoked version authenticates"
        if verified
        else (
            f"the revocation is {rotation.status}; a revoked version is not proven refused: "
            f"{reasons.get('old_credential_rejected', 'still running')}"
        )
    )
    return Verification(
        verified,
        rotation.status,
        rotation.rotation_id,
        Checks(None, old_state, AdoptionCheck(0, 0, []), reasons),
        rotation.finished_at.isoformat() if rotation.finished_at else None,
        hint,
        compromised_versions=_compromised(secret),
    )


async def _never_rotated(engine: Engine, secret: Secret) -> Verification:
    """Nothing to verify yet; still report, live, whether the current credential works."""
    adopted, pending = await pending_dependents(engine, secret, secret.current_version, None)
    provider, creds = await open_with(engine, secret, (secret.current_version,))
    try:
        auth = await _auth(provider, creds, secret.current_version)
    finally:
        await provider.close()
    state: CheckState = valid(auth) if auth else "unknown"
    reasons = {} if state == "passed" else {"new_credential_valid": auth.reason if auth else "no current value"}
    return Verification(
        False,
        "never_rotated",
        None,
        Checks(state, None, AdoptionCheck(adopted, len(secret.dependents), pending), reasons),
        None,
        "this secret has not been rotated; if it leaked, call rotate_secret and poll verify_remediation",
        compromised_versions=_compromised(secret),
    )


async def settle_leaks(
    engine: Engine,
    tenant: str,
    secret_id: str,
    actor: ev.EventMeta,
    proven: Verification | None = None,
    found: Incidents | Exception | None = None,
) -> None:
    """Resolve the secret's leak incidents once a rotation away from every compromised version is verified
    live; until then record how far it got ("mitigated: …") and leave them open, linked to the rotation.
    Only incidents opened before that rotation was requested count: a later one may be about the credential the
    rotation made. ``proven``: live checks of that rotation just made (verify_remediation), not made again;
    ``found``: the secret's open SETTLED_KINDS incidents (or the error reading them), read since it was requested."""
    if isinstance(found, Exception):
        raise found
    if found is None:
        # One query for both kinds: this runs at the end of every rotation and on every adopting pull.
        found = await open_incident_ids(engine, tenant, secret_id, SETTLED_KINDS)
    if not found:
        return
    try:
        secret = await _load(engine, tenant, secret_id)
    except NotFound:
        return
    done = [r for r in secret.rotations if r.kind == "rotate" and r.outcome == "completed"]
    if not done or secret.in_flight is not None or done[-1].to_version != secret.current_version:
        return
    rotation = done[-1]
    before = [(i, progress, kind) for i, progress, kind, opened in found if opened <= rotation.requested_at]
    incidents = [(i, progress) for i, progress, kind in before if kind != "usage_anomaly"]
    anomalies = [i for i, _, kind in before if kind == "usage_anomaly"]
    if not incidents and not anomalies:
        return
    current = secret.version(secret.current_version)
    if proven is not None and proven.rotation_id == rotation.rotation_id:
        result = proven
    else:
        result = await _verify_rotation(engine, secret, rotation)
    proof = f"{_v(rotation.to_version)} authenticates, {_v(rotation.from_version)} is refused, every dependent adopted"

    async def resolve(incident_ids: list[str], resolution: str) -> None:
        await resolve_incidents(
            engine,
            tenant,
            incident_ids,
            resolution=resolution,
            ref_kind="rotation",
            ref_id=rotation.rotation_id,
            actor=actor,
        )

    if anomalies and result.verified:
        await resolve(anomalies, f"rotation {rotation.rotation_id} (requested after the anomaly) verified: {proof}")
    if not incidents:
        return
    if result.verified and current is not None and not current.compromised:
        await resolve([i for i, _ in incidents], f"rotation {rotation.rotation_id} verified: {proof}")
        return
    missing = "; ".join(f"{k}: {v}" for k, v in result.checks.reasons.items()) or "the current version is compromised"
    progress = f"mitigated: rotated to {_v(rotation.to_version)} ({rotation.rotation_id}); not yet verified: {missing}"
    for incident_id, recorded in incidents:
        if recorded != progress[:300]:
            await mark_mitigated(
                engine, tenant, incident_id, progress, ref_kind="rotation", ref_id=rotation.rotation_id, actor=actor
            )
