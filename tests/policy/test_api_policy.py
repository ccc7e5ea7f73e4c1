"""Agent permission, human approvals and the leak → rotate → verify → resolve story through the real
`lockzero serve` (direct JSON-RPC and tools/call) and the real CLI."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from lockzero.engine.commands.secrets import read_version_value
from tests.api.support import Key, Server, jsonrpc_error, unique
from tests.console.support import PASSWORD, operator_with_password
from tests.policy.support import open_leak, run_cli, tool, wait_for, wait_verified, with_engine


def setup(server: Server, secret_id: str, *policy: str) -> tuple[str, Key]:
    tenant = server.tenant("pol")
    key = server.key(tenant)
    server.cli(
        "secret", "add", secret_id, "--tenant", tenant, "--provider", "generated", "--environment", "prod", *policy
    )
    return tenant, key


def active(server: Server, key: Key, secret_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"secret_id": secret_id}
    if kind:
        params["kind"] = kind
    return list(server.result(key, "get_active_incidents", params)["incidents"])


# --- 1. agent rotation forbidden by policy -------------------------------------------------------


def test_agent_key_cannot_rotate_a_no_agent_rotation_secret(server: Server) -> None:
    sid = "prod/payments/stripe-key"
    _, key = setup(server, sid, "--no-agent-rotation")
    policy = server.result(key, "check_rotation_policy", {"secret_id": sid})
    assert policy["allow_agent_rotation"] is False

    # Direct JSON-RPC: a forbidden error object that names the incident.
    r = server.call(key, "rotate_secret", {"secret_id": sid, "reason": "found in a public gist"})
    err = jsonrpc_error(r, -32011, 200)
    assert "human" in err["message"]
    direct_incident = err["data"]["incident_id"]

    # tools/call: the same as a business failure (isError), with the code in structuredContent.
    result = tool(server, key, "rotate_secret", {"secret_id": sid, "reason": "found in a public gist"})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == -32011
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    mcp_incident = result["structuredContent"]["error"]["data"]["incident_id"]

    listed = active(server, key, sid)
    assert {i["incident_id"] for i in listed} == {direct_incident, mcp_incident}
    assert {i["kind"] for i in listed} == {"policy_violation"}
    assert all(key.key_id in i["summary"] and i["status"] == "open" for i in listed)

    audit = server.result(key, "get_audit_log", {"secret_id": sid, "method": "rotate_secret"})["events"]
    assert len(audit) == 2, audit
    assert {(e["outcome"], e["actor_id"], e["actor_type"]) for e in audit} == {("denied", key.key_id, "agent")}

    assert server.result(key, "get_rotation_history", {"secret_id": sid})["rotations"] == []
    meta = server.result(key, "get_secret_metadata", {"secret_id": sid})
    assert meta["current_version"] == "v1" and meta["in_flight_rotation_id"] is None
    assert set(meta["open_incident_ids"]) == {direct_incident, mcp_incident}
    # Rolling back is an agent rotation too.
    jsonrpc_error(server.call(key, "rollback_secret", {"secret_id": sid, "reason": "x"}), -32011)


def test_rollback_without_a_restorable_version_is_a_conflict(server: Server) -> None:
    sid = "prod/never/rotated"
    _, key = setup(server, sid)
    err = jsonrpc_error(server.call(key, "rollback_secret", {"secret_id": sid, "reason": "undo"}), -32012)
    assert "not restorable" in err["message"]
    result = tool(server, key, "rollback_secret", {"secret_id": sid, "reason": "undo"})
    assert result["isError"] is True and result["structuredContent"]["error"]["code"] == -32012
    assert server.result(key, "get_rotation_history", {"secret_id": sid})["rotations"] == []


def test_policy_change_takes_effect_for_agents(server: Server) -> None:
    sid = "prod/app/token"
    tenant, key = setup(server, sid)
    server.cli("secret", "policy", sid, "--tenant", tenant, "--no-agent-rotation")
    jsonrpc_error(server.call(key, "rotate_secret", {"secret_id": sid, "reason": "r"}), -32011)
    server.cli("secret", "policy", sid, "--tenant", tenant, "--agent-rotation")
    started = server.result(key, "rotate_secret", {"secret_id": sid, "reason": "r"})
    assert started["status"] == "in_progress"
    wait_verified(server, key, sid, started["rotation_id"])


# --- 2. approvals ------------------------------------------------------------------------------------


def test_rotation_waits_for_two_distinct_human_approvals(server: Server) -> None:
    sid = "prod/db/admin"
    tenant, key = setup(server, sid, "--approvals", "2")
    started = server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leaked in a log"})
    rot = started["rotation_id"]
    assert started["status"] == "pending_approval"
    assert f"lockzero approve {rot}" in started["note"]
    assert (started["from_version"], started["to_version"]) == ("v1", "v2")
    # Asking again does not start a second rotation.
    assert server.result(key, "rotate_secret", {"secret_id": sid, "reason": "again"})["rotation_id"] == rot

    v = server.result(key, "verify_remediation", {"secret_id": sid})
    assert (v["status"], v["verified"], v["rotation_id"]) == ("pending_approval", False, rot)
    assert "approve" in v["next_action"]

    for person in ("alice", "bob", "carol"):
        operator_with_password(server, tenant, person)
    alice = approve(server, rot, tenant, "alice")
    assert alice.returncode == 0, alice.stderr
    assert "1/2" in alice.stdout

    again = approve(server, rot, tenant, "alice")
    assert again.returncode == 1
    lines = [line for line in again.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "alice already approved" in lines[0] and "Traceback" not in again.stderr, again.stderr

    # One approval of two: nothing may happen, even after the embedded reconciler had a pass (every 2 s).
    time.sleep(2.5)
    (record,) = server.result(key, "get_rotation_history", {"secret_id": sid})["rotations"]
    assert record["outcome"] == "pending_approval" and record["steps"] == []
    assert server.result(key, "get_secret_metadata", {"secret_id": sid})["current_version"] == "v1"

    before_bob = datetime.now().astimezone()
    bob = json.loads(approve(server, rot, tenant, "bob", "--json").stdout)
    assert (bob["approvers"], bob["required"], bob["status"]) == (["alice", "bob"], 2, "in_progress")

    done = wait_verified(server, key, sid, rot)
    assert done["status"] == "completed" and done["checks"]["new_credential_valid"] == "passed"
    assert done["checks"]["old_credential_rejected"] == "passed"
    (record,) = server.result(key, "get_rotation_history", {"secret_id": sid})["rotations"]
    assert record["outcome"] == "completed" and record["actor_id"] == key.key_id
    steps = record["steps"]
    assert [s["step"] for s in steps] == ["create", "validate", "shift", "retire", "verify"]
    assert all(s["status"] == "completed" for s in steps)
    assert all(datetime.fromisoformat(s["at"]) >= before_bob for s in steps), (before_bob, steps)

    late = approve(server, rot, tenant, "carol")
    assert late.returncode == 1 and "needs no (more) approvals" in late.stderr
    unknown = approve(server, "rot_nope", tenant, "carol")
    assert unknown.returncode == 1 and "no rotation" in unknown.stderr
    # The approvals are in the audit log with the people's names.
    audit = server.result(key, "get_audit_log", {"method": "rotation.approve"})["events"]
    assert sorted((e["actor_id"], e["outcome"]) for e in audit) == [
        ("alice", "error"),
        ("alice", "ok"),
        ("bob", "ok"),
        ("carol", "error"),
        ("carol", "invalid"),
    ], audit


def approve(server: Server, rotation_id: str, tenant: str, person: str, *extra: str, password: str = PASSWORD) -> Any:
    """`lockzero approve` as the operator ``person``, signing in with ``password`` on stdin."""
    args = ("approve", rotation_id, "--tenant", tenant, "--as", person, "--password-stdin", *extra)
    return run_cli(server, *args, stdin=f"{password}\n".encode())


def test_an_approval_needs_the_operators_own_sign_in(server: Server) -> None:
    sid = "prod/db/signed"
    tenant, key = setup(server, sid, "--approvals", "1")
    rot = server.result(key, "rotate_secret", {"secret_id": sid, "reason": "leaked"})["rotation_id"]
    operator_with_password(server, tenant, "dana")
    operator_with_password(server, tenant, "vic", role="viewer")

    wrong = approve(server, rot, tenant, "dana", password="not her password")
    assert wrong.returncode == 1 and "password" in wrong.stderr and "Traceback" not in wrong.stderr, wrong.stderr
    nobody = approve(server, rot, tenant, "mallory")  # no such operator: the same refusal
    assert nobody.returncode == 1 and nobody.stderr == wrong.stderr
    viewer = approve(server, rot, tenant, "vic")
    assert viewer.returncode == 1 and "operator role" in viewer.stderr
    no_password = run_cli(server, "approve", rot, "--tenant", tenant, "--as", "dana")  # stdin is not a terminal
    assert no_password.returncode == 2 and "--password-stdin" in no_password.stderr
    assert server.result(key, "verify_remediation", {"secret_id": sid})["status"] == "pending_approval"

    ok = approve(server, rot, tenant, "dana")
    assert ok.returncode == 0 and "dana approved" in ok.stdout, ok.stderr
    audit = server.result(key, "get_audit_log", {"method": "rotation.approve"})["events"]
    outcomes = [(e["actor_id"], e["outcome"]) for e in audit]
    assert outcomes.count(("dana", "ok")) == 1 and ("mallory", "ok") not in outcomes and ("vic", "ok") not in outcomes
    assert all(PASSWORD not in str(e) and "not her password" not in str(e) for e in audit)


def test_approve_usage_errors(server: Server) -> None:
    tenant = server.tenant("pol")
    missing_as = run_cli(server, "approve", "rot_x", "--tenant", tenant)
    assert missing_as.returncode == 2 and "--as" in missing_as.stderr
    other = run_cli(server, "approve", "rot_x", "--tenant", unique("nosuch"), "--as", "alice")
    assert other.returncode == 1 and "Traceback" not in other.stderr


# --- 6. leaked → rotated → verified → resolved, and the incident's timeline ------------------------------


def test_leak_rotate_verify_resolve_and_timeline(server: Server) -> None:
    sid = "prod/openai/api-key"
    tenant, key = setup(server, sid)

    incident_id = open_leak(server, tenant, sid, f"{sid} found in a public repository")
    (listed,) = active(server, key, sid)
    assert (listed["incident_id"], listed["kind"], listed["severity"]) == (incident_id, "leaked_credential", "critical")

    started = server.result(key, "rotate_secret", {"secret_id": sid, "reason": f"leak {incident_id}"})
    done = wait_verified(server, key, sid, started["rotation_id"])
    assert done["status"] == "completed"
    wait_for(lambda: active(server, key, sid) == [], 10, "the leak incident to resolve")
    assert server.result(key, "get_active_incidents", {})["incidents"] == []

    # Text: one header line, then entries in order with actors.
    text = run_cli(server, "incident", "timeline", incident_id, "--tenant", tenant)
    assert text.returncode == 0, text.stderr
    header, *lines = text.stdout.splitlines()
    assert incident_id in header and "resolved" in header and "leaked_credential" in header
    rot = started["rotation_id"]
    wanted = [
        ("service:scanner:ci", "incident opened (leaked_credential"),
        (f"agent:{key.key_id}", "call rotate_secret → ok"),
        ("system:lockzero", f"{rot} create started"),
        ("system:lockzero", f"{rot} create completed"),
        ("system:lockzero", f"{rot} validate completed"),
        ("system:lockzero", f"{rot} shift completed"),
        ("system:lockzero", f"{rot} retire completed"),
        ("system:lockzero", f"{rot} verify completed"),
        ("system:lockzero", f"{rot} finished: completed"),
        ("system:lockzero", f"linked rotation {rot}"),
        ("system:lockzero", "resolved:"),
    ]
    positions = []
    for actor, what in wanted:
        found = [i for i, line in enumerate(lines) if actor in line and what in line]
        assert found, f"no timeline line with {actor!r} and {what!r}:\n{text.stdout}"
        positions.append(found[0])
    assert positions == sorted(positions), text.stdout

    # JSON: parses, sorted by time, offsets from the opening.
    js = run_cli(server, "incident", "timeline", incident_id, "--tenant", tenant, "--format", "json")
    assert js.returncode == 0, js.stderr
    tl = json.loads(js.stdout)
    assert (tl["incident_id"], tl["status"], tl["kind"], tl["secret_id"]) == (
        incident_id,
        "resolved",
        "leaked_credential",
        sid,
    )
    assert tl["resolved_at"] is not None and tl["duration_ms"] > 0
    entries = tl["entries"]
    ats = [datetime.fromisoformat(e["at"]) for e in entries]
    assert ats == sorted(ats)
    offsets = [e["offset_ms"] for e in entries]
    assert offsets == sorted(offsets)
    opened_at = datetime.fromisoformat(tl["opened_at"])
    for e, at in zip(entries, ats, strict=True):
        assert abs(e["offset_ms"] - (at - opened_at).total_seconds() * 1000) < 1.0, e
    opening = next(e for e in entries if e["event"] == "incident.opened")
    assert opening["offset_ms"] == 0 and opening["actor_id"] == "scanner:ci"
    assert entries[-1]["event"] == "incident.resolved"
    assert abs(entries[-1]["offset_ms"] - tl["duration_ms"]) < 1.0
    rotate_call = next(e for e in entries if e["event"] == "audit.recorded" and "rotate_secret" in e["summary"])
    assert (rotate_call["actor_id"], rotate_call["actor_type"]) == (key.key_id, "agent")
    # No secret value anywhere in the timeline.
    assert key.token not in js.stdout

    async def values(engine: Any) -> list[bytes]:
        return [v for n in (1, 2) if (v := await read_version_value(engine, tenant, sid, n)) is not None]

    secret_values = with_engine(server, values)
    assert len(secret_values) == 2
    for value in secret_values:
        assert value.decode() not in js.stdout and value.decode() not in text.stdout

    bad = run_cli(server, "incident", "timeline", "inc_nope", "--tenant", tenant)
    assert bad.returncode == 1 and "no incident" in bad.stderr
    other = server.tenant("pol")
    assert run_cli(server, "incident", "timeline", incident_id, "--tenant", other).returncode == 1


def test_leak_found_by_detect_exposure_resolves_after_rotation(server: Server) -> None:
    sid = "prod/internal/token"
    tenant, key = setup(server, sid)
    listed = {t["name"] for t in server.result(key, "tools/list", {})["tools"]}
    if "detect_exposure" not in listed:
        pytest.skip("detect_exposure is not in the registry yet")

    async def value(engine: Any) -> bytes | None:
        return await read_version_value(engine, tenant, sid, 1)

    leaked = with_engine(server, value)
    assert leaked
    text = f"deploy log\nexport TOKEN={leaked.decode()}\n"
    report = server.result(key, "detect_exposure", {"text": text, "source": "ci/job/42"})
    assert leaked.decode() not in json.dumps(report)
    (incident_id,) = report["incident_ids"]
    assert [i["incident_id"] for i in active(server, key, sid, "leaked_credential")] == [incident_id]

    started = server.result(key, "rotate_secret", {"secret_id": sid, "reason": "found by detect_exposure"})
    wait_verified(server, key, sid, started["rotation_id"])
    wait_for(lambda: active(server, key, sid) == [], 10, "the leak incident to resolve")
    js = run_cli(server, "incident", "timeline", incident_id, "--tenant", tenant, "--format", "json")
    assert js.returncode == 0, js.stderr
    summaries = [e["summary"] for e in json.loads(js.stdout)["entries"]]
    assert any("call detect_exposure" in s for s in summaries), summaries
    assert any(s.startswith("resolved:") for s in summaries), summaries
    assert leaked.decode() not in js.stdout
