"""Direct JSON-RPC 2.0 calls (product-page style) and the JSON-RPC error codes of SPEC §3."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.api.conftest import Tenant
from tests.api.support import READ_TOOLS, jsonrpc_error


def test_direct_call_result_is_the_structured_result(shared: Tenant) -> None:
    s = shared.server
    r = s.call(shared.key, "list_secrets", {}, rid=1)
    assert r.status_code == 200
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 1 and "error" not in body
    assert body["result"] == s.secret_list(shared.name)
    # The id comes back as sent, string ids too.
    r = s.call(shared.key, "get_secret_metadata", {"secret_id": "staging/api-token"}, rid="req-7")
    body = r.json()
    assert body["id"] == "req-7"
    assert body["result"]["secret_id"] == "staging/api-token"
    assert body["result"]["environment"] == "staging"
    assert body["result"]["version_arn"] == f"arn:lockzero:secrets:{shared.name}:secret:staging/api-token:v1"


def test_direct_call_filters(shared: Tenant) -> None:
    s = shared.server
    staging = s.result(shared.key, "list_secrets", {"environment": "staging"})
    assert [x["secret_id"] for x in staging["secrets"]] == ["staging/api-token"]
    labelled = s.result(shared.key, "list_secrets", {"label": "team=payments"})
    assert [x["secret_id"] for x in labelled["secrets"]] == ["prod/db/password"]
    page1 = s.result(shared.key, "list_secrets", {"limit": 1})
    assert len(page1["secrets"]) == 1 and page1["next_cursor"]
    page2 = s.result(shared.key, "list_secrets", {"limit": 1, "cursor": page1["next_cursor"]})
    assert [x["secret_id"] for x in page1["secrets"] + page2["secrets"]] == sorted(shared.secrets)
    assert page2["next_cursor"] is None


@pytest.mark.parametrize("tool", READ_TOOLS)
def test_every_read_tool_answers_directly(shared: Tenant, tool: str) -> None:
    params: dict[str, Any] = (
        {} if tool in ("list_secrets", "get_active_incidents", "get_audit_log") else {"secret_id": "prod/db/password"}
    )
    result = shared.server.result(shared.key, tool, params)
    assert isinstance(result, dict) and result


def test_not_found_is_32010(shared: Tenant) -> None:
    for tool in ("get_secret_metadata", "check_rotation_policy", "get_rotation_history"):
        r = shared.server.call(shared.key, tool, {"secret_id": "prod/does/not/exist"})
        err = jsonrpc_error(r, -32010)
        # The caller's value is never echoed (it may be a pasted credential); the message says what to do.
        assert "prod/does/not/exist" not in err["message"], tool
        assert "list_secrets" in err["message"], (tool, err)
        assert r.json()["id"] == 1


@pytest.mark.parametrize(
    ("tool", "params"),
    [
        ("list_secrets", {"limit": "x"}),
        ("list_secrets", {"limit": 0}),
        ("list_secrets", {"limit": 201}),
        ("list_secrets", {"overdue_only": "yes"}),
        ("list_secrets", {"bogus": 1}),
        ("list_secrets", {"cursor": "not-a-cursor"}),
        ("get_secret_metadata", {}),
        ("get_secret_metadata", {"secret_id": 42}),
        ("get_secret_metadata", {"secret_id": "has space"}),
        ("get_secret_metadata", {"secret_id": ""}),
        ("get_secret_metadata", {"secret_id": "a" * 257}),
        ("get_secret_metadata", {"secret_id": "prod/db/password", "extra": True}),
        ("get_active_incidents", {"kind": "volcano"}),
        ("get_audit_log", {"outcome": "maybe"}),
        ("get_audit_log", {"since": "yesterday"}),
    ],
)
def test_invalid_params_is_32602(shared: Tenant, tool: str, params: dict[str, Any]) -> None:
    r = shared.server.call(shared.key, tool, params)
    jsonrpc_error(r, -32602)


def test_out_of_scope_is_32011(shared: Tenant) -> None:
    s = shared.server
    scoped = s.key(shared.name, scopes=("prod/*",))
    assert s.result(scoped, "get_secret_metadata", {"secret_id": "prod/db/password"})["current_version"] == "v1"
    for tool in ("get_secret_metadata", "check_rotation_policy", "get_rotation_history"):
        err = jsonrpc_error(s.call(scoped, tool, {"secret_id": "staging/api-token"}), -32011)
        assert "scope" in err["message"], err
    # The scoped key's list shows only what it may see.
    listed = s.result(scoped, "list_secrets", {})
    assert [x["secret_id"] for x in listed["secrets"]] == ["prod/db/password"]


def test_malformed_json_is_32700_http_400(shared: Tenant) -> None:
    for raw in (b'{"jsonrpc": "2.0", "id": 1, "method": ', b"not json at all", b"", b"\xff\xfe{}", b'"\x80"'):
        r = shared.server.post(content=raw, key=shared.key)
        jsonrpc_error(r, -32700, 400)
        assert r.json()["id"] is None


@pytest.mark.parametrize(
    "payload",
    [
        42,
        "list_secrets",
        None,
        True,
        {"id": 1, "method": "list_secrets"},  # no jsonrpc member
        {"jsonrpc": "1.0", "id": 1, "method": "list_secrets"},
        {"jsonrpc": 2.0, "id": 1, "method": "list_secrets"},
        {"jsonrpc": "2.0", "id": 1.5, "method": "list_secrets"},
        {"jsonrpc": "2.0", "id": [1], "method": "list_secrets"},
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "list_secrets"},
        {"jsonrpc": "2.0", "id": True, "method": "list_secrets"},
        {"jsonrpc": "2.0", "id": None, "method": "list_secrets"},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "method": ""},
        {"jsonrpc": "2.0", "id": 1, "method": 7},
    ],
)
def test_invalid_request_is_32600(shared: Tenant, payload: Any) -> None:
    r = shared.server.post(payload, key=shared.key)
    assert r.status_code in (200, 400)
    jsonrpc_error(r, -32600)


def test_unknown_method_is_32601(shared: Tenant) -> None:
    r = shared.server.call(shared.key, "rotate_everything", {})
    err = jsonrpc_error(r, -32601)
    assert "rotate_everything" not in err["message"]  # never echoed, but the message lists what exists
    assert "tools/list" in err["message"]
    assert r.json()["id"] == 1


def test_tools_call_unknown_tool_is_a_32602_protocol_error(shared: Tenant) -> None:
    r = shared.server.call(shared.key, "tools/call", {"name": "drop_all_secrets", "arguments": {}})
    jsonrpc_error(r, -32602)


def test_tools_call_business_failure_is_iserror(shared: Tenant) -> None:
    r = shared.server.call(shared.key, "tools/call", {"name": "list_secrets", "arguments": {"limit": "x"}})
    assert r.status_code == 200
    result = r.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == -32602
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


def test_params_must_be_an_object(shared: Tenant) -> None:
    r = shared.server.post({"jsonrpc": "2.0", "id": 1, "method": "list_secrets", "params": ["x"]}, key=shared.key)
    jsonrpc_error(r, -32602)


def test_a_notification_gets_202_and_no_body(shared: Tenant) -> None:
    r = shared.server.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, key=shared.key)
    assert r.status_code == 202
    assert r.content == b""


# --- NUL characters in client strings (PostgreSQL text cannot hold them) ------------------------------


@pytest.mark.parametrize(
    ("tool", "params"),
    [
        ("list_secrets", {"environment": "prod\x00"}),
        ("list_secrets", {"label": "team\x00=x"}),
        ("get_audit_log", {"method": "list_secrets\x00"}),
        ("get_audit_log", {"actor_id": "\x00"}),
    ],
)
def test_nul_in_a_filter_value_is_not_an_internal_error(
    request: pytest.FixtureRequest, shared: Tenant, tool: str, params: dict[str, Any]
) -> None:
    body = shared.server.call(shared.key, tool, params).json()
    # Either no match (what SQLite answers) or invalid params; never an internal or availability error.
    if "error" in body:
        assert body["error"]["code"] == -32602, body
    else:
        assert next(iter(body["result"].values())) == [], body


def test_nul_in_an_unknown_field_name_is_invalid_params(request: pytest.FixtureRequest, shared: Tenant) -> None:
    err = shared.server.error(shared.key, "list_secrets", {"bad\x00field": 1})
    assert err["code"] == -32602, err


def test_one_bad_call_does_not_fail_other_callers(request: pytest.FixtureRequest, shared: Tenant) -> None:
    """Audit records are group-committed per tenant; a poisoned record must not fail the others in its batch."""

    async def burst() -> list[tuple[bool, dict[str, Any]]]:
        good = {"jsonrpc": "2.0", "id": 1, "method": "list_secrets", "params": {}}
        bad = {"jsonrpc": "2.0", "id": 2, "method": "list_secrets", "params": {"bad\x00field": 1}}
        plan = [(i % 3 == 1) for i in range(150)]
        async with httpx.AsyncClient(headers=shared.key.auth, timeout=30.0) as c:
            responses = await asyncio.gather(
                *(c.post(shared.server.mcp_url, json=bad if is_bad else good) for is_bad in plan)
            )
        return [(is_bad, r.json()) for is_bad, r in zip(plan, responses, strict=True)]

    answers = asyncio.run(burst())
    failed_good = [a for is_bad, a in answers if not is_bad and "error" in a]
    assert failed_good == [], f"{len(failed_good)} valid calls failed: {failed_good[:2]}"
