"""A secret value imported with --value-stdin never comes back: not in any answer, not in the server logs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.api.support import READ_TOOLS, Server

PER_SECRET = (
    "get_secret_metadata",
    "check_rotation_policy",
    "get_rotation_history",
    "verify_remediation",
    "assess_blast_radius",
)


def _arguments(tool: str, secret_id: str) -> list[dict[str, Any]]:
    if tool in PER_SECRET:
        return [{"secret_id": secret_id}]
    if tool == "list_secrets":
        return [{}, {"environment": "prod"}, {"label": "kind=canary"}]
    return [{}, {"secret_id": secret_id}]  # get_active_incidents, get_audit_log


def test_canary_value_never_leaks(server: Server) -> None:
    s = server
    canary = f"lzcanary-{uuid.uuid4().hex}"
    t = s.tenant()
    key = s.key(t)
    ro = s.key(t, read_only=True)
    added = s.secret(t, "prod/canary/token", value=canary.encode() + b"\n", labels={"kind": "canary"})
    assert canary not in json.dumps(added)
    s.dependent(t, "prod/canary/token", "billing-api")

    bodies: list[str] = []

    def keep(r: httpx.Response) -> httpx.Response:
        bodies.append(r.text)
        return r

    meta = keep(s.call(key, "get_secret_metadata", {"secret_id": "prod/canary/token"})).json()["result"]
    assert meta["current_version"] == "v1" and meta["dependents_count"] == 1  # the secret is really there

    sid, _ = s.initialize(key, "2025-11-25")
    legacy = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
    for tool in READ_TOOLS:
        for args in _arguments(tool, "prod/canary/token"):
            for k in (key, ro):
                r = keep(s.call(k, tool, args))
                assert "result" in r.json(), r.text
                r = keep(s.call(k, "tools/call", {"name": tool, "arguments": args}))
                assert r.json()["result"]["isError"] is False, r.text
            keep(
                s.post(
                    {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool, "arguments": args}},
                    key=key,
                    headers=legacy,
                )
            )
            keep(s.modern(key, "tools/call", {"name": tool, "arguments": args}))
    # A failing call that carries the value in an argument the tool does not take.
    keep(s.call(key, "get_secret_metadata", {"secret_id": "prod/canary/token", "value": canary}))
    keep(s.call(key, "get_audit_log", {"limit": 200}))
    keep(s.modern(key, "tools/list"))
    keep(s.modern(key, "server/discover"))

    assert len(bodies) > 60
    for body in bodies:
        assert canary not in body
    # Not in the server's output either (stdout and stderr of `lockzero serve`).
    logs = s.logs()
    assert canary not in logs
    # The audit log shows the calls happened, without the value.
    audit = s.result(key, "get_audit_log", {"secret_id": "prod/canary/token", "limit": 200})
    assert len(audit["events"]) >= len(PER_SECRET)
    assert canary not in json.dumps(audit)


@pytest.mark.parametrize("tool", PER_SECRET)
def test_value_is_not_a_field_of_any_result(server: Server, tool: str) -> None:
    """The output schemas never describe a value-like field."""
    t = server.tenant()
    key = server.key(t)
    listed = server.result(key, "tools/list")
    schema = next(x for x in listed["tools"] if x["name"] == tool)["outputSchema"]
    text = json.dumps(schema).lower()
    for word in ('"value"', '"password"', '"plaintext"', '"secret_value"'):
        assert word not in text, (tool, word)
