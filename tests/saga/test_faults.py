"""Faults in arq mode with real `lockzero worker` processes: SIGKILL at and inside steps, a flushed Redis,
and a step that fails for real. Throughout, a sampler watches the Redis ACL user: never more than two
passwords. Waits are generous polls, not timing assertions (a killed worker's saga lock must expire and the
reconciler must notice the saga stalled before a second worker resumes it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.support import Key
from tests.saga.support import (
    ARQ,
    EMBEDDED,
    AclUser,
    PasswordSampler,
    Stack,
    StallingProxy,
    WebhookReceiver,
    admin_redis,
    running_stack,
    wait_for,
)

FAULT_DB = 6
RESUME_TIMEOUT = 40
STEPS = ["create", "validate", "shift", "retire", "verify"]


@pytest.fixture
def proxy() -> Iterator[StallingProxy]:
    with StallingProxy() as p:
        yield p


@pytest.fixture
def arq_stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(ARQ, tmp_path / "stack", FAULT_DB) as s:
        yield s


def steps(stack: Stack, key: Key, sid: str, rid: str) -> list[tuple[str, str]]:
    return [(s["step"], s["status"]) for s in stack.rotation(key, sid, rid)["steps"]]


def lock_value(rotation_id: str) -> bytes | None:
    """The arq worker's saga lock (workers/arq_worker.py): who runs the saga right now, if anyone."""
    r = admin_redis(FAULT_DB)
    try:
        return r.get(f"lockzero:saga-lock:{rotation_id}")
    finally:
        r.close()


def setup_secret(
    stack: Stack, user: AclUser, *, port: int | None = None, deadline: str = "60s"
) -> tuple[str, Key, str, str]:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{user.name}"
    if port is None:
        stack.add_redis_secret(tenant, sid, user)
    else:
        stack.add_redis_secret(tenant, sid, user, port=port)
    stack.policy(tenant, sid, "--adoption-deadline", deadline)
    token = stack.server.dependent(tenant, sid, "api", "pull")["token"]
    return tenant, key, sid, token


def finish_and_check(
    stack: Stack, key: Key, sid: str, rid: str, token: str, user: AclUser, sampler: PasswordSampler
) -> None:
    """Let the pull dependent adopt once the saga is in shift; the saga must complete and verify."""
    wait_for(
        lambda: stack.step_status(key, sid, rid, "shift") in ("started", "completed"),
        RESUME_TIMEOUT,
        "the saga to reach shift",
        interval=0.1,
    )
    pulled = stack.pull(token, sid).json()
    assert pulled["version"] == "v2", pulled
    result = stack.wait_finished(key, sid, rid, timeout=RESUME_TIMEOUT)
    assert result["status"] == "completed" and result["verified"] is True, (result, stack.logs())
    assert user.works(pulled["value"])
    assert user.refused(user.password)
    assert len(user.passwords()) == 1
    assert steps(stack, key, sid, rid) == [(s, "completed") for s in STEPS], "each step recorded once"
    assert sampler.errors == [] and sampler.samples > 0
    assert sampler.max_seen <= 2, f"the ACL user held {sampler.max_seen} passwords at once"


@pytest.mark.postgres
def test_worker_killed_inside_create_after_the_password_landed(
    arq_stack: Stack, acl_user: AclUser, proxy: StallingProxy
) -> None:
    stack = arq_stack
    _, key, sid, token = setup_secret(stack, acl_user, port=proxy.port)
    with PasswordSampler(acl_user) as sampler:
        proxy.stall_setuser.set()  # Redis applies `ACL SETUSER … >new`; the worker never hears back
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        wait_for(lambda: len(acl_user.passwords()) == 2, 20, "the new password to land at Redis")
        assert stack.step_status(key, sid, rid, "create") == "started"
        stack.kill_worker(stack.workers[0])
        proxy.stall_setuser.clear()
        assert stack.step_status(key, sid, rid, "create") == "started", "the outcome was never recorded"
        stack.start_worker()
        finish_and_check(stack, key, sid, rid, token, acl_user, sampler)


@pytest.mark.postgres
def test_worker_killed_while_shift_waits_for_adoption(arq_stack: Stack, acl_user: AclUser) -> None:
    stack = arq_stack
    _, key, sid, token = setup_secret(stack, acl_user)
    with PasswordSampler(acl_user) as sampler:
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        wait_for(lambda: stack.step_status(key, sid, rid, "shift") == "started", 20, "shift", interval=0.05)
        first_lock = wait_for(lambda: lock_value(rid), 10, "the first worker's saga lock")
        stack.kill_worker(stack.workers[0])
        stack.start_worker()
        # The second worker takes the saga over (its own lock) and waits for adoption, as the first did.
        wait_for(
            lambda: (v := lock_value(rid)) is not None and v != first_lock,
            RESUME_TIMEOUT,
            "a second worker to take the saga over",
            interval=0.2,
        )
        assert stack.step_status(key, sid, rid, "shift") == "started"
        assert stack.step_status(key, sid, rid, "retire") is None
        assert acl_user.works(acl_user.password), "the old password lives until the dependent adopted"
        finish_and_check(stack, key, sid, rid, token, acl_user, sampler)


@pytest.mark.postgres
def test_worker_killed_inside_retire_after_the_old_password_was_removed(
    arq_stack: Stack, acl_user: AclUser, proxy: StallingProxy
) -> None:
    stack = arq_stack
    _, key, sid, token = setup_secret(stack, acl_user, port=proxy.port)
    with PasswordSampler(acl_user) as sampler:
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        wait_for(lambda: stack.step_status(key, sid, rid, "shift") == "started", 20, "shift", interval=0.05)
        proxy.stall_setuser.set()  # retire's `ACL SETUSER … <old` lands, its reply never comes back
        assert stack.pull(token, sid).json()["version"] == "v2"
        wait_for(lambda: len(acl_user.passwords()) == 1, 20, "the old password to be removed at Redis")
        assert stack.step_status(key, sid, rid, "retire") == "started"
        stack.kill_worker(stack.workers[0])
        proxy.stall_setuser.clear()
        assert stack.step_status(key, sid, rid, "retire") == "started"
        assert acl_user.refused(acl_user.password)
        stack.start_worker()
        finish_and_check(stack, key, sid, rid, token, acl_user, sampler)


@pytest.mark.postgres
def test_flushed_redis_while_shift_waits_the_reconciler_requeues(
    arq_stack: Stack, acl_user: AclUser, webhook: WebhookReceiver
) -> None:
    stack = arq_stack
    tenant, key, sid, token = setup_secret(stack, acl_user)
    webhook.signing_secret = stack.server.dependent(tenant, sid, "billing", f"webhook:{webhook.url}")["signing_secret"]
    with PasswordSampler(acl_user) as sampler:
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        wait_for(lambda: stack.step_status(key, sid, rid, "shift") == "started", 20, "shift", interval=0.05)
        wait_for(lambda: lock_value(rid), 10, "the saga lock")
        flush = admin_redis(FAULT_DB)
        flush.flushdb()
        flush.close()
        assert lock_value(rid) is None
        # Redis is only a trigger: the reconciler finds the quiet saga in the event store and queues it again.
        wait_for(lambda: lock_value(rid), RESUME_TIMEOUT, "the reconciler to re-enqueue the saga", interval=0.2)
        finish_and_check(stack, key, sid, rid, token, acl_user, sampler)
    rotated = [d for d in webhook.received() if d.json["event"] == "secret.rotated"]
    assert rotated and all(d.signature_ok and d.json["version"] == "v2" for d in rotated)


@pytest.mark.postgres
def test_job_lost_before_any_worker_ran_it(tmp_path: Path, acl_user: AclUser) -> None:
    with running_stack(ARQ, tmp_path / "stack", FAULT_DB, worker=False) as stack:
        tenant, key = stack.tenant_and_key()
        sid = f"prod/redis/{acl_user.name}"
        stack.add_redis_secret(tenant, sid, acl_user)
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        queued = admin_redis(FAULT_DB)
        assert queued.zcard("arq:queue") >= 1, "the API queued a job"
        queued.flushdb()
        queued.close()
        stack.start_worker()
        result = stack.wait_finished(key, sid, rid, timeout=RESUME_TIMEOUT)
        assert result["status"] == "completed" and result["verified"] is True, result
        assert acl_user.refused(acl_user.password)


@pytest.mark.postgres
def test_failing_validate_compensates_to_the_old_credential(arq_stack: Stack, acl_user: AclUser) -> None:
    """A disabled user (`off`): `ACL SETUSER u >new` succeeds, but Redis refuses every AUTH (WRONGPASS), so
    the saga must discard the new password and stay on v1."""
    stack = arq_stack
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    acl_user.setuser("off")
    with PasswordSampler(acl_user) as sampler:
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        result = stack.wait_finished(key, sid, rid)
    assert result["status"] == "compensated", result
    assert result["verified"] is False
    rotation = stack.rotation(key, sid, rid)
    assert rotation["outcome"] == "compensated"
    assert [(s["step"], s["status"]) for s in rotation["steps"]] == [
        ("create", "completed"),
        ("validate", "failed"),
        ("create (compensation)", "completed"),
    ]
    assert "WRONGPASS" in rotation["steps"][1]["error"], rotation
    assert stack.metadata(key, sid)["current_version"] == "v1"
    assert stack.metadata(key, sid)["status"] == "active"
    incidents = stack.server.result(key, "get_active_incidents", {"secret_id": sid})["incidents"]
    failed = [i for i in incidents if i["kind"] == "rotation_failed"]
    assert len(failed) == 1 and rid in failed[0]["summary"], incidents
    assert sampler.max_seen <= 2

    assert len(acl_user.passwords()) == 1, "the new password was discarded"
    acl_user.setuser("on")
    assert acl_user.works(acl_user.password), "v1 still works"

    # The discarded number is not reused: the next rotation goes v1 -> v3 and completes.
    again = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "retry"})
    assert (again["from_version"], again["to_version"]) == ("v1", "v3"), again
    assert stack.wait_finished(key, sid, again["rotation_id"])["verified"] is True
    assert acl_user.refused(acl_user.password)


@pytest.mark.postgres
def test_a_user_allowed_only_get_rotates_to_verified(arq_stack: Stack, acl_user: AclUser) -> None:
    """No PING permission is needed: AUTH proves the new password works and the old one is refused (WRONGPASS),
    and the user's permissions are exactly what they were."""
    stack = arq_stack
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    acl_user.setuser("-@all", "+get")
    rules_before = acl_user.rules("commands")
    stack.add_redis_secret(tenant, sid, acl_user)
    rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
    result = stack.wait_finished(key, sid, rid)
    assert result["verified"] is True, result
    assert result["checks"]["new_credential_valid"] == "passed"
    assert result["checks"]["old_credential_rejected"] == "passed"
    assert result["checks"]["reasons"] == {}
    assert acl_user.refused(acl_user.password)
    assert acl_user.rules("commands") == rules_before, "permissions untouched"
    acl_user.setuser("+@all")


def test_embedded_server_killed_mid_rotation_resumes_on_restart(tmp_path: Path, acl_user: AclUser) -> None:
    """Embedded mode: the saga runs inside `lockzero serve`; SIGKILL it while shift waits, start it again on
    the same SQLite file, and the in-process reconciler carries the saga on from its events."""
    with running_stack(EMBEDDED, tmp_path / "stack") as stack, PasswordSampler(acl_user) as sampler:
        _, key, sid, token = setup_secret(stack, acl_user)
        rid = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leak"})["rotation_id"]
        wait_for(lambda: stack.step_status(key, sid, rid, "shift") == "started", 20, "shift", interval=0.05)
        assert stack.server.proc is not None
        stack.server.proc.kill()
        stack.server.proc.wait(timeout=10)
        stack.server.start()
        assert stack.step_status(key, sid, rid, "retire") is None
        assert acl_user.works(acl_user.password)
        finish_and_check(stack, key, sid, rid, token, acl_user, sampler)
