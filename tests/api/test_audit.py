"""Every call is in the audit log, allowed, invalid, denied or unknown; filters and cursors work."""

from __future__ import annotations

import base64
from typing import Any

from tests.api.conftest import Tenant
from tests.api.support import Key, Server


def _all(s: Server, key: Key, **filters: Any) -> list[dict[str, Any]]:
    page = s.result(key, "get_audit_log", {"limit": 200, **filters})
    assert page["next_cursor"] is None
    return list(page["events"])


def test_audit_log_records_each_call(tenant: Tenant) -> None:
    s, key = tenant.server, tenant.key
    scoped = s.key(tenant.name, scopes=("other/*",))

    # 1 ok, 2 ok (secret), 3 invalid params, 4 denied (scope), 5 unknown secret, 6 ok via tools/call
    s.result(key, "list_secrets", {})
    s.result(key, "get_secret_metadata", {"secret_id": "prod/db/password"})
    assert s.error(key, "list_secrets", {"limit": "x"})["code"] == -32602
    assert s.error(scoped, "get_secret_metadata", {"secret_id": "prod/db/password"})["code"] == -32011
    assert s.error(key, "get_secret_metadata", {"secret_id": "prod/unknown"})["code"] == -32010
    r = s.call(key, "tools/call", {"name": "check_rotation_policy", "arguments": {"secret_id": "prod/db/password"}})
    assert r.json()["result"]["isError"] is False

    mine = _all(s, key, actor_id=key.key_id)
    got = [(e["method"], e["outcome"], e["secret_id"]) for e in mine]
    # Newest first; exactly the calls this key made so far.
    assert got == [
        ("check_rotation_policy", "ok", "prod/db/password"),
        ("get_secret_metadata", "invalid", "prod/unknown"),
        ("list_secrets", "invalid", None),
        ("get_secret_metadata", "ok", "prod/db/password"),
        ("list_secrets", "ok", None),
    ]
    for e in mine:
        assert e["actor_id"] == key.key_id
        assert e["actor_type"] == "agent"
        assert e["event_id"] and e["at"]
    invalid = [e for e in mine if e["outcome"] == "invalid"]
    assert all(e["detail"] for e in invalid)

    denied = _all(s, key, outcome="denied")
    assert [(e["actor_id"], e["method"], e["outcome"], e["secret_id"]) for e in denied] == [
        (scoped.key_id, "get_secret_metadata", "denied", "prod/db/password")
    ]
    assert "scope" in denied[0]["detail"]

    invalid_all = _all(s, key, outcome="invalid")
    assert {(e["method"], e["secret_id"]) for e in invalid_all} == {
        ("get_secret_metadata", "prod/unknown"),
        ("list_secrets", None),
    }

    ok_by_key = _all(s, key, outcome="ok", actor_id=key.key_id)
    assert all(e["outcome"] == "ok" for e in ok_by_key)
    assert [e["method"] for e in ok_by_key][-2:] == ["get_secret_metadata", "list_secrets"]

    by_secret = _all(s, key, secret_id="prod/db/password")
    assert all(e["secret_id"] == "prod/db/password" for e in by_secret)
    assert {(e["actor_id"], e["method"], e["outcome"]) for e in by_secret} >= {
        (key.key_id, "get_secret_metadata", "ok"),
        (key.key_id, "check_rotation_policy", "ok"),
        (scoped.key_id, "get_secret_metadata", "denied"),
    }
    # The CLI registration is in the same trail, as an operator.
    assert any(e["method"] == "secret.add" and e["actor_type"] == "operator" for e in by_secret)

    by_method = _all(s, key, method="get_secret_metadata")
    assert {e["outcome"] for e in by_method} == {"ok", "invalid", "denied"}

    # The reads of the audit log are audited too.
    assert _all(s, key, method="get_audit_log", actor_id=key.key_id)


def test_audit_log_pagination_walks_every_entry_once(tenant: Tenant) -> None:
    s, key = tenant.server, tenant.key
    for i in range(4):
        s.result(key, "get_secret_metadata", {"secret_id": "prod/db/password"})
        s.call(key, "get_secret_metadata", {"secret_id": f"prod/missing-{i}"})
    s.call(key, "get_secret_metadata", {"secret_id": "bad id"})
    # Filter on a method that the walk itself does not add to.
    reference = _all(s, key, method="get_secret_metadata")
    assert len(reference) == 9

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 1, "method": "get_secret_metadata"}
        if cursor is not None:
            params["cursor"] = cursor
        page = s.result(key, "get_audit_log", params)
        pages += 1
        assert len(page["events"]) <= 1
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages <= 20, "the cursor never ends"
    assert seen == [e["event_id"] for e in reference]
    assert len(set(seen)) == len(seen)

    # A bigger page size walks the same entries.
    two: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "method": "get_secret_metadata"}
        if cursor is not None:
            params["cursor"] = cursor
        page = s.result(key, "get_audit_log", params)
        two += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert two == seen


def test_audit_time_window(tenant: Tenant) -> None:
    s, key = tenant.server, tenant.key
    s.result(key, "list_secrets", {})
    entries = _all(s, key, method="list_secrets")
    at = entries[0]["at"]
    assert _all(s, key, method="list_secrets", since=at) == entries[:1]
    assert _all(s, key, method="list_secrets", until=at) == entries[1:]
    assert _all(s, key, method="list_secrets", since="2999-01-01T00:00:00Z") == []


BAD_CURSOR = base64.urlsafe_b64encode(b'["x"]').decode().rstrip("=")


def test_foreign_cursor_is_invalid_params_and_audited(tenant: Tenant) -> None:
    s, key = tenant.server, tenant.key
    err = s.error(key, "get_rotation_history", {"secret_id": "prod/db/password", "cursor": BAD_CURSOR})
    assert err["code"] == -32602, err
    entries = _all(s, key, method="get_rotation_history")
    assert [(e["outcome"], e["secret_id"]) for e in entries] == [("invalid", "prod/db/password")]
