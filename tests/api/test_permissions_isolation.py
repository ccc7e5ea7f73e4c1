"""Read-only keys and tenant isolation ("not found" and "not yours" answer the same)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.conftest import Tenant
from tests.api.support import ALL_TOOLS, READ_TOOLS, SCAN_TOOLS, WRITE_TOOLS, Key, Server


def _tools_list(s: Server, key: Key, era: str) -> list[dict[str, Any]]:
    if era == "modern":
        r = s.modern(key, "tools/list")
    elif era == "legacy":
        sid, _ = s.initialize(key, "2025-11-25")
        r = s.post(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            key=key,
            headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"},
        )
    else:
        r = s.call(key, "tools/list")
    assert r.status_code == 200, r.text
    return list(r.json()["result"]["tools"])


@pytest.fixture(scope="module")
def read_only_key(shared: Tenant) -> Key:
    return shared.server.key(shared.name, read_only=True)


@pytest.mark.parametrize("era", ["legacy", "modern", "direct"])
def test_read_only_key_sees_only_read_tools(shared: Tenant, read_only_key: Key, era: str) -> None:
    s, tenant, ro = shared.server, shared, read_only_key
    ro_tools = _tools_list(s, ro, era)
    rw_tools = _tools_list(s, tenant.key, era)
    assert sorted(t["name"] for t in rw_tools) == sorted(ALL_TOOLS)
    assert sorted(t["name"] for t in ro_tools) == sorted(READ_TOOLS + SCAN_TOOLS)
    assert [t for t in rw_tools if t["name"] in READ_TOOLS + SCAN_TOOLS] == ro_tools
    for t in ro_tools:
        assert t["annotations"]["readOnlyHint"] is (t["name"] not in SCAN_TOOLS), t["name"]
        assert t["annotations"]["destructiveHint"] is False, t["name"]


@pytest.mark.parametrize("tool", WRITE_TOOLS)
def test_read_only_key_calling_a_write_tool_is_forbidden(shared: Tenant, read_only_key: Key, tool: str) -> None:
    s = shared.server
    args = {"secret_id": "prod/db/password", "reason": "test"}
    r = s.call(read_only_key, tool, args)
    assert r.json()["error"]["code"] == -32011, r.text
    r = s.call(read_only_key, "tools/call", {"name": tool, "arguments": args})
    result = r.json()["result"]
    assert result["isError"] is True and result["structuredContent"]["error"]["code"] == -32011
    # and nothing was started
    assert s.result(shared.key, "get_rotation_history", {"secret_id": "prod/db/password"})["rotations"] == []


def test_read_only_key_can_call_read_tools(shared: Tenant, read_only_key: Key) -> None:
    s, tenant, ro = shared.server, shared, read_only_key
    assert s.result(ro, "list_secrets", {}) == s.secret_list(tenant.name)
    meta = s.result(ro, "get_secret_metadata", {"secret_id": "prod/db/password"})
    assert meta["current_version"] == "v1"
    r = s.call(ro, "tools/call", {"name": "check_rotation_policy", "arguments": {"secret_id": "prod/db/password"}})
    assert r.json()["result"]["isError"] is False
    assert r.json()["result"]["structuredContent"]["secret_id"] == "prod/db/password"


# --- tenant isolation --------------------------------------------------------------------------------


def _probe(s: Server, key: Key, how: str, tool: str, args: dict[str, Any]) -> httpx.Response:
    if how == "direct":
        return s.call(key, tool, args, rid=99)
    if how == "tools/call":
        return s.call(key, "tools/call", {"name": tool, "arguments": args}, rid=99)
    return s.modern(key, "tools/call", {"name": tool, "arguments": args}, rid=99)


@dataclass
class World:
    server: Server
    a: str
    key_a: Key
    key_b: Key
    key_c: Key


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    """Tenant A owns shared/x; B has a secret of its own; C has none. Only read from, so shared per module."""
    a, b, c = server.tenant("a"), server.tenant("b"), server.tenant("c")
    server.secret(a, "shared/x", labels={"owner": "a"})
    server.secret(b, "shared/other")
    return World(server, a, server.key(a), server.key(b), server.key(c))


@pytest.mark.parametrize("how", ["direct", "tools/call", "modern"])
@pytest.mark.parametrize("tool", ["get_secret_metadata", "check_rotation_policy", "get_rotation_history"])
def test_foreign_secret_looks_exactly_like_a_missing_one(world: World, tool: str, how: str) -> None:
    s, a, key_a, key_b, key_c = world.server, world.a, world.key_a, world.key_b, world.key_c
    args = {"secret_id": "shared/x"}

    owner = _probe(s, key_a, how, tool, args)
    assert owner.status_code == 200
    assert "-32010" not in owner.text and '"isError":true' not in owner.text, owner.text

    from_b = _probe(s, key_b, how, tool, args)  # exists in A only
    from_c = _probe(s, key_c, how, tool, args)  # exists nowhere C could see either
    assert from_b.status_code == from_c.status_code
    assert from_b.content == from_c.content  # byte-identical, same request id
    assert "-32010" in from_b.text
    assert a not in from_b.text


def test_list_and_filters_never_show_another_tenants_secrets(server: Server) -> None:
    s = server
    a, b = s.tenant("a"), s.tenant("b")
    for sid in ("prod/a1", "prod/a2", "staging/a3"):
        s.secret(a, sid, labels={"team": "shared-team"})
    s.secret(b, "prod/b1", labels={"team": "shared-team"})
    key_b = s.key(b)
    for params in (
        {},
        {"environment": "prod"},
        {"label": "team"},
        {"label": "team=shared-team"},
        {"provider": "generated"},
        {"limit": 200},
    ):
        listed = s.result(key_b, "list_secrets", params)
        assert [x["secret_id"] for x in listed["secrets"]] == ["prod/b1"], params
        assert listed["next_cursor"] is None
    incidents = s.result(key_b, "get_active_incidents", {"secret_id": "prod/a1"})
    assert incidents["incidents"] == []
    # B's audit log holds only B's own history, even when filtered by A's secret id.
    s.call(key_b, "get_secret_metadata", {"secret_id": "prod/a1"})
    audit = s.result(key_b, "get_audit_log", {"secret_id": "prod/a1"})
    assert audit["events"], audit
    assert {e["actor_id"] for e in audit["events"]} == {key_b.key_id}
    everything = s.result(key_b, "get_audit_log", {"limit": 200})
    assert all(e["secret_id"] in (None, "prod/b1", "prod/a1") for e in everything["events"])
    assert not any(e["method"] == "secret.add" and e["secret_id"] != "prod/b1" for e in everything["events"])
