"""Policies, approvals, the scheduler (overdue, auto-rotation, grace end) and incidents at the engine,
on both backends, with a clock the test moves instead of waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import approvals, policies, secrets, tenants
from lockzero.engine.commands.incidents import active_incidents, open_incident
from lockzero.engine.commands.rotations import rollback, rotate
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from lockzero.engine.queries.history import rotation_history
from lockzero.engine.saga.scheduler import run_pass
from lockzero.workers.inprocess import InProcessQueue
from tests.engine.support import OPERATOR, T0, ManualClock, add_generated, folded_secret, scalar
from tests.saga.support import AclUser

AGENT = ev.EventMeta(actor_id="key_agent_1", actor_type="agent")
DAY = 86400


class RecordingQueue:
    """Records what would have been enqueued, runs nothing."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str, str]] = []

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        self.enqueued.append((tenant, secret_id, rotation_id))


async def setup(engine: Engine, secret_id: str = "prod/app/token", **policy: object) -> str:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await add_generated(engine, secret_id, **policy)
    return "acme"


async def incidents(engine: Engine, secret_id: str, kind: str | None = None) -> list[tuple[str, str]]:
    page = await active_incidents(engine, "acme", secret_id=secret_id, kind=kind)
    return [(i.incident_id, i.kind) for i in page.incidents]


async def incident_status(engine: Engine, incident_id: str) -> str:
    return str(
        await scalar(
            engine, "SELECT status FROM rm_incidents WHERE tenant = ? AND incident_id = ?", ("acme", incident_id)
        )
    )


# --- agent permission --------------------------------------------------------------------------


async def test_agent_may_not_rotate_when_policy_forbids_and_the_attempt_is_an_incident(
    engine: Engine, queue: InProcessQueue
) -> None:
    await setup(engine, allow_agent_rotation=False)
    with pytest.raises(Forbidden) as info:
        await rotate(engine, queue, "acme", "prod/app/token", AGENT, "leak")
    assert info.value.name == "forbidden"
    (incident,) = await incidents(engine, "prod/app/token")
    assert incident[1] == "policy_violation"
    assert info.value.data["incident_id"] == incident[0]
    with pytest.raises(Forbidden):
        await rollback(engine, queue, "acme", "prod/app/token", AGENT, "undo")
    secret = await folded_secret(engine, "prod/app/token")
    assert secret.rotations == () and secret.current_version == 1
    # An operator (a human at the CLI) is not an agent: the same policy lets it rotate.
    started = await rotate(engine, queue, "acme", "prod/app/token", OPERATOR, "by hand")
    await queue.wait_idle()
    assert (await folded_secret(engine, "prod/app/token")).rotation(started.rotation_id).outcome == "completed"  # type: ignore[union-attr]


async def test_agents_rotate_by_default(engine: Engine, queue: InProcessQueue) -> None:
    await setup(engine)
    started = await rotate(engine, queue, "acme", "prod/app/token", AGENT, "leak")
    await queue.wait_idle()
    secret = await folded_secret(engine, "prod/app/token")
    assert secret.rotation(started.rotation_id).outcome == "completed"  # type: ignore[union-attr]
    assert await incidents(engine, "prod/app/token") == []


async def test_policy_limits_are_checked(engine: Engine) -> None:
    await setup(engine)
    for bad in (
        {"required_approvals": 11},
        {"required_approvals": -1},
        {"max_age_s": 30},
        {"grace_s": -1},
        {"adoption_deadline_s": 0},
        {"adoption_deadline_s": 2 * DAY},
        {"notify": ("ftp://example.test/hook",)},
    ):
        with pytest.raises(InvalidInput):
            await policies.update_policy(engine, "acme", "prod/app/token", OPERATOR, **bad)
    with pytest.raises(NotFound):
        await policies.update_policy(engine, "acme", "prod/nope", OPERATOR, required_approvals=1)
    policy = await policies.update_policy(engine, "acme", "prod/app/token", OPERATOR, required_approvals=2)
    assert policy.required_approvals == 2 and policy.allow_agent_rotation is True  # other fields unchanged


# --- approvals -----------------------------------------------------------------------------------


async def test_rotation_waits_for_distinct_approvers(engine: Engine) -> None:
    await setup(engine, required_approvals=2)
    q = RecordingQueue()
    started = await rotate(engine, q, "acme", "prod/app/token", AGENT, "leak")
    assert started.status == "pending_approval"
    assert started.note is not None and f"lockzero approve {started.rotation_id}" in started.note
    assert q.enqueued == []
    # Asking again returns the same pending rotation, not a second one.
    again = await rotate(engine, q, "acme", "prod/app/token", AGENT, "leak again")
    assert again.rotation_id == started.rotation_id and q.enqueued == []

    first = await approvals.approve(engine, "acme", started.rotation_id, "alice", q)
    assert (first.approvers, first.required, first.status) == (["alice"], 2, "pending_approval")
    with pytest.raises(Conflict, match="distinct"):
        await approvals.approve(engine, "acme", started.rotation_id, "alice", q)
    with pytest.raises(Conflict):
        await approvals.approve(engine, "acme", started.rotation_id, " alice ", q)  # same person, padded
    assert q.enqueued == []
    secret = await folded_secret(engine, "prod/app/token")
    assert secret.rotation(started.rotation_id).approvers == ("alice",)  # type: ignore[union-attr]

    second = await approvals.approve(engine, "acme", started.rotation_id, "bob", q)
    assert (second.approvers, second.status) == (["alice", "bob"], "in_progress")
    assert q.enqueued == [("acme", "prod/app/token", started.rotation_id)]
    with pytest.raises(Conflict):
        await approvals.approve(engine, "acme", started.rotation_id, "carol", q)
    events, metas, _ = await engine.load_with_meta(naming.secret_stream("acme", "prod/app/token"))
    approved = [
        (type(e).__name__, m.actor_id, m.actor_type)
        for e, m in zip(events, metas, strict=True)
        if isinstance(e, ev.RotationApproved | ev.RotationApprovalsMet)
    ]
    assert approved == [
        ("RotationApproved", "alice", "person"),
        ("RotationApproved", "bob", "person"),
        ("RotationApprovalsMet", "bob", "person"),
    ]


async def test_approval_errors(engine: Engine) -> None:
    await setup(engine)
    await tenants.create_tenant(engine, "other", OPERATOR)
    q = RecordingQueue()
    started = await rotate(engine, q, "acme", "prod/app/token", AGENT, "no approvals needed")
    assert started.status == "in_progress" and started.note is None
    with pytest.raises(Conflict):
        await approvals.approve(engine, "acme", started.rotation_id, "alice", q)
    with pytest.raises(NotFound):
        await approvals.approve(engine, "acme", "rot_doesnotexist", "alice", q)
    with pytest.raises(NotFound):  # another tenant's rotation is not found, not approvable
        await approvals.approve(engine, "other", started.rotation_id, "alice", q)
    for nobody in ("", "   ", "x" * 129, "al\nice"):
        with pytest.raises(InvalidInput):
            await approvals.approve(engine, "acme", started.rotation_id, nobody, q)


async def test_approved_rotation_runs_to_completion(engine: Engine, queue: InProcessQueue) -> None:
    await setup(engine, required_approvals=1)
    started = await rotate(engine, queue, "acme", "prod/app/token", AGENT, "leak")
    await queue.wait_idle()
    assert (await folded_secret(engine, "prod/app/token")).rotation(started.rotation_id).steps == ()  # type: ignore[union-attr]
    await approvals.approve(engine, "acme", started.rotation_id, "alice", queue)
    await queue.wait_idle()
    secret = await folded_secret(engine, "prod/app/token")
    rotation = secret.rotation(started.rotation_id)
    assert rotation is not None and rotation.outcome == "completed"
    assert [s.step for s in rotation.steps] == ["create", "validate", "shift", "retire", "verify"]
    assert secret.current_version == 2


# --- the scheduler: overdue and auto-rotation ----------------------------------------------------


async def test_overdue_secret_gets_one_incident_and_an_auto_rotation(
    engine: Engine, clock: ManualClock, queue: InProcessQueue
) -> None:
    await setup(engine, max_age_s=DAY, auto_rotate=True)
    report = await run_pass(engine, queue)
    assert report.overdue_incidents == [] and report.auto_rotations == []  # not due yet

    clock.advance(days=2)
    report = await run_pass(engine, queue)
    assert len(report.overdue_incidents) == 1 and len(report.auto_rotations) == 1
    # The auto-rotation runs in the background from the pass on and may have resolved the incident already.
    incident = (report.overdue_incidents[0], "overdue_rotation")
    kind = await scalar(
        engine,
        "SELECT kind FROM rm_incidents WHERE tenant = ? AND incident_id = ? AND secret_id = ?",
        ("acme", incident[0], "prod/app/token"),
    )
    assert kind == "overdue_rotation"
    await queue.wait_idle()

    secret = await folded_secret(engine, "prod/app/token")
    rotation = secret.rotation(report.auto_rotations[0])
    assert rotation is not None and rotation.outcome == "completed"
    assert (rotation.actor_id, rotation.actor_type) == ("lockzero:scheduler", "system")
    assert secret.current_version == 2 and secret.last_rotated_at == clock.now()
    assert await incident_status(engine, incident[0]) == "resolved"
    assert await incidents(engine, "prod/app/token") == []

    # Rotated just now: not overdue again, no duplicate incident, no second rotation.
    report = await run_pass(engine, queue)
    assert report.overdue_incidents == [] and report.auto_rotations == []
    # A day and a bit later it is due again: a new incident (the old one is resolved).
    clock.advance(days=1, minutes=1)
    report = await run_pass(engine, queue)
    assert len(report.overdue_incidents) == 1 and len(report.auto_rotations) == 1
    await queue.wait_idle()
    assert (await folded_secret(engine, "prod/app/token")).current_version == 3


async def test_repeated_passes_while_overdue_open_no_duplicates(engine: Engine, clock: ManualClock) -> None:
    await setup(engine, max_age_s=DAY, auto_rotate=True)
    q = RecordingQueue()  # the saga never runs: the incident stays open
    clock.advance(days=3)
    first = await run_pass(engine, q)
    second = await run_pass(engine, q)
    assert len(first.overdue_incidents) == 1 and len(first.auto_rotations) == 1
    assert second.overdue_incidents == [] and second.auto_rotations == []
    assert len(q.enqueued) == 1
    assert len(await incidents(engine, "prod/app/token", "overdue_rotation")) == 1


async def test_overdue_without_auto_rotate_is_an_incident_only(
    engine: Engine, clock: ManualClock, queue: InProcessQueue
) -> None:
    await setup(engine, max_age_s=DAY)
    clock.advance(days=2)
    report = await run_pass(engine, queue)
    assert len(report.overdue_incidents) == 1 and report.auto_rotations == []
    await queue.wait_idle()
    secret = await folded_secret(engine, "prod/app/token")
    assert secret.rotations == () and secret.current_version == 1
    assert (await run_pass(engine, queue)).overdue_incidents == []
    assert [k for _, k in await incidents(engine, "prod/app/token")] == ["overdue_rotation"]
    # A human rotates: the overdue incident resolves.
    await rotate(engine, queue, "acme", "prod/app/token", OPERATOR, "overdue")
    await queue.wait_idle()
    assert await incidents(engine, "prod/app/token") == []
    assert await incident_status(engine, report.overdue_incidents[0]) == "resolved"


async def test_auto_rotation_is_not_an_agent_but_still_needs_approvals(
    engine: Engine, clock: ManualClock, queue: InProcessQueue
) -> None:
    await setup(engine, "prod/a", max_age_s=DAY, auto_rotate=True, allow_agent_rotation=False)
    await add_generated(engine, "prod/b", max_age_s=DAY, auto_rotate=True, required_approvals=1)
    clock.advance(days=2)
    report = await run_pass(engine, queue)
    assert len(report.overdue_incidents) == 2 and len(report.auto_rotations) == 2
    await queue.wait_idle()
    assert (await folded_secret(engine, "prod/a")).current_version == 2
    assert await incidents(engine, "prod/a", "policy_violation") == []
    b = await folded_secret(engine, "prod/b")
    assert b.current_version == 1 and b.in_flight is not None and b.in_flight.status == "pending_approval"
    await approvals.approve(engine, "acme", b.in_flight.rotation_id, "alice", queue)
    await queue.wait_idle()
    assert (await folded_secret(engine, "prod/b")).current_version == 2
    assert await incidents(engine, "prod/b") == []


# --- grace period --------------------------------------------------------------------------------


async def _rotate_and_wait(engine: Engine, queue: InProcessQueue, secret_id: str) -> str:
    started = await rotate(engine, queue, "acme", secret_id, OPERATOR, "rotate")
    await queue.wait_idle()
    rotation = (await folded_secret(engine, secret_id)).rotation(started.rotation_id)
    assert rotation is not None and rotation.outcome == "completed"
    return started.rotation_id


async def test_retired_version_is_restorable_during_grace(
    engine: Engine, clock: ManualClock, queue: InProcessQueue
) -> None:
    await setup(engine, grace_s=DAY)
    await _rotate_and_wait(engine, queue, "prod/app/token")
    secret = await folded_secret(engine, "prod/app/token")
    v1 = secret.version(1)
    assert v1 is not None and v1.status == "retired" and v1.restorable_until == T0 + timedelta(days=1)
    clock.advance(hours=23)
    assert (await run_pass(engine, queue)).expired_versions == []
    started = await rollback(engine, queue, "acme", "prod/app/token", OPERATOR, "broke something")
    assert started.restored_version == "v1"
    await queue.wait_idle()
    secret = await folded_secret(engine, "prod/app/token")
    assert secret.rotation(started.rotation_id).outcome == "completed"  # type: ignore[union-attr]
    assert secret.current_version == 1 and secret.version(2).status == "retired"  # type: ignore[union-attr]


async def test_grace_end_expires_the_version_and_rollback_is_refused(
    engine: Engine, clock: ManualClock, queue: InProcessQueue
) -> None:
    await setup(engine, grace_s=DAY)
    await _rotate_and_wait(engine, queue, "prod/app/token")
    clock.advance(days=1, seconds=1)
    report = await run_pass(engine, queue)
    assert report.expired_versions == ["prod/app/token:v1"]
    events, metas, _ = await engine.load_with_meta(naming.secret_stream("acme", "prod/app/token"))
    expired = [(e, m) for e, m in zip(events, metas, strict=True) if isinstance(e, ev.SecretVersionExpired)]
    assert len(expired) == 1 and expired[0][0].version == 1 and expired[0][1].actor_id == "lockzero:scheduler"
    assert (await folded_secret(engine, "prod/app/token")).version(1).status == "expired"  # type: ignore[union-attr]
    assert (await run_pass(engine, queue)).expired_versions == []  # once only
    with pytest.raises(Conflict) as info:
        await rollback(engine, queue, "acme", "prod/app/token", OPERATOR, "too late")
    assert info.value.name == "conflict"
    with pytest.raises(Conflict):
        await rollback(engine, queue, "acme", "prod/app/token", OPERATOR, "too late", to_version=1)
    secret = await folded_secret(engine, "prod/app/token")
    assert secret.current_version == 2 and secret.in_flight is None
    assert [r.kind for r in secret.rotations] == ["rotate"]


async def test_rollback_refused_once_grace_ended_even_before_the_scheduler_ran(
    engine: Engine, clock: ManualClock, queue: InProcessQueue
) -> None:
    await setup(engine, grace_s=DAY)
    await _rotate_and_wait(engine, queue, "prod/app/token")
    clock.advance(days=2)
    with pytest.raises(Conflict):
        await rollback(engine, queue, "acme", "prod/app/token", OPERATOR, "past grace")


# --- incidents -----------------------------------------------------------------------------------


async def test_completed_rotation_resolves_leak_overdue_and_anomaly_but_not_policy_violations(
    engine: Engine, queue: InProcessQueue
) -> None:
    await setup(engine)
    opened = {
        kind: await open_incident(
            engine, "acme", OPERATOR, kind=kind, severity="high", secret_id="prod/app/token", summary=kind
        )
        for kind in ("leaked_credential", "overdue_rotation", "policy_violation", "usage_anomaly")
    }
    rotation_id = await _rotate_and_wait(engine, queue, "prod/app/token")
    # A usage anomaly opened before the rotation ends with it too (issue 15: a verified rotation away from the
    # affected version resolves it); a policy violation is about a caller, not the credential, and stays.
    assert sorted(k for _, k in await incidents(engine, "prod/app/token")) == ["policy_violation"]
    events, _ = await engine.load(naming.incident_stream("acme", opened["leaked_credential"]))
    linked = [e for e in events if isinstance(e, ev.IncidentLinked)]
    assert [(e.ref_kind, e.ref_id) for e in linked] == [("rotation", rotation_id)]
    assert isinstance(events[-1], ev.IncidentResolved) and rotation_id in events[-1].resolution


async def open_leak(engine: Engine, sid: str, summary: str) -> str:
    return await open_incident(
        engine, "acme", OPERATOR, kind="leaked_credential", severity="critical", secret_id=sid, summary=summary
    )


@asynccontextmanager
async def leaked_redis_secret(engine: Engine) -> AsyncIterator[tuple[AclUser, str, str]]:
    """Tenant acme, a redis_acl secret on a real Redis ACL user (deleted afterwards), and an open leak of it:
    (the user, the secret id, the leak incident id)."""
    await tenants.create_tenant(engine, "acme", OPERATOR)
    user = AclUser.create()
    try:
        sid = f"prod/redis/{user.name}"
        await secrets.register_secret(
            engine, "acme", OPERATOR, secret_id=sid, provider="redis_acl", environment="prod",
            config={"url": "redis://127.0.0.1:6379/0", "username": user.name}, value=user.password.encode(),
        )  # fmt: skip
        yield user, sid, await open_leak(engine, sid, "x")
    finally:
        user.delete()


async def test_failed_rotation_opens_rotation_failed_and_keeps_the_leak_open(
    engine: Engine, queue: InProcessQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real failure: the Redis user is disabled (`off`), so Redis refuses every AUTH and validate fails."""
    monkeypatch.setattr(
        "lockzero.engine.saga.rotation.VALIDATE_ATTEMPTS", 1
    )  # one refusal is enough; no need to wait out retries
    async with leaked_redis_secret(engine) as (user, sid, leak):
        user.setuser("off")
        started = await rotate(engine, queue, "acme", sid, OPERATOR, "rotate")
        await queue.wait_idle()
        secret = await folded_secret(engine, sid)
        rotation = secret.rotation(started.rotation_id)
        assert rotation is not None and rotation.outcome == "compensated"
        failed = rotation.last("validate")
        assert failed is not None and "WRONGPASS" in failed.detail, failed
        assert secret.current_version == 1
        kinds = sorted(k for _, k in await incidents(engine, sid))
        assert kinds == ["leaked_credential", "rotation_failed"]
        assert await incident_status(engine, leak) == "open"
        history = await rotation_history(engine, "acme", sid)
        assert history.rotations[0].outcome == "compensated"


async def test_a_leak_left_open_after_the_saga_is_settled_by_verify_remediation(
    engine: Engine, queue: InProcessQueue, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saga settles leaks as it finishes; when it could not (here its settling is skipped, as when a live check
    could not run then), the verify_remediation that proves the rotation resolves the leaks opened before the
    rotation was asked for, and only those: one reported after it may be about the credential it made."""
    from lockzero.engine.saga import rotation as saga
    from lockzero.engine.saga.verification import verify

    async def could_not_settle(*_: object) -> None:
        return None

    monkeypatch.setattr(saga, "settle_leaks", could_not_settle)
    async with leaked_redis_secret(engine) as (user, sid, leak):
        clock.advance(seconds=1)
        started = await rotate(engine, queue, "acme", sid, OPERATOR, "leaked")
        await queue.wait_idle()
        clock.advance(seconds=1)
        later = await open_leak(engine, sid, "y")
        assert await incident_status(engine, leak) == "open"
        result = await verify(engine, "acme", sid, started.rotation_id)
        assert result.verified, result
        assert await incident_status(engine, leak) == "resolved"
        assert await incident_status(engine, later) == "open"
        events, _ = await engine.load(naming.incident_stream("acme", leak))
        assert isinstance(events[-1], ev.IncidentResolved) and started.rotation_id in events[-1].resolution
        assert user.password not in str(events)


async def test_pending_approval_does_not_block_an_emergency_revoke(engine: Engine) -> None:
    from lockzero.engine.commands.rotations import revoke

    await setup(engine, required_approvals=2)
    q = RecordingQueue()
    pending = await rotate(engine, q, "acme", "prod/app/token", AGENT, "routine")
    assert pending.status == "pending_approval"
    result = await revoke(engine, "acme", "prod/app/token", AGENT, "credential is being abused right now")
    assert result.status == "revoked"
