"""`--on-anomaly rotate` end to end, on the running product in both queue modes: the watcher (the embedded
server's loop, or the arq cron of a real `lockzero worker`) sees a client keep using a rotated-away Redis
password, opens a usage_anomaly incident, and the policy starts a rotation as the system actor; that rotation
verifies and the incident resolves. The default policy only notifies: no rotation of its own."""

from __future__ import annotations

import time
from typing import Any

from tests.saga.support import AclUser, Stack, wait_for

#: The watcher runs every 15 s (WATCH_EVERY_S); one interval plus a rotation, with room for a loaded machine.
WATCH_TIMEOUT_S = 60.0


def _rotate_and_wait(stack: Stack, key: Any, secret_id: str) -> str:
    started = stack.server.result(key, "rotate_secret", {"secret_id": secret_id, "reason": "leaked in CI log"})
    verdict = stack.wait_finished(key, secret_id, started["rotation_id"])
    assert verdict["verified"] is True, verdict
    return str(started["rotation_id"])


def _anomalies(stack: Stack, key: Any, secret_id: str) -> list[dict[str, Any]]:
    page = stack.server.result(key, "get_active_incidents", {"kind": "usage_anomaly", "secret_id": secret_id})
    return list(page["incidents"])


def test_on_anomaly_rotate_starts_a_system_rotation_that_resolves_it(stack: Stack, acl_user: AclUser) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    assert stack.policy(tenant, sid, "--on-anomaly", "rotate")["policy"]["on_anomaly"] == "rotate"
    first = _rotate_and_wait(stack, key, sid)

    old = acl_user.password
    assert acl_user.auth_error(old) is not None  # a client still presenting the rotated-away password

    def system_rotation() -> dict[str, Any] | None:
        ours = [r for r in stack.history(key, sid) if r["rotation_id"] != first and r["actor_type"] == "system"]
        return ours[0] if ours and ours[0]["outcome"] == "completed" else None

    rotation = wait_for(system_rotation, WATCH_TIMEOUT_S, "the policy's rotation to complete", interval=0.5)
    assert rotation["kind"] == "rotate" and "usage anomaly" in rotation["reason"], rotation
    # The incident it answered resolves once that rotation (requested after the anomaly) verifies.
    wait_for(lambda: _anomalies(stack, key, sid) == [] or None, 20, "the anomaly to resolve", interval=0.2)
    timeline_sources = stack.server.result(key, "get_audit_log", {"secret_id": sid, "limit": 200})
    assert old not in str(timeline_sources)


def test_notify_policy_opens_the_incident_and_starts_nothing(stack: Stack, acl_user: AclUser) -> None:
    tenant, key = stack.tenant_and_key()
    sid = f"prod/redis/{acl_user.name}"
    stack.add_redis_secret(tenant, sid, acl_user)
    first = _rotate_and_wait(stack, key, sid)
    assert acl_user.auth_error(acl_user.password) is not None

    found = wait_for(lambda: _anomalies(stack, key, sid) or None, WATCH_TIMEOUT_S, "the anomaly", interval=0.5)
    assert len(found) == 1 and acl_user.name in found[0]["summary"], found
    assert acl_user.password not in found[0]["summary"]
    time.sleep(1.0)  # a rotation the policy would start is requested in the same pass as the incident
    assert [r["rotation_id"] for r in stack.history(key, sid)] == [first]
