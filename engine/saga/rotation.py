"""The rotation saga: rotate, roll back or revoke one secret as compensable steps.

rotate:   create → validate → shift → retire → verify
rollback: restore → validate → shift → retire → verify
revoke:   revoke → alert

Every step is recorded on the secret's stream: intent (``SagaStepStarted``) before its side effect,
outcome (``SagaStepCompleted``/``SagaStepFailed``) after (a step that changes nothing, validate or verify,
has no side effect to record an intent before: see StepSpec.changes_nothing). A runner — a fresh one after a crash —
folds the stream and continues at the first unfinished step, repeating its side effect, which every
provider call tolerates (a new value is chosen and stored *with* the intent, so a repeat adds the
same password, not a third one). A failed forward step compensates the completed ones in reverse
(discard / re-activate the old version / restore it), so the secret ends on a working credential.
Every append names the stream version it was folded from: two runners on one saga cannot both
record a step; the loser reloads and carries on from what the winner recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

from opentelemetry import trace
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from lockzero.engine import observability
from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.incidents import open_incident, resolve_for_secret
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation, Secret, apply_secret
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.saga.delivery import adopted_versions, deliver
from lockzero.engine.saga.notify import notify
from lockzero.engine.saga.provider_access import Credentials, credential, open_with, provider_config
from lockzero.engine.saga.verification import settle_leaks
from lockzero.eventstore import ConcurrencyError, Transaction
from lockzero.providers.base import Credential, Provider, ProviderError
from lockzero.providers.registry import mint_value

FORWARD: dict[str, tuple[ev.SagaStep, ...]] = {
    "rotate": ("create", "validate", "shift", "retire", "verify"),
    "rollback": ("restore", "validate", "shift", "retire", "verify"),
    "revoke": ("revoke", "alert"),
}

#: The adoption wait re-reads at least this often even without appends (the deadline, a clock moved by tests).
ADOPTION_WAKE_AT_LEAST_EVERY_S = 0.25
tracer = trace.get_tracer("lockzero.saga")
VALIDATE_ATTEMPTS = 5


class StepFailed(Exception):
    """A step could not do its job; the message is safe to record (no credential in it)."""


@dataclass(frozen=True)
class StepResult:
    events: list[ev.Event]
    detail: str
    #: Rows to write in the same transaction as the outcome (e.g. a provider-issued value).
    side: Callable[[Transaction], Awaitable[None]] | None = None
    #: Dependents the step delivered to (recorded as a typed field, not parsed back out of ``detail``).
    delivered: int | None = None


@dataclass(frozen=True)
class Do:
    step: ev.SagaStep
    compensating: bool
    resume: bool


Outcome = Literal["completed", "compensated", "failed", "cancelled"]


@dataclass(frozen=True)
class Finish:
    outcome: Outcome


def next_action(rotation: Rotation) -> Do | Finish:
    """Pure: what the saga does next, from its recorded steps alone."""
    steps = FORWARD[rotation.kind]
    if not rotation.compensating:
        for step in steps:
            record = rotation.last(step)
            if record is None:
                return Do(step, False, resume=False)
            if record.status == "started":
                return Do(step, False, resume=True)
        return Finish("completed")
    for step in reversed(steps):
        if STEPS[step].undo is None or rotation.last(step) is None:
            continue
        undo = rotation.last(step, compensating=True)
        if undo is None:
            return Do(step, True, resume=False)
        if undo.status == "started":
            return Do(step, True, resume=True)
        if undo.status == "failed":
            return Finish("failed")
    return Finish("compensated")


SideWrites = Callable[[Transaction], Awaitable[None]]
T = TypeVar("T")
E = TypeVar("E", bound=ev.SecretEvent)


class RotationSaga:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Logins a checking step (validate, verify) makes before it gives up; one while its intent is unrecorded.
        self._tries: int | None = None

    async def run(self, tenant: str, secret_id: str, rotation_id: str) -> str:
        """Drive the rotation to its end; returns the outcome. Safe to call again at any time.

        One runner goes from step to step without reading its stream back: it folds what it appends, and a
        step's outcome travels in the same append as the next step's intent (or as RotationFinished). That
        is still durable before the next change begins; a crash before it leaves the step started, so a
        fresh runner repeats it, exactly as when the outcome was its own append. A step that changes nothing
        (validate, verify) and succeeds at its first login goes in that append too, intent and outcome (see
        _step). Any other append to the stream meanwhile makes the next append conflict, and the runner reloads.
        """
        stream = naming.secret_stream(tenant, secret_id)
        lost: Do | None = None
        known: tuple[Secret, int] | None = None  # the stream as this runner last wrote it, folded
        outcome: _Unrecorded | None = None  # the last step's outcome, folded into ``known``, not yet appended
        while True:
            if known is None:
                folded, version = await self.engine.secrets.load(stream)
            else:
                folded, version = known
            rotation = folded.rotation(rotation_id) if folded else None
            if folded is None or rotation is None:
                raise NotFound(f"no rotation {rotation_id!r} of secret {secret_id!r}")
            secret = folded
            if rotation.outcome is not None:
                return rotation.outcome
            if not rotation.approved:
                return "pending_approval"  # `lockzero approve` lets it go on
            action = next_action(rotation)
            if lost is not None and isinstance(action, Do) and action.resume and action.step == lost.step:
                # Another runner recorded this step's intent just before us: it is doing the step now.
                # Repeating the side effect would be harmless but is not ours to do; if that runner dies,
                # the reconciler starts a fresh one, which resumes.
                return "running elsewhere"
            try:
                if isinstance(action, Finish):
                    await self._finish(secret, rotation, version, action.outcome, outcome)
                    return action.outcome
                secret, rotation, version, unrecorded = await self._begin(secret, rotation, version, action, outcome)
                outcome, version, done = await self._step(secret, rotation, version, action, unrecorded)
                known = (_fold(secret, done), version)
                lost = None
            except ConcurrencyError:
                lost = action if isinstance(action, Do) and not action.resume else None
                known, outcome = None, None

    async def _advance(self, secret: Secret, rotation: Rotation, version: int, action: Do | Finish) -> None:
        """One whole step with its outcome recorded on its own (tests stop a runner between steps with it)."""
        if isinstance(action, Finish):
            await self._finish(secret, rotation, version, action.outcome)
            return
        secret, rotation, version, unrecorded = await self._begin(secret, rotation, version, action)
        outcome, version, _ = await self._step(secret, rotation, version, action, unrecorded)
        # If anything else was appended meanwhile this conflicts, and the step is simply resumed (idempotent).
        await self._append(secret, outcome.events, version, outcome.side)

    async def _begin(
        self, secret: Secret, rotation: Rotation, version: int, action: Do, carried: _Unrecorded | None = None
    ) -> tuple[Secret, Rotation, int, _Unrecorded | None]:
        """Record the step's intent (with the previous step's outcome, if one is carried) before its side effect.

        A step that changes nothing, after an outcome that writes no rows, records nothing yet: its intent and
        the carried outcome are returned, for _step. An outcome with rows (a provider-issued value) is never
        held that long."""
        if action.resume:
            assert carried is None  # a carried outcome is folded in, so the next step is never a resumed one
            return secret, rotation, version, None
        started = self._event(
            ev.SagaStepStarted,
            secret,
            rotation_id=rotation.rotation_id,
            step=action.step,
            compensating=action.compensating,
        )
        intent_events, side = await self._intent(secret, rotation, action)
        before = carried.events if carried else []
        deferred = STEPS[action.step].changes_nothing and not action.compensating and side is None
        if deferred and (carried is None or carried.side is None):
            unrecorded: _Unrecorded | None = _Unrecorded([*before, started, *intent_events], None)
        else:
            unrecorded = None
            version = await self._append(
                secret, [*before, started, *intent_events], version, _both(carried.side if carried else None, side)
            )
        # Fold what we just wrote (or are about to) instead of reading the stream back.
        secret = _fold(secret, [started, *intent_events])
        refreshed = secret.rotation(rotation.rotation_id)
        assert refreshed is not None
        return secret, refreshed, version, unrecorded

    async def _step(
        self, secret: Secret, rotation: Rotation, version: int, action: Do, unrecorded: _Unrecorded | None
    ) -> tuple[_Unrecorded, int, list[ev.Event]]:
        """Do the step: what the next append carries, the stream version, and this step's own outcome events.

        With ``unrecorded`` (see _begin) the step gets one login first, its intent not yet durable: when that
        proves the step, intent and outcome go in the next append with the previous step's outcome (a rotation
        makes five appends, not seven). A crash in that login loses only what a repeat restores: the previous
        step runs again (every step is idempotent), then this one. Anything else (a refusal, an unknown) may
        mean retries, sleeps and then compensation, so the previous outcome and this intent are recorded first
        and the step runs as any other: another runner loading meanwhile then resumes this step rather than
        repeating the previous one, which after a compensation would undo it (re-add a discarded password)."""
        if unrecorded is not None:
            self._tries = 1
            try:
                quick = await self._outcome(secret, rotation, action)
            finally:
                self._tries = None
            if isinstance(quick.events[0], ev.SagaStepCompleted):
                return _then(unrecorded, quick), version, quick.events
            version = await self._append(secret, unrecorded.events, version, unrecorded.side)
        done = await self._outcome(secret, rotation, action)
        return done, version, done.events

    async def _outcome(self, secret: Secret, rotation: Rotation, action: Do) -> _Unrecorded:
        """Do the step's side effect; its outcome events, to be appended by the caller."""
        step = {"rotation_id": rotation.rotation_id, "step": action.step, "compensating": action.compensating}
        try:
            result = await self._execute(secret, rotation, action)
        except (StepFailed, ProviderError) as exc:
            return _Unrecorded([self._event(ev.SagaStepFailed, secret, **step, error=str(exc)[:500])], None)
        completed = self._event(ev.SagaStepCompleted, secret, **step, detail=result.detail, delivered=result.delivered)
        return _Unrecorded([completed, *result.events], result.side)

    async def _append(
        self, secret: Secret, events: list[ev.Event], expected: int, side: SideWrites | None = None
    ) -> int:
        stream = naming.secret_stream(secret.tenant, secret.secret_id)
        result = await self.engine.append(stream, events, SYSTEM, expected, side)
        return result.stream_version

    # --- intent: what must be durable before the side effect -------------------------------------

    async def _intent(self, secret: Secret, rotation: Rotation, action: Do) -> tuple[list[ev.Event], SideWrites | None]:
        now = self.engine.clock.now()
        if action.step == "create" and not action.compensating:
            assert rotation.to_version is not None
            # The new value is chosen now and stored with the intent: a repeated create re-adds *this* value.
            value = mint_value(secret.provider, await provider_config(self.engine, secret)).encode()
            keys = await self.engine.tenant_keys(secret.tenant)
            ciphertext = keys.seal(value, ref=secret.secret_id, version=rotation.to_version, purpose="value")
            fingerprint = keys.fingerprint(value)
            to_version = rotation.to_version

            async def store_pending(tx: Transaction) -> None:
                await tx.write(
                    "INSERT INTO lz_secret_versions (tenant, secret_id, version, ciphertext, fingerprint, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (secret.tenant, secret.secret_id, to_version, ciphertext, fingerprint, iso(now)),
                )

            return [], store_pending
        if action.step == "shift":
            # Activation is part of the intent: from here on, pull dependents get the target version.
            target = rotation.from_version if action.compensating else rotation.to_version
            previous = rotation.to_version if action.compensating else rotation.from_version
            assert target is not None
            if secret.current_version != target:
                return [
                    ev.SecretVersionActivated(
                        at=now,
                        tenant=secret.tenant,
                        secret_id=secret.secret_id,
                        version=target,
                        previous_version=previous,
                    )
                ], None
        return [], None

    # --- the side effects ------------------------------------------------------------------------

    async def _execute(self, secret: Secret, rotation: Rotation, action: Do) -> StepResult:
        with tracer.start_as_current_span(
            f"saga {action.step}{' (compensation)' if action.compensating else ''}"
        ) as span:
            span.set_attribute("lockzero.rotation_id", rotation.rotation_id)
            span.set_attribute("lockzero.tenant", secret.tenant)
            span.set_attribute("lockzero.provider", secret.provider)
            with observability.saga_step(
                tenant=secret.tenant,
                secret_id=secret.secret_id,
                rotation_id=rotation.rotation_id,
                step=action.step,
                compensating=action.compensating,
                provider=secret.provider,
            ):
                return await self._execute_step(secret, rotation, action)

    async def _execute_step(self, secret: Secret, rotation: Rotation, action: Do) -> StepResult:
        spec = STEPS[action.step]
        handler = spec.undo if action.compensating else spec.do
        assert handler is not None, f"{action.step} has no compensation"  # next_action only undoes steps with one
        # The rotation's two credentials come with the provider's config in one read (a round trip each, apart).
        # A step writes a value only after its last read of it (create's issued credential is stored with the next
        # step's intent), so they are right for the whole step; steps that read none decrypt none.
        versions = (rotation.from_version, rotation.to_version) if spec.reads_values else ()
        provider, creds = await open_with(self.engine, secret, versions)
        try:
            result = await handler(self, secret, rotation, provider, creds)
            return result if isinstance(result, StepResult) else StepResult(*result)
        finally:
            await provider.close()

    async def _credential(self, secret: Secret, creds: Credentials, version: int | None) -> Credential | None:
        if version is not None and version in creds:
            return creds[version]
        return await credential(self.engine, secret, version)

    async def _cred(self, secret: Secret, creds: Credentials, version: int | None) -> Credential:
        cred = await self._credential(secret, creds, version)
        if cred is None:
            raise StepFailed(f"version v{version} has no stored value")
        return cred

    def _event(self, kind: type[E], secret: Secret, **fields: Any) -> E:
        """A secret-stream event stamped now."""
        return kind(at=self.engine.clock.now(), tenant=secret.tenant, secret_id=secret.secret_id, **fields)

    async def _create_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> StepResult:
        assert rotation.to_version is not None
        previous = await self._credential(secret, creds, rotation.from_version)
        pending = await self._cred(secret, creds, rotation.to_version)
        wanted = Credential(pending.value, previous.username if previous else None)
        new = await _retry(lambda: provider.create(wanted, previous))
        created = self._event(
            ev.SecretVersionCreated,
            secret,
            version=rotation.to_version,
            origin="rotation",
            username=new.username,
        )
        detail = f"v{rotation.to_version} created beside v{rotation.from_version}"
        if new.value == pending.value:
            return StepResult([created], detail)
        # The provider chose the value (e.g. an IAM secret access key): store that one, with the outcome.
        keys = await self.engine.tenant_keys(secret.tenant)
        to_version = rotation.to_version
        ciphertext = keys.seal(new.value.encode(), ref=secret.secret_id, version=to_version, purpose="value")
        fingerprint = keys.fingerprint(new.value.encode())

        async def store_issued(tx: Transaction) -> None:
            await tx.write(
                "UPDATE lz_secret_versions SET ciphertext = ?, fingerprint = ? WHERE tenant = ? AND secret_id = ?"
                " AND version = ?",
                (ciphertext, fingerprint, secret.tenant, secret.secret_id, to_version),
            )

        return StepResult([created], detail, store_issued)

    async def _create_undo(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        cred = await self._credential(secret, creds, rotation.to_version)
        if cred is not None:
            await _retry(lambda: provider.discard(cred))
        if not provider.overlapping:
            # A single-credential provider replaced the old one at create: put it back, or nothing works.
            old = await self._cred(secret, creds, rotation.from_version)
            await _retry(lambda: provider.restore(old))
        events: list[ev.Event] = []
        if secret.version(rotation.to_version) is not None:
            events.append(self._event(ev.SecretVersionDiscarded, secret, version=rotation.to_version))
        return events, f"v{rotation.to_version} discarded"

    async def _restore_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        assert rotation.to_version is not None
        return await self._restore(secret, provider, creds, rotation.to_version), f"v{rotation.to_version} restored"

    async def _restore_undo(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        assert rotation.to_version is not None
        return await self._retire(secret, provider, creds, rotation.to_version), f"v{rotation.to_version} retired again"

    async def _validate_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        # Nothing is shifted to a credential that is not proven to authenticate: unknown fails the step too.
        target = await self._cred(secret, creds, rotation.to_version)
        tries = self._tries or VALIDATE_ATTEMPTS
        for attempt in range(tries):
            auth = await provider.authenticate(target)
            if auth.accepted:
                return [], f"v{rotation.to_version} authenticates ({auth.reason})"
            if attempt + 1 < tries:
                await asyncio.sleep(0.1 * (attempt + 1))
        what = "is refused" if auth.refused else "could not be proven to authenticate"
        raise StepFailed(f"v{rotation.to_version} {what} at the provider: {auth.reason}")

    async def _shift_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        assert rotation.to_version is not None
        event = "secret.rolled_back" if rotation.kind == "rollback" else "secret.rotated"
        await deliver(self.engine, secret, rotation.to_version, event)
        return [], await self._await_adoption(secret, rotation, rotation.to_version)

    async def _shift_undo(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        assert rotation.from_version is not None
        report = await deliver(self.engine, secret, rotation.from_version, "secret.rolled_back")
        return [], f"v{rotation.from_version} current again; delivered to {report.delivered}"

    async def _await_adoption(self, secret: Secret, rotation: Rotation, version: int) -> str:
        """Wait until every dependent holds ``version``, or the policy's adoption deadline passes."""
        total = len(secret.dependents)
        started = rotation.last("shift")
        begin = started.started_at if started else self.engine.clock.now()
        deadline = begin + timedelta(seconds=secret.policy.adoption_deadline_s)
        while True:
            # The head before the read: an adoption recorded after it wakes the wait below at once.
            head = await self.engine.store.wait_head()
            adopted = await adopted_versions(self.engine, secret.tenant, secret.secret_id)
            count = sum(1 for d in secret.dependents if adopted.get(d.dependent_id) == version)
            if count == total:
                return f"{count}/{total} dependents adopted v{version}"
            left = (deadline - self.engine.clock.now()).total_seconds()
            if left <= 0:
                return f"adoption deadline passed: {count}/{total} dependents adopted v{version}"
            # Woken by the next append anywhere (an adoption is one: a pull or a webhook's answer records it),
            # through the store's LISTEN/NOTIFY on PostgreSQL or in-process on SQLite; no polling of the read model.
            await self.engine.store.wait_for_events(head, min(left, ADOPTION_WAKE_AT_LEAST_EVERY_S))

    async def _retire_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        assert rotation.from_version is not None
        events = await self._retire(secret, provider, creds, rotation.from_version)
        until = cast(ev.SecretVersionRetired, events[0]).restorable_until
        return events, f"v{rotation.from_version} retired, restorable until {until.isoformat()}"

    async def _retire_undo(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        assert rotation.from_version is not None
        v = secret.version(rotation.from_version)
        events = await self._restore(secret, provider, creds, rotation.from_version)
        # Recorded only if the retirement was: a retire that failed half-way leaves the version "current".
        return (events if v is not None and v.status == "retired" else []), f"v{rotation.from_version} restored"

    async def _retire(self, secret: Secret, provider: Provider, creds: Credentials, version: int) -> list[ev.Event]:
        """Stop ``version`` working at the provider, restorable until the policy's grace period ends."""
        cred = await self._cred(secret, creds, version)
        await _retry(lambda: provider.retire(cred))
        until = self.engine.clock.now() + timedelta(seconds=secret.policy.grace_s)
        return [self._event(ev.SecretVersionRetired, secret, version=version, restorable_until=until)]

    async def _restore(self, secret: Secret, provider: Provider, creds: Credentials, version: int) -> list[ev.Event]:
        cred = await self._cred(secret, creds, version)
        await _retry(lambda: provider.restore(cred))
        return [self._event(ev.SecretVersionRestored, secret, version=version)]

    async def _verify_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        """Fails only on a definite answer (new refused, old accepted). An unknown check completes the step with
        that said: undoing a rotation because a check could not run would bring back the old credential."""
        new = await self._cred(secret, creds, rotation.to_version)
        old = await self._cred(secret, creds, rotation.from_version)
        new_auth = await provider.authenticate(new)
        if new_auth.refused:
            raise StepFailed(f"v{rotation.to_version} no longer authenticates: {new_auth.reason}")
        tries = self._tries or VALIDATE_ATTEMPTS
        for attempt in range(tries):
            old_auth = await provider.authenticate(old)
            if not old_auth.accepted or attempt + 1 == tries:
                break
            await asyncio.sleep(0.1 * (attempt + 1))  # some systems take a moment to propagate a retirement
        if old_auth.accepted:
            raise StepFailed(f"v{rotation.from_version} still authenticates after retirement: {old_auth.reason}")
        new_says = "works" if new_auth.accepted else f"unknown ({new_auth.reason})"
        old_says = "is refused" if old_auth.refused else f"refusal unknown ({old_auth.reason})"
        return [], f"v{rotation.to_version} {new_says}; v{rotation.from_version} {old_says}"

    async def _every_credential(self, secret: Secret) -> list[Credential]:
        """Every value ever stored for the secret, including one a cancelled rotation was creating."""
        async with self.engine.store.reader() as tx:
            rows = await tx.fetchall(
                "SELECT version FROM lz_secret_versions WHERE tenant = ? AND secret_id = ? ORDER BY version",
                (secret.tenant, secret.secret_id),
            )
        creds = [await credential(self.engine, secret, int(n)) for (n,) in rows]
        return [c for c in creds if c is not None]

    async def _revoke_do(
        self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials
    ) -> tuple[list[ev.Event], str]:
        numbers = tuple(v.number for v in secret.versions if v.status in ("live", "current", "retired"))
        every = await self._every_credential(secret)
        await _retry(lambda: provider.revoke(every))
        revoked = self._event(ev.SecretRevoked, secret, versions=numbers)
        return [revoked], f"revoked {', '.join(f'v{n}' for n in numbers)} at the provider"

    async def _alert_do(self, secret: Secret, rotation: Rotation, provider: Provider, creds: Credentials) -> StepResult:
        # A cancelled rotation's runner may have been mid-call when we revoked: sweep once more.
        every = await self._every_credential(secret)
        if any([not (await provider.authenticate(c)).refused for c in every]):
            await _retry(lambda: provider.revoke(every))
        report = await deliver(self.engine, secret, secret.current_version or 0, "secret.revoked")
        return StepResult([], f"alerts sent: {report.delivered}, failed: {report.failed}", delivered=report.delivered)

    # --- the end ---------------------------------------------------------------------------------

    async def _finish(
        self, secret: Secret, rotation: Rotation, version: int, outcome: Outcome, carried: _Unrecorded | None = None
    ) -> None:
        # The incident of a failed saga is opened *before* the outcome is recorded, under an id derived from the
        # rotation: a crash in between leaves the rotation unfinished, so a resumed runner comes back here and
        # finds the incident already open. Recording the outcome first could lose the incident for good.
        if outcome != "completed":
            await self.open_failure_incident(secret, rotation, outcome)
        finished = self._event(ev.RotationFinished, secret, rotation_id=rotation.rotation_id, outcome=outcome)
        before = carried.events if carried else []
        await self._append(secret, [*before, finished], version, carried.side if carried else None)
        observability.rotation_finished(
            tenant=secret.tenant,
            secret_id=secret.secret_id,
            rotation_id=rotation.rotation_id,
            kind=rotation.kind,
            outcome=outcome,
            requested_at=rotation.requested_at,
            now=finished.at,
        )
        # Incidents first, notifications (slow outbound calls) after: an agent that sees the rotation completed
        # should find its leak resolved, not wait for webhooks to answer.
        if outcome == "completed" and rotation.kind == "rotate":
            # Age-based incidents end with any completed rotation; a leak only when the live proof holds
            # (settle_leaks: the new credential works, the old one is refused, every dependent adopted).
            await resolve_for_secret(
                self.engine,
                secret.tenant,
                secret.secret_id,
                ("overdue_rotation",),
                resolution=f"{rotation.kind} {rotation.rotation_id} completed: v{rotation.to_version} current",
                ref_kind="rotation",
                ref_id=rotation.rotation_id,
                actor=SYSTEM,
            )
            await settle_leaks(self.engine, secret.tenant, secret.secret_id, SYSTEM)
        await notify(
            self.engine,
            secret.tenant,
            secret.secret_id,
            f"rotation.{outcome}",
            f"{rotation.kind} of {secret.secret_id} {outcome} (v{rotation.from_version} → v{rotation.to_version})",
            {
                "secret_id": secret.secret_id,
                "rotation_id": rotation.rotation_id,
                "kind": rotation.kind,
                "outcome": outcome,
                "from_version": f"v{rotation.from_version}" if rotation.from_version else None,
                "to_version": f"v{rotation.to_version}" if rotation.to_version else None,
            },
        )

    async def open_failure_incident(self, secret: Secret, rotation: Rotation, outcome: Outcome) -> str:
        failed = [s for s in rotation.steps if s.status == "failed"]
        why = failed[0].detail if failed else "unknown"
        return await open_incident(
            self.engine,
            secret.tenant,
            SYSTEM,
            kind="rotation_failed",
            severity="critical" if outcome == "failed" else "high",
            secret_id=secret.secret_id,
            summary=f"{rotation.kind} {rotation.rotation_id} {outcome}: {why}"[:500],
            incident_id=failure_incident_id(rotation.rotation_id),
        )


@dataclass(frozen=True)
class _Unrecorded:
    """A step's outcome events (and rows written with them) that the runner has not appended yet."""

    events: list[ev.Event]
    side: SideWrites | None


def _fold(secret: Secret, events: list[ev.Event]) -> Secret:
    """The secret after events this runner wrote (or is about to), folded on instead of read back."""
    for event in events:
        folded = apply_secret(secret, cast(ev.AnyEvent, event), SYSTEM)
        assert folded is not None
        secret = folded
    return secret


def _then(first: _Unrecorded, second: _Unrecorded) -> _Unrecorded:
    """Events not yet appended, followed by a step's outcome: one append's worth, in order."""
    return _Unrecorded([*first.events, *second.events], _both(first.side, second.side))


def _both(first: SideWrites | None, second: SideWrites | None) -> SideWrites | None:
    """Rows of a carried outcome and of the next intent, written in the one transaction of their append."""
    if first is None or second is None:
        return first or second

    async def write(tx: Transaction) -> None:
        await first(tx)
        await second(tx)

    return write


def failure_incident_id(rotation_id: str) -> str:
    return f"inc_{hashlib.sha256(f'lockzero/rotation_failed/{rotation_id}'.encode()).hexdigest()[:16]}"


Handler = Callable[
    [RotationSaga, Secret, Rotation, Provider, Credentials], Awaitable[StepResult | tuple[list[ev.Event], str]]
]


@dataclass(frozen=True)
class StepSpec:
    """One saga step: its side effect, and the compensation that undoes it when a later step fails (None: the
    step changes nothing that needs undoing)."""

    do: Handler
    undo: Handler | None = None
    #: Whether the step reads the rotation's two credentials (handed to it as ``creds``).
    reads_values: bool = True
    #: The step only reads (logs in with a credential): a first login needs no intent durable before it, since a
    #: runner that dies in it leaves nothing to undo or finish (RotationSaga._step).
    changes_nothing: bool = False


#: Every step of every saga kind, typed: mypy checks each handler's signature against ``Handler``.
STEPS: dict[ev.SagaStep, StepSpec] = {
    "create": StepSpec(RotationSaga._create_do, RotationSaga._create_undo),
    "restore": StepSpec(RotationSaga._restore_do, RotationSaga._restore_undo),
    "validate": StepSpec(RotationSaga._validate_do, changes_nothing=True),
    "shift": StepSpec(RotationSaga._shift_do, RotationSaga._shift_undo, reads_values=False),
    "retire": StepSpec(RotationSaga._retire_do, RotationSaga._retire_undo),
    "verify": StepSpec(RotationSaga._verify_do, changes_nothing=True),
    "revoke": StepSpec(RotationSaga._revoke_do, reads_values=False),
    "alert": StepSpec(RotationSaga._alert_do, reads_values=False),
}


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


async def _retry(call: Callable[[], Awaitable[T]]) -> T:
    """Provider calls are idempotent, so a transient failure is simply tried again (three times)."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.1, max=1),
        retry=retry_if_exception(_transient),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity returns or re-raises")
