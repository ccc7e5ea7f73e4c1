"""revoke_secret with an idempotency_key: a retry after a dropped connection gets the first call's result,
and there is still one revocation, one incident and one round of alerts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.saga.support import AclUser, Stack, WebhookReceiver


def _revoke(stack: Stack, key: Any, secret_id: str, idem: str | None) -> dict[str, Any]:
    params = {"secret_id": secret_id, "reason": "abused right now"} | ({"idempotency_key": idem} if idem else {})
    r = stack.server.call(key, "revoke_secret", params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_retried_revoke_returns_the_first_result(stack: Stack, acl_user: AclUser, webhook: WebhookReceiver) -> None:
    tenant, key = stack.tenant_and_key()
    stack.add_redis_secret(tenant, "prod/revoke/idem", acl_user)
    dep = stack.server.dependent(tenant, "prod/revoke/idem", "billing", f"webhook:{webhook.url}")
    webhook.signing_secret = dep["signing_secret"]

    first = _revoke(stack, key, "prod/revoke/idem", "retry-me-1")["result"]
    assert first["status"] == "revoked" and first["alerts_sent"] == 1, first
    assert acl_user.refused(acl_user.password)
    alerts_after_first = len(webhook.received())

    # The agent never heard the answer and retries, twice at once: the same result each time.
    with ThreadPoolExecutor(2) as pool:
        retries = list(pool.map(lambda _: _revoke(stack, key, "prod/revoke/idem", "retry-me-1"), range(2)))
    for retry in retries:
        assert retry["result"] == first, (retry, first)

    incidents = stack.server.result(key, "get_active_incidents", {"secret_id": "prod/revoke/idem"})["incidents"]
    leaked = [i for i in incidents if i["kind"] == "leaked_credential"]
    assert [i["incident_id"] for i in leaked] == [first["incident_id"]], incidents
    revokes = [r for r in stack.history(key, "prod/revoke/idem") if r["kind"] == "revoke"]
    assert [r["rotation_id"] for r in revokes] == [first["rotation_id"]], revokes
    assert len(webhook.received()) == alerts_after_first  # no second round of alerts

    # Without the key, a second revoke is a new request for a finished one: refused, nothing changes.
    again = _revoke(stack, key, "prod/revoke/idem", None)
    assert again["error"]["code"] == -32012, again
    assert len([r for r in stack.history(key, "prod/revoke/idem") if r["kind"] == "revoke"]) == 1


def test_revoke_idempotency_key_is_validated(stack: Stack) -> None:
    tenant, key = stack.tenant_and_key()
    stack.server.secret(tenant, "prod/revoke/valid")
    bad = _revoke(stack, key, "prod/revoke/valid", "x" * 129)
    assert bad["error"]["code"] == -32602, bad
    # A refused call changed nothing: the secret is still active on v1.
    meta = stack.metadata(key, "prod/revoke/valid")
    assert meta["status"] == "active" and meta["current_version"] == "v1", meta
    schema = next(t for t in stack.server.result(key, "tools/list", {})["tools"] if t["name"] == "revoke_secret")[
        "inputSchema"
    ]
    assert "idempotency_key" in schema["properties"], schema
