"""assess_blast_radius through the API: the dependents and what they hold, live usage seen at the
provider (a real Redis ACL user with a connection this test holds open), open incidents and risk."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tests.api.support import Key, Server
from tests.policy.support import open_leak, wait_for, wait_verified
from tests.saga.support import AclUser

RISK = ("low", "medium", "high", "critical")


def pull(server: Server, secret_id: str, token: str) -> dict[str, Any]:
    r = server.http.get(
        f"{server.base}/api/v1/secrets/{secret_id}/current", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def radius(server: Server, key: Key, secret_id: str) -> dict[str, Any]:
    return dict(server.result(key, "assess_blast_radius", {"secret_id": secret_id}))


def redis_secret(server: Server, user: AclUser, secret_id: str) -> tuple[str, Key, str]:
    tenant = server.tenant("blast")
    key = server.key(tenant)
    server.secret(tenant, secret_id, provider="redis_acl", config=user.config(), value=user.password.encode())
    token = server.dependent(tenant, secret_id, "checkout-api")["token"]
    return tenant, key, token


def test_blast_radius_services_usage_and_risk(server: Server, acl_user: AclUser) -> None:
    sid = "prod/cache/redis"
    tenant, key, token = redis_secret(server, acl_user, sid)

    before = radius(server, key, sid)
    (svc,) = before["services"]
    assert (svc["name"], svc["environment"], svc["delivery"]) == ("checkout-api", "prod", "pull")
    assert svc["adopted_version"] is None and svc["last_seen_at"] is None

    t0 = datetime.now().astimezone()
    got = pull(server, sid, token)
    assert got["version"] == "v1" and got["value"] == acl_user.password
    client = acl_user.connect(got["value"])  # the service, connected with what it pulled
    try:
        client.ping()
        info = radius(server, key, sid)
        (svc,) = info["services"]
        assert svc["adopted_version"] == "v1"
        assert svc["last_seen_at"] is not None and datetime.fromisoformat(svc["last_seen_at"]) >= t0.replace(
            microsecond=0
        )
        usage = [u for u in info["observed_usage"] if acl_user.name in u["detail"]]
        assert usage, info["observed_usage"]
        assert usage[0]["source"] == "redis CLIENT LIST" and "1 connection" in usage[0]["detail"]
        # When it was observed (a live listing: the time of the call), never null.
        observed = datetime.fromisoformat(usage[0]["at"])
        assert t0 <= observed <= datetime.now().astimezone(), usage[0]
        assert info["environments"] == ["prod"]
        assert info["downstream_systems"] == ["redis_acl at redis://127.0.0.1:6379"]
        assert info["open_incidents"] == [] and info["risk"] != "critical"
        baseline = info["risk"]
        assert acl_user.password not in str(info)

        incident_id = open_leak(server, tenant, sid, "redis password pasted in a ticket")
        leaked = radius(server, key, sid)
        assert leaked["risk"] == "critical" and "rotate_secret" in leaked["recommended_action"]
        assert leaked["open_incidents"] == [
            {"incident_id": incident_id, "kind": "leaked_credential", "severity": "critical"}
        ]

        started = server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leaked"})
        # The service keeps pulling: it adopts v2, which lets the saga retire v1.
        wait_for(lambda: pull(server, sid, token)["version"] == "v2", 20, "v2 to be current", interval=0.2)
        done = wait_verified(server, key, sid, started["rotation_id"])
        assert done["checks"]["dependents_adopted"] == {"adopted": 1, "total": 1, "pending": []}
        assert acl_user.refused(acl_user.password) and acl_user.passwords() and len(acl_user.passwords()) == 1

        after = wait_for(
            lambda: (r := radius(server, key, sid))["open_incidents"] == [] and r, 10, "the leak to resolve"
        )
        assert after["risk"] != "critical" and RISK.index(after["risk"]) <= RISK.index(baseline)
        (svc,) = after["services"]
        assert svc["adopted_version"] == "v2"
        # The open connection authenticated before the rotation and is still seen at the provider.
        assert any(acl_user.name in u["detail"] for u in after["observed_usage"])
    finally:
        client.close()


def test_no_connection_no_observed_usage(server: Server, acl_user: AclUser) -> None:
    sid = "prod/cache/idle"
    _, key, _ = redis_secret(server, acl_user, sid)
    info = radius(server, key, sid)
    assert [u for u in info["observed_usage"] if acl_user.name in u["detail"]] == []


def test_last_seen_at_moves_with_every_pull(server: Server, acl_user: AclUser) -> None:
    sid = "prod/cache/seen"
    _, key, token = redis_secret(server, acl_user, sid)
    pull(server, sid, token)
    first = radius(server, key, sid)["services"][0]["last_seen_at"]
    time.sleep(0.05)
    pull(server, sid, token)
    second = radius(server, key, sid)["services"][0]["last_seen_at"]
    assert datetime.fromisoformat(second) > datetime.fromisoformat(first)
