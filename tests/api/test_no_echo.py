"""A refused argument value is never echoed: not in the answer, not in the audit, not in the log."""

from __future__ import annotations

import uuid

from tests.api.audit_rows import SYSTEM_TENANT, audit_rows
from tests.api.support import Server


def test_refused_values_never_come_back(server: Server) -> None:
    canary = "ghp_" + uuid.uuid4().hex + uuid.uuid4().hex[:4]  # the shape of a GitHub token
    tenant = server.tenant("echo")
    key = server.key(tenant)
    calls = [
        ("get_audit_log", {"outcome": canary}),
        ("get_audit_log", {"since": canary}),
        ("get_audit_log", {canary: 1}),
        ("get_audit_log", {"limit": canary}),
        ("get_active_incidents", {"kind": canary}),
        ("get_active_incidents", {"severity": canary}),
        ("list_secrets", {"cursor": canary}),
        ("get_secret_metadata", {"secret_id": canary}),  # well-formed, unknown
        ("get_secret_metadata", {"secret_id": canary + "!"}),  # not an id at all
        ("get_rotation_history", {"secret_id": canary}),
        ("rollback_secret", {"secret_id": "prod/x", "reason": "r", "to_version": canary}),
        ("verify_remediation", {"secret_id": canary}),
    ]
    answers = []
    for method, args in calls:
        answers.append(server.call(key, method, args).text)
        answers.append(server.call(key, "tools/call", {"name": method, "arguments": args}).text)
    answers.append(server.call(key, canary, {}).text)
    answers.append(server.call(key, "tools/call", {"name": canary}).text)
    answers.append(server.modern(key, "ping", headers={"Mcp-Method": canary}).text)
    answers.append(
        server.post(
            {"jsonrpc": "2.0", "id": 1, "method": "ping"}, key=key, headers={"MCP-Protocol-Version": canary}
        ).text
    )
    answers.append(server.post({"jsonrpc": "2.0", "method": "notifications/" + canary}, key=key).text)
    answers.append(server.modern(key, "tools/call", {"name": "list_secrets"}, headers={"Mcp-Name": canary}).text)
    # Each tool call was refused, so each answer had a message that could have echoed the value.
    assert all('"error"' in a for a in answers[: 2 * len(calls)]), answers
    leaks = [a for a in answers if canary in a]
    assert not leaks, leaks[:3]
    rows = audit_rows(server, tenant) + audit_rows(server, SYSTEM_TENANT)
    # The audit keeps the secret id asked for (its own column, for forensics); nothing else may hold it.
    leaked_rows = [r for r in rows if canary in f"{r.method} {r.detail} {r.actor_id}"]
    assert not leaked_rows, leaked_rows[:3]
    assert canary not in server.logs()
