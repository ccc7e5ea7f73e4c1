"""verify_remediation's long poll (wait_seconds), through the real server in both queue modes: the answer
waits while the rotation runs and comes back as soon as it finishes, or when the wait is over; the checks in
it are the same live checks as without the wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from tests.api.support import Key
from tests.saga.support import AclUser, Stack, wait_for


def verify_waiting(
    stack: Stack, key: Key, secret_id: str, rotation_id: str, wait: float
) -> tuple[dict[str, Any], float]:
    params = {"secret_id": secret_id, "rotation_id": rotation_id, "wait_seconds": wait}
    started = time.monotonic()
    result = dict(stack.server.result(key, "verify_remediation", params))
    return result, time.monotonic() - started


def redis_secret(stack: Stack, acl_user: AclUser) -> tuple[str, Key, str]:
    """A tenant, its key, and a redis_acl secret on ``acl_user``."""
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    return tenant, key, sid


@contextmanager
def _held_rotation(stack: Stack, acl_user: AclUser) -> Iterator[tuple[Key, str, str, str]]:
    """A rotation that stays in_progress (its pull dependent does not read, the deadline is a minute away) until
    the test is done, or pulls itself (the dependent's token is the fourth value); then the dependent pulls and
    the rotation finishes while its Redis user still exists. It is handed over once the saga waits in its shift
    step: a pull before that serves the old version, which adopts nothing."""
    tenant, key, sid = redis_secret(stack, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "60s")
    token = stack.server.dependent(tenant, sid, "api", "pull")["token"]
    started = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leaked in a CI log"})
    rid = started["rotation_id"]
    try:
        wait_for(lambda: stack.step_status(key, sid, rid, "shift") == "started", 30, "the saga to reach shift")
        yield key, sid, rid, token
    finally:
        stack.pull(token, sid).raise_for_status()
        stack.wait_finished(key, sid, rid)


def test_one_waiting_call_answers_when_the_rotation_finishes(stack: Stack, acl_user: AclUser) -> None:
    """A pull dependent that never reads holds the saga in shift until the 2 s adoption deadline: the single
    call with wait_seconds=15 answers once the rotation completed (about 2 s in, well before 15 s), with the
    live checks run then: the new password works, the old one is refused, the laggard is named."""
    tenant, key, sid = redis_secret(stack, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "2s")
    stack.server.dependent(tenant, sid, "legacy-cron", "pull")  # never reads
    old = acl_user.password
    started = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leaked in a CI log"})
    assert started["status"] == "in_progress", started

    result, took = verify_waiting(stack, key, sid, started["rotation_id"], 15)

    assert result["status"] == "completed", result
    assert 1.0 <= took < 12, f"answered after {took:.2f} s"
    assert result["completed_at"] is not None
    assert result["checks"]["new_credential_valid"] == "passed", result
    assert result["checks"]["old_credential_rejected"] == "passed", result
    assert [p["service"] for p in result["checks"]["dependents_adopted"]["pending"]] == ["legacy-cron"]
    assert result["verified"] is False, "a dependent still on the old version is not a verified remediation"
    assert acl_user.refused(old)


def test_the_wait_ends_at_wait_seconds_while_the_rotation_still_runs(stack: Stack, acl_user: AclUser) -> None:
    """The adoption deadline is a minute away: a 1 s wait answers in_progress after about a second, naming what
    the saga waits for; once the dependent pulls, a waiting call answers with the finished, verified rotation."""
    with _held_rotation(stack, acl_user) as (key, sid, rid, token):
        result, took = verify_waiting(stack, key, sid, rid, 1)

        assert result["status"] == "in_progress", result
        assert 0.9 <= took < 8, f"answered after {took:.2f} s"
        assert result["verified"] is False
        assert [p["service"] for p in result["checks"]["dependents_adopted"]["pending"]] == ["api"]
        # The pull is the adoption the saga waits for; a waiting call then answers with the finished rotation.
        stack.pull(token, sid).raise_for_status()
        done, _ = verify_waiting(stack, key, sid, rid, 15)
        assert done["status"] == "completed" and done["verified"] is True, done


def test_a_finished_rotation_answers_at_once(stack: Stack, acl_user: AclUser) -> None:
    _, key, sid = redis_secret(stack, acl_user)
    started = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "scheduled"})
    first, _ = verify_waiting(stack, key, sid, started["rotation_id"], 15)
    assert first["verified"] is True, first
    again, took = verify_waiting(stack, key, sid, started["rotation_id"], 15)
    assert again["verified"] is True and took < 5, (again, took)


@pytest.mark.parametrize("wait", [-1, 20.5, "5", True, None])
def test_a_bad_wait_is_invalid_params_and_changes_nothing(stack: Stack, acl_user: AclUser, wait: Any) -> None:
    _, key, sid = redis_secret(stack, acl_user)
    error = stack.server.error(key, "verify_remediation", {"secret_id": sid, "wait_seconds": wait})
    assert error["code"] == -32602, error
    assert error["message"].startswith("invalid arguments for verify_remediation"), error
    assert stack.history(key, sid) == []


def test_inside_a_batch_the_wait_is_not_applied(stack: Stack, acl_user: AclUser) -> None:
    """A batch's messages run one after another: three waiting calls would hold the batch for 30 s."""
    with _held_rotation(stack, acl_user) as (key, sid, rid, _):
        params = {"secret_id": sid, "rotation_id": rid, "wait_seconds": 10}
        batch = [{"jsonrpc": "2.0", "id": i, "method": "verify_remediation", "params": params} for i in range(3)]
        started = time.monotonic()
        r = stack.server.post(batch, key=key)
        took = time.monotonic() - started
    assert r.status_code == 200, r.text[:300]
    answers = r.json()
    assert sorted(a["id"] for a in answers) == [0, 1, 2]
    assert all(a["result"]["status"] == "in_progress" for a in answers), answers
    assert took < 5, f"the batch took {took:.2f} s"


def test_a_key_holds_at_most_eight_waits_at_once(stack: Stack, acl_user: AclUser) -> None:
    """Eight waiting calls of one key are open; the ninth answers at once, as without wait_seconds."""
    with _held_rotation(stack, acl_user) as (key, sid, rid, _), ThreadPoolExecutor(max_workers=8) as pool:
        waiting = [pool.submit(verify_waiting, stack, key, sid, rid, 6) for _ in range(8)]
        time.sleep(1.5)  # the eight are inside the server, waiting
        ninth, took = verify_waiting(stack, key, sid, rid, 6)
        assert ninth["status"] == "in_progress" and took < 3, (ninth["status"], took)
        held = [f.result() for f in waiting]
    assert all(r["status"] == "in_progress" and t >= 5 for r, t in held), [round(t, 2) for _, t in held]
