"""The rotation saga end to end, through the real server, in both queue modes (embedded and arq):
rotate with zero downtime on a real Redis ACL user, deliveries to pull/webhook/file dependents,
rollback, revocation, and the adoption deadline."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.support import CliError, Key
from tests.console.support import PASSWORD, operator_with_password
from tests.saga.support import AclUser, PasswordSampler, Stack, WebhookReceiver, wait_for

STEPS = ["create", "validate", "shift", "retire", "verify"]
ROLLBACK_STEPS = ["restore", "validate", "shift", "retire", "verify"]


def arn(tenant: str, secret_id: str, version: str) -> str:
    return f"arn:lockzero:secrets:{tenant}:secret:{secret_id}:{version}"


def steps(rotation: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["step"], s["status"]) for s in rotation["steps"]]


def rotate(stack: Stack, key: Key, secret_id: str, reason: str = "leaked in a CI log") -> dict[str, Any]:
    return dict(stack.server.result(key, "rotate_secret", {"secret_id": secret_id, "reason": reason}))


def wait_step(stack: Stack, key: Key, secret_id: str, rotation_id: str, step: str, status: str = "started") -> None:
    wait_for(
        lambda: stack.step_status(key, secret_id, rotation_id, step) == status,
        30,
        f"step {step} {status}",
        interval=0.05,
    )


def test_rotation_is_zero_downtime_and_reaches_every_dependent(
    stack: Stack, acl_user: AclUser, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "60s")
    token = stack.server.dependent(tenant, sid, "api", "pull")["token"]
    assert token.startswith("lz_svc_")
    hook = stack.server.dependent(tenant, sid, "billing", f"webhook:{webhook.url}")
    webhook.signing_secret = hook["signing_secret"]
    target = tmp_path / "etc" / "batch" / "redis-password"
    stack.server.dependent(tenant, sid, "batch", f"file:{target}")
    old = acl_user.password

    before = acl_user.connect(old)  # a live connection opened with the old password
    assert before.ping() is True
    with PasswordSampler(acl_user) as sampler:
        started = rotate(stack, key, sid)
        assert started["status"] == "in_progress", started
        assert started["from_version"] == "v1" and started["to_version"] == "v2", started
        assert started["new_version_arn"] == arn(tenant, sid, "v2")
        assert started["poll"] == "verify_remediation"
        rid = started["rotation_id"]

        # The saga waits in shift until the pull dependent adopts v2 (the deadline is a minute away).
        wait_step(stack, key, sid, rid, "shift")
        assert len(acl_user.passwords()) == 2
        assert acl_user.works(old), "the old password must still authenticate a NEW connection mid-rotation"
        assert before.ping() is True
        # The webhook and the file are served during shift; then only the pull dependent is pending.
        mid = wait_for(
            lambda: pending_services(v := stack.verify(key, sid, rid)) == ["api"] and v,
            10,
            "webhook and file dependents to adopt",
        )
        assert mid["status"] == "in_progress" and mid["verified"] is False, mid
        assert mid["checks"]["new_credential_valid"] == "passed"
        assert mid["checks"]["old_credential_rejected"] == "failed", "v1 still works mid-rotation, and says so"
        (waiting,) = mid["checks"]["dependents_adopted"]["pending"]
        assert waiting["delivery"] == "pull" and "a pull of v2" in waiting["waiting_for"], waiting
        assert waiting["since"] and mid["adoption_deadline_at"] > waiting["since"], mid
        assert "api" in mid["next_action"] and mid["adoption_deadline_at"] in mid["next_action"], mid
        assert "rollback" not in mid["next_action"], mid

        pushed = webhook.received()
        assert len(pushed) == 1, pushed
        assert pushed[0].signature_ok, "X-Lockzero-Signature must be the HMAC-SHA256 of the raw body"
        body = pushed[0].json
        assert body["event"] == "secret.rotated" and body["version"] == "v2", body
        assert body["secret_id"] == sid and body["version_arn"] == arn(tenant, sid, "v2")
        assert body["username"] == acl_user.name
        new = body["value"]
        assert new != old and acl_user.works(new)
        assert target.read_text() == new
        assert stat.S_IMODE(target.stat().st_mode) == 0o600

        # Now the pull dependent reads, and the saga carries on to retire the old password.
        pulled = stack.pull(token, sid)
        assert pulled.status_code == 200, pulled.text
        assert pulled.json() == {
            "secret_id": sid,
            "version": "v2",
            "version_arn": arn(tenant, sid, "v2"),
            "value": new,
            "username": acl_user.name,
        }
        result = stack.wait_finished(key, sid, rid)

    assert result["status"] == "completed" and result["verified"] is True, result
    assert result["rotation_id"] == rid and result["completed_at"]
    assert result["checks"] == {
        "new_credential_valid": "passed",
        "old_credential_rejected": "passed",
        "dependents_adopted": {"adopted": 3, "total": 3, "pending": []},
        "reasons": {},
    }
    assert acl_user.refused(old), acl_user.auth_error(old)
    assert acl_user.works(new)
    assert len(acl_user.passwords()) == 1
    assert sampler.errors == [] and sampler.samples > 0
    assert sampler.max_seen == 2, "never more than two passwords, and both live during the switch"

    (rotation,) = stack.history(key, sid)
    assert rotation["rotation_id"] == rid and rotation["kind"] == "rotate"
    assert rotation["actor_id"] == key.key_id and rotation["actor_type"] == "agent"
    assert rotation["reason"] == "leaked in a CI log"
    assert rotation["outcome"] == "completed" and rotation["completed_at"]
    assert (rotation["from_version"], rotation["to_version"]) == ("v1", "v2")
    assert steps(rotation) == [(s, "completed") for s in STEPS]
    assert stack.metadata(key, sid)["current_version"] == "v2"
    before.close()


def pending_services(verdict: dict[str, Any]) -> list[str]:
    return [p["service"] for p in verdict["checks"]["dependents_adopted"]["pending"]]


def test_rollback_makes_the_previous_credential_current_again(
    stack: Stack, acl_user: AclUser, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    hook = stack.server.dependent(tenant, sid, "billing", f"webhook:{webhook.url}")
    webhook.signing_secret = hook["signing_secret"]
    target = tmp_path / "redis.env"
    stack.server.dependent(tenant, sid, "batch", f"file:{target}")
    old = acl_user.password

    first = rotate(stack, key, sid)
    assert stack.wait_finished(key, sid, first["rotation_id"])["verified"] is True
    new = webhook.received()[-1].json["value"]
    assert acl_user.refused(old) and acl_user.works(new)
    assert target.read_text() == new

    with PasswordSampler(acl_user) as sampler:
        rb = stack.server.result(key, "rollback_secret", {"secret_id": sid, "reason": "v2 broke the batch job"})
        assert rb["status"] == "in_progress", rb
        assert rb["restored_version"] == "v1" and rb["restored_version_arn"] == arn(tenant, sid, "v1")
        assert rb["rotation_id"] != first["rotation_id"]
        result = stack.wait_finished(key, sid, rb["rotation_id"])
    assert result["status"] == "completed" and result["verified"] is True, result
    assert result["checks"]["new_credential_valid"] == "passed"
    assert result["checks"]["old_credential_rejected"] == "passed"
    assert acl_user.works(old), "v1 works again"
    assert acl_user.refused(new), "v2 is retired once the rollback completed"
    assert sampler.max_seen <= 2
    assert stack.metadata(key, sid)["current_version"] == "v1"
    assert target.read_text() == old
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    rolled = [d for d in webhook.received() if d.json["event"] == "secret.rolled_back"]
    assert len(rolled) == 1 and rolled[0].signature_ok
    assert rolled[0].json["version"] == "v1" and rolled[0].json["value"] == old

    newest, oldest = stack.history(key, sid)
    assert newest["kind"] == "rollback" and newest["outcome"] == "completed"
    assert (newest["from_version"], newest["to_version"]) == ("v2", "v1")
    assert steps(newest) == [(s, "completed") for s in ROLLBACK_STEPS]
    assert oldest["rotation_id"] == first["rotation_id"]


def test_rollback_without_a_previous_version_is_a_conflict(stack: Stack, acl_user: AclUser) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    err = stack.server.error(key, "rollback_secret", {"secret_id": sid, "reason": "try"})
    assert err["code"] == -32012, err
    err = stack.server.error(key, "rollback_secret", {"secret_id": sid, "reason": "try", "to_version": "v7"})
    assert err["code"] == -32012, err
    assert stack.history(key, sid) == []
    assert acl_user.works(acl_user.password) and len(acl_user.passwords()) == 1


def test_revoke_stops_every_credential_and_is_final(stack: Stack, acl_user: AclUser, webhook: WebhookReceiver) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    hook = stack.server.dependent(tenant, sid, "billing", f"webhook:{webhook.url}")
    webhook.signing_secret = hook["signing_secret"]
    token = stack.server.dependent(tenant, sid, "api", "pull")["token"]
    stack.policy(tenant, sid, "--adoption-deadline", "1s")
    old = acl_user.password
    first = rotate(stack, key, sid)
    assert stack.wait_finished(key, sid, first["rotation_id"])["status"] == "completed"
    new = webhook.received()[-1].json["value"]
    live = acl_user.connect(new)
    assert live.ping() is True

    result = stack.server.result(key, "revoke_secret", {"secret_id": sid, "reason": "key abused from 203.0.113.9"})
    assert result["status"] == "revoked", result
    assert result["incident_id"], result
    assert sorted(result["revoked_versions"]) == ["v1", "v2"], result
    assert result["alerts_sent"] == 1, result

    assert acl_user.refused(old) and acl_user.refused(new)
    assert acl_user.passwords() == []
    with pytest.raises(redis.RedisError):
        live.ping()  # the live session was cut too
    live.close()
    alert = [d for d in webhook.received() if d.json["event"] == "secret.revoked"]
    assert len(alert) == 1 and alert[0].signature_ok, alert
    assert "value" not in alert[0].json

    assert stack.metadata(key, sid)["status"] == "revoked"
    incidents = stack.server.result(key, "get_active_incidents", {"secret_id": sid})["incidents"]
    assert result["incident_id"] in {i["incident_id"] for i in incidents}, incidents
    check = stack.verify(key, sid)
    assert check["verified"] is True and check["checks"]["old_credential_rejected"] == "passed", check
    assert stack.pull(token, sid).status_code == 404

    for method, params in (
        ("rotate_secret", {"secret_id": sid, "reason": "again"}),
        ("rollback_secret", {"secret_id": sid, "reason": "undo"}),
        ("revoke_secret", {"secret_id": sid, "reason": "twice"}),
    ):
        err = stack.server.error(key, method, params)
        assert err["code"] == -32012, (method, err)
    assert acl_user.refused(old) and acl_user.refused(new)
    kinds = [r["kind"] for r in stack.history(key, sid)]
    assert kinds == ["revoke", "rotate"], kinds


def test_adoption_deadline_lets_the_rotation_finish_without_the_laggard(stack: Stack, acl_user: AclUser) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "2s")
    stack.server.dependent(tenant, sid, "legacy-cron", "pull")  # never reads
    started = rotate(stack, key, sid)
    result = stack.wait_finished(key, sid, started["rotation_id"])
    assert result["status"] == "completed", result
    assert result["checks"]["new_credential_valid"] == "passed"
    assert result["checks"]["old_credential_rejected"] == "passed"
    adoption = result["checks"]["dependents_adopted"]
    assert (adoption["adopted"], adoption["total"]) == (0, 1)
    assert [p["service"] for p in adoption["pending"]] == ["legacy-cron"]
    assert result["verified"] is False, "a dependent still on the old version is not a verified remediation"
    (rotation,) = stack.history(key, sid)
    assert steps(rotation) == [(s, "completed") for s in STEPS]
    assert acl_user.refused(acl_user.password)


def test_a_leak_stays_open_while_a_dependent_lags_and_the_leaked_version_needs_force(
    stack: Stack, acl_user: AclUser
) -> None:
    """The whole honest story: the leaked v1 is marked compromised; while a pull dependent never pulls, every
    poll names it, what it waits for and the deadline, and the leak stays open (mitigated, not resolved); a
    rollback to the leaked v1 is refused without force and allowed with it, both in the audit."""
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "3s")
    laggard = stack.server.dependent(tenant, sid, "legacy-cron", "pull")
    leak = stack.server.result(key, "detect_exposure", {"text": f"REDIS_PASSWORD={acl_user.password}\n"})
    (incident_id,) = leak["incident_ids"]
    assert stack.server.result(key, "get_secret_metadata", {"secret_id": sid})["open_incident_ids"] == [incident_id]

    started = rotate(stack, key, sid)
    polls: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        v = stack.verify(key, sid, started["rotation_id"])
        polls.append(v)
        return v if v["status"] == "completed" else None

    done = wait_for(finished, 30, "rotation to finish", interval=0.2)
    waiting = [p for p in polls if p["status"] == "in_progress" and p["adoption_deadline_at"]]
    assert waiting, polls
    for poll in waiting:
        (pending,) = poll["checks"]["dependents_adopted"]["pending"]
        assert pending["service"] == "legacy-cron" and "a pull of v2" in pending["waiting_for"], poll
        assert "legacy-cron" in poll["next_action"] and poll["adoption_deadline_at"] in poll["next_action"], poll
        assert "rollback" not in poll["next_action"], poll
    assert done["verified"] is False and done["compromised_versions"] == ["v1"], done
    assert "legacy-cron" in done["next_action"] and "do not roll back" in done["next_action"], done
    assert done["checks"]["reasons"]["dependents_adopted"], done

    (open_leak,) = [
        i
        for i in stack.server.result(key, "get_active_incidents", {"secret_id": sid})["incidents"]
        if i["kind"] == "leaked_credential"
    ]
    assert open_leak["incident_id"] == incident_id
    assert open_leak["status"] == "mitigated" and "dependents_adopted" in open_leak["progress"], open_leak
    assert "not yet verified" in open_leak["progress"], open_leak

    refused = stack.server.error(key, "rollback_secret", {"secret_id": sid, "reason": "v2 broke cron"})
    assert refused["code"] == -32012 and "compromised" in refused["message"], refused
    assert acl_user.refused(acl_user.password), "nothing was restored"

    # The laggard finally pulls v2: now the rotation is fully proven and the leak resolves.
    assert stack.pull(laggard["token"], sid).json()["version"] == "v2"
    final = stack.verify(key, sid, started["rotation_id"])
    assert final["verified"] is True, final
    incidents = stack.server.result(key, "get_active_incidents", {"secret_id": sid})["incidents"]
    assert incident_id not in [i["incident_id"] for i in incidents], incidents

    forced = stack.server.result(key, "rollback_secret", {"secret_id": sid, "reason": "really", "force": True})
    assert forced["restored_version"] == "v1", forced
    assert stack.wait_finished(key, sid, forced["rotation_id"])["status"] == "completed"
    assert acl_user.works(acl_user.password), "forced: the leaked v1 is back, as asked"
    audit = stack.server.result(key, "get_audit_log", {"secret_id": sid, "method": "rollback_secret"})["events"]
    assert sorted(e["outcome"] for e in audit) == ["error", "ok"], audit


def settle(stack: Stack, key: Key, sid: str, started: dict[str, Any]) -> dict[str, Any]:
    result = stack.wait_finished(key, sid, started["rotation_id"])
    assert result["status"] == "completed", result
    return result


def test_rollback_restores_the_previous_credential_not_the_highest_retired(stack: Stack) -> None:
    """v1 -> v2 (bad) -> rollback to v1 -> rotate to v3 -> rollback: the previous working credential is v1,
    the one current right before v3; v2 is the credential that was rolled back for breaking things."""
    tenant, key = stack.tenant_and_key()
    sid = "prod/internal/service-token"
    stack.server.secret(tenant, sid)
    settle(stack, key, sid, rotate(stack, key, sid))
    rb = stack.server.result(key, "rollback_secret", {"secret_id": sid, "reason": "v2 broke checkout"})
    assert rb["restored_version"] == "v1"
    settle(stack, key, sid, rb)
    third = rotate(stack, key, sid, "scheduled")
    assert (third["from_version"], third["to_version"]) == ("v1", "v3")
    settle(stack, key, sid, third)
    rb = stack.server.result(key, "rollback_secret", {"secret_id": sid, "reason": "v3 broke checkout"})
    assert rb["restored_version"] == "v1", rb


def test_rollback_after_the_grace_period_is_a_conflict(stack: Stack) -> None:
    """A version retired with no grace is not restorable: rollback_secret answers conflict."""
    tenant, key = stack.tenant_and_key()
    sid = "prod/internal/short-grace"
    stack.server.secret(tenant, sid)
    stack.policy(tenant, sid, "--grace", "0s")
    settle(stack, key, sid, rotate(stack, key, sid))
    err = stack.server.error(key, "rollback_secret", {"secret_id": sid, "reason": "too late"})
    assert err["code"] == -32012, err


def test_rotation_needing_approvals_waits_for_distinct_people(stack: Stack) -> None:
    tenant, key = stack.tenant_and_key()
    sid = "prod/payments/approval"
    stack.server.secret(tenant, sid)
    stack.policy(tenant, sid, "--approvals", "2")
    started = rotate(stack, key, sid)
    assert started["status"] == "pending_approval", started
    rid = started["rotation_id"]
    assert stack.verify(key, sid, rid)["status"] == "pending_approval"
    assert stack.metadata(key, sid)["current_version"] == "v1", "nothing changes before the approvals"
    again = rotate(stack, key, sid)
    assert again["rotation_id"] == rid, "the held rotation is the in-flight one"

    for person in ("alice", "bob"):
        operator_with_password(stack.server, tenant, person)

    def approve(person: str) -> dict[str, Any]:
        args = ("approve", rid, "--tenant", tenant, "--as", person, "--password-stdin")
        return dict(stack.server.cli(*args, stdin=f"{PASSWORD}\n".encode()))

    first = approve("alice")
    assert first["status"] == "pending_approval" and first["approvers"] == ["alice"], first
    with pytest.raises(CliError):
        approve("alice")  # the same person twice
    assert stack.verify(key, sid, rid)["status"] == "pending_approval"
    second = approve("bob")
    assert second["status"] == "in_progress", second
    result = stack.wait_finished(key, sid, rid)
    assert result["status"] == "completed" and result["verified"] is True, result
    assert stack.metadata(key, sid)["current_version"] == "v2"


def test_agent_may_not_rotate_a_secret_that_forbids_agent_rotation(stack: Stack) -> None:
    tenant, key = stack.tenant_and_key()
    sid = "prod/payments/humans-only"
    stack.server.cli(
        "secret", "add", sid, "--tenant", tenant, "--provider", "generated", "--environment", "prod",
        "--no-agent-rotation",
    )  # fmt: skip
    for method in ("rotate_secret", "rollback_secret"):
        err = stack.server.error(key, method, {"secret_id": sid, "reason": "leak"})
        assert err["code"] == -32011, err
    assert stack.history(key, sid) == []
    assert stack.metadata(key, sid)["current_version"] == "v1"
    incidents = stack.server.result(key, "get_active_incidents", {"secret_id": sid})["incidents"]
    assert "policy_violation" in {i["kind"] for i in incidents}, incidents


def test_a_failing_retire_compensates_back_to_the_old_credential(
    stack: Stack, acl_user: AclUser, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """While shift waits, someone sets the user `nopass` (Redis drops its passwords and accepts any):
    retire's `<old` cannot make the old credential stop working, so retire fails and the saga undoes
    retire, shift and create — v1 current and delivered again, v2 gone, the user back on its password."""
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "60s")
    token = stack.server.dependent(tenant, sid, "api", "pull")["token"]
    webhook.signing_secret = stack.server.dependent(tenant, sid, "billing", f"webhook:{webhook.url}")["signing_secret"]
    target = tmp_path / "batch" / "redis-password"
    stack.server.dependent(tenant, sid, "batch", f"file:{target}")
    old = acl_user.password

    rid = rotate(stack, key, sid)["rotation_id"]
    wait_step(stack, key, sid, rid, "shift")
    acl_user.setuser("nopass")  # before the dependent adopts, so retire is bound to fail
    new = stack.pull(token, sid).json()["value"]
    result = stack.wait_finished(key, sid, rid)
    assert result["status"] == "compensated" and result["verified"] is False, result

    rotation = stack.rotation(key, sid, rid)
    recorded = steps(rotation)
    assert ("retire", "failed") in recorded, recorded
    assert recorded[-3:] == [
        ("retire (compensation)", "completed"),
        ("shift (compensation)", "completed"),
        ("create (compensation)", "completed"),
    ], recorded
    meta = stack.metadata(key, sid)
    assert meta["current_version"] == "v1" and meta["status"] == "active", meta
    assert acl_user.works(old), "back on the old password"
    assert acl_user.refused(new), "the new password was discarded"
    assert len(acl_user.passwords()) == 1
    assert stack.pull(token, sid).json()["version"] == "v1"
    events = [(d.json["event"], d.json["version"]) for d in webhook.received() if d.signature_ok]
    assert events[0] == ("secret.rotated", "v2") and events[-1] == ("secret.rolled_back", "v1"), events
    assert webhook.received()[-1].json["value"] == old
    assert target.read_text() == old
    incidents = stack.server.result(key, "get_active_incidents", {"secret_id": sid})["incidents"]
    assert any(i["kind"] == "rotation_failed" and rid in i["summary"] for i in incidents), incidents


def test_revoke_during_a_rotation_stops_the_credential_now(stack: Stack, acl_user: AclUser) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    stack.policy(tenant, sid, "--adoption-deadline", "60s")
    stack.server.dependent(tenant, sid, "api", "pull")  # holds the rotation in shift
    rid = rotate(stack, key, sid)["rotation_id"]
    wait_step(stack, key, sid, rid, "shift")
    try:
        r = stack.server.call(key, "revoke_secret", {"secret_id": sid, "reason": "abused right now"}).json()
        assert "result" in r and r["result"]["status"] == "revoked", r
        assert acl_user.refused(acl_user.password)
        assert acl_user.passwords() == []
    finally:
        # Let the held rotation end quickly either way.
        stack.policy(tenant, sid, "--adoption-deadline", "1s")
