"""Streamable HTTP by hand: the handshake era (sessions, version header, batches) and the 2026-07-28 era."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Tenant
from tests.api.support import ALL_TOOLS, ALL_VERSIONS, HANDSHAKE_VERSIONS, META_VERSION, MODERN, jsonrpc_error

PING = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
LIST = {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}


def _init_body(version: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }


# --- handshake era -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
def test_initialize_echoes_a_supported_version(shared: Tenant, version: str) -> None:
    r = shared.server.post(_init_body(version), key=shared.key)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["protocolVersion"] == version
    assert result["serverInfo"]["name"] == "lockzero"
    assert "tools" in result["capabilities"]
    assert r.headers.get("mcp-session-id")


@pytest.mark.parametrize("version", ["1999-01-01", "2024-11-05", MODERN, 20250618, None])
def test_initialize_with_an_unknown_version_offers_the_newest(shared: Tenant, version: Any) -> None:
    r = shared.server.post(_init_body(version), key=shared.key)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["protocolVersion"] == "2025-11-25"
    assert r.headers.get("mcp-session-id")


def test_sessions_are_distinct_and_usable(shared: Tenant) -> None:
    s = shared.server
    sid1, res = s.initialize(shared.key, "2025-06-18")
    sid2, _ = s.initialize(shared.key, "2025-06-18")
    assert sid1 != sid2
    assert res["protocolVersion"] == "2025-06-18"
    h = {"Mcp-Session-Id": sid1, "MCP-Protocol-Version": "2025-06-18"}
    r = s.post(PING, key=shared.key, headers=h)
    assert r.status_code == 200 and r.json() == {"jsonrpc": "2.0", "id": 5, "result": {}}
    r = s.post(LIST, key=shared.key, headers=h)
    assert sorted(t["name"] for t in r.json()["result"]["tools"]) == sorted(ALL_TOOLS)
    r = s.post(
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "list_secrets", "arguments": {}}},
        key=shared.key,
        headers=h,
    )
    assert r.json()["result"]["structuredContent"] == s.secret_list(shared.name)


def test_initialized_notification_is_202_without_body(shared: Tenant) -> None:
    s = shared.server
    r = s.post(_init_body("2025-11-25"), key=shared.key)
    sid = r.headers["mcp-session-id"]
    n = s.post(
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        key=shared.key,
        headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"},
    )
    assert n.status_code == 202
    assert n.content == b""


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_version_header_without_session_is_400(shared: Tenant, version: str) -> None:
    r = shared.server.post(LIST, key=shared.key, headers={"MCP-Protocol-Version": version})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == -32600


def test_unknown_session_is_404(shared: Tenant) -> None:
    r = shared.server.post(
        LIST, key=shared.key, headers={"Mcp-Session-Id": "no-such-session", "MCP-Protocol-Version": "2025-11-25"}
    )
    assert r.status_code == 404, r.text
    assert "error" in r.json()


def test_session_of_another_key_is_404(shared: Tenant) -> None:
    s = shared.server
    sid, _ = s.initialize(shared.key, "2025-11-25")
    other_same_tenant = s.key(shared.name)
    other_tenant = s.key(s.tenant())
    h = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
    for key in (other_same_tenant, other_tenant):
        r = s.post(LIST, key=key, headers=h)
        assert r.status_code == 404, r.text
    # The owner still can.
    assert s.post(LIST, key=shared.key, headers=h).status_code == 200


def test_header_version_must_match_the_session(shared: Tenant) -> None:
    s = shared.server
    sid, _ = s.initialize(shared.key, "2025-11-25")
    r = s.post(LIST, key=shared.key, headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == -32600


@pytest.mark.parametrize("with_session", [False, True])
def test_unsupported_version_header_is_400_32022(shared: Tenant, with_session: bool) -> None:
    s = shared.server
    headers = {"MCP-Protocol-Version": "1999-01-01"}
    if with_session:
        headers["Mcp-Session-Id"] = s.initialize(shared.key, "2025-11-25")[0]
    r = s.post(LIST, key=shared.key, headers=headers)
    err = jsonrpc_error(r, -32022, 400)
    assert set(err["data"]["supported"]) == set(ALL_VERSIONS)


# --- batches -----------------------------------------------------------------------------------------

BATCH = [
    {"jsonrpc": "2.0", "id": "a", "method": "ping"},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": "b", "method": "list_secrets", "params": {}},
    {"jsonrpc": "2.0", "id": "c", "method": "get_secret_metadata", "params": {"secret_id": "nope/nope"}},
    {"jsonrpc": "2.0", "id": "d", "method": "no/such/method"},
    {"not": "a request"},
]


def _check_batch_answer(shared: Tenant, body: Any) -> None:
    assert isinstance(body, list)
    by_id = {m["id"]: m for m in body}
    assert set(by_id) == {"a", "b", "c", "d", None}, body  # no entry for the notification
    assert by_id["a"]["result"] == {}
    assert by_id["b"]["result"] == shared.server.secret_list(shared.name)
    assert by_id["c"]["error"]["code"] == -32010
    assert by_id["d"]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600


def test_batch_without_headers_is_answered_as_an_array(shared: Tenant) -> None:
    r = shared.server.post(BATCH, key=shared.key)
    assert r.status_code == 200, r.text
    _check_batch_answer(shared, r.json())


@pytest.mark.parametrize("with_header", [False, True])
def test_batch_in_a_2025_03_26_session(shared: Tenant, with_header: bool) -> None:
    s = shared.server
    sid, result = s.initialize(shared.key, "2025-03-26")
    assert result["protocolVersion"] == "2025-03-26"
    headers = {"Mcp-Session-Id": sid}
    if with_header:
        headers["MCP-Protocol-Version"] = "2025-03-26"
    r = s.post(BATCH, key=shared.key, headers=headers)
    assert r.status_code == 200, r.text
    _check_batch_answer(shared, r.json())


def test_batch_of_notifications_only_is_202(shared: Tenant) -> None:
    r = shared.server.post([{"jsonrpc": "2.0", "method": "notifications/initialized"}], key=shared.key)
    assert r.status_code == 202
    assert r.content == b""


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", MODERN])
def test_batch_is_refused_in_later_versions(shared: Tenant, version: str) -> None:
    r = shared.server.post([PING, LIST], key=shared.key, headers={"MCP-Protocol-Version": version})
    jsonrpc_error(r, -32600, 400)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_batch_is_refused_in_a_later_session(shared: Tenant, version: str) -> None:
    sid, _ = shared.server.initialize(shared.key, version)
    r = shared.server.post([PING, LIST], key=shared.key, headers={"Mcp-Session-Id": sid})
    jsonrpc_error(r, -32600, 400)


def test_empty_batch_is_invalid(shared: Tenant) -> None:
    jsonrpc_error(shared.server.post([], key=shared.key), -32600, 400)


def test_batch_with_unknown_session_is_404(shared: Tenant) -> None:
    r = shared.server.post([PING, LIST], key=shared.key, headers={"Mcp-Session-Id": "no-such-session"})
    assert r.status_code == 404, (r.status_code, r.text)


# --- DELETE / GET ------------------------------------------------------------------------------------


def test_delete_ends_the_session(shared: Tenant) -> None:
    s = shared.server
    sid, _ = s.initialize(shared.key, "2025-11-25")
    h = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
    assert s.post(PING, key=shared.key, headers=h).status_code == 200
    other = s.key(shared.name)
    assert s.http.delete(s.mcp_url, headers={**other.auth, **h}).status_code == 404  # not its session
    r = s.http.delete(s.mcp_url, headers={**shared.key.auth, **h})
    assert r.status_code == 204
    assert r.content == b""
    assert s.post(PING, key=shared.key, headers=h).status_code == 404
    assert s.http.delete(s.mcp_url, headers={**shared.key.auth, **h}).status_code == 404


def test_delete_without_session_header_is_400(shared: Tenant) -> None:
    s = shared.server
    r = s.http.delete(s.mcp_url, headers=shared.key.auth)
    assert r.status_code == 400


def test_get_is_405(shared: Tenant) -> None:
    s = shared.server
    r = s.http.get(s.mcp_url, headers={**shared.key.auth, "Accept": "text/event-stream"})
    assert r.status_code == 405
    assert "POST" in r.headers.get("allow", "")


# --- 2026-07-28 --------------------------------------------------------------------------------------


def test_server_discover(shared: Tenant) -> None:
    r = shared.server.modern(shared.key, "server/discover")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == 1
    result = body["result"]
    assert result["resultType"] == "complete"
    assert MODERN in result["supportedVersions"]
    assert set(result["supportedVersions"]) == set(ALL_VERSIONS)
    assert isinstance(result["ttlMs"], int) and result["ttlMs"] > 0
    assert result["cacheScope"] in ("public", "private")
    assert result["serverInfo"]["name"] == "lockzero"
    assert "mcp-session-id" not in r.headers


def test_modern_tools_list(shared: Tenant) -> None:
    r = shared.server.modern(shared.key, "tools/list")
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["resultType"] == "complete"
    assert isinstance(result["ttlMs"], int) and result["ttlMs"] > 0
    assert result["cacheScope"] in ("public", "private")
    assert sorted(t["name"] for t in result["tools"]) == sorted(ALL_TOOLS)


def test_modern_tools_call(shared: Tenant) -> None:
    s = shared.server
    r = s.modern(shared.key, "tools/call", {"name": "list_secrets", "arguments": {}})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["resultType"] == "complete"
    assert result["isError"] is False
    assert result["structuredContent"] == s.secret_list(shared.name)
    r = s.modern(shared.key, "tools/call", {"name": "get_secret_metadata", "arguments": {"secret_id": "x/y"}})
    result = r.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == -32010


def test_modern_missing_mcp_method_header_is_400_32020(shared: Tenant) -> None:
    r = shared.server.post(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {META_VERSION: MODERN}}},
        key=shared.key,
        headers={"MCP-Protocol-Version": MODERN},
    )
    jsonrpc_error(r, -32020, 400)


def test_modern_mcp_method_mismatch_is_400_32020(shared: Tenant) -> None:
    r = shared.server.modern(shared.key, "tools/list", headers={"Mcp-Method": "tools/call"})
    jsonrpc_error(r, -32020, 400)


@pytest.mark.parametrize("header_name", ["get_audit_log", None])
def test_modern_mcp_name_mismatch_is_400_32020(shared: Tenant, header_name: str | None) -> None:
    s = shared.server
    headers = {"Mcp-Method": "tools/call", "MCP-Protocol-Version": MODERN}
    if header_name is not None:
        headers["Mcp-Name"] = header_name
    r = s.post(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "list_secrets", "arguments": {}, "_meta": {META_VERSION: MODERN}},
        },
        key=shared.key,
        headers=headers,
    )
    jsonrpc_error(r, -32020, 400)


def test_modern_missing_meta_version_is_400(shared: Tenant) -> None:
    r = shared.server.modern(shared.key, "tools/list", meta=False)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in (-32602, -32600, -32020)


def test_modern_meta_version_must_match_header(shared: Tenant) -> None:
    s = shared.server
    r = s.modern(shared.key, "tools/list", {"_meta": {META_VERSION: "2025-11-25"}}, meta=False)
    jsonrpc_error(r, -32020, 400)
    # _meta says 2026-07-28 but the header is missing.
    r = s.post(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {META_VERSION: MODERN}}},
        key=shared.key,
    )
    assert r.status_code == 400, r.text


def test_modern_unknown_method_is_http_404_32601(shared: Tenant) -> None:
    r = shared.server.modern(shared.key, "resources/teleport")
    jsonrpc_error(r, -32601, 404)


def test_modern_direct_tool_method(shared: Tenant) -> None:
    r = shared.server.modern(shared.key, "get_secret_metadata", {"secret_id": "prod/db/password"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["current_version"] == "v1"
