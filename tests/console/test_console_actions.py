"""Console actions against a real `lockzero serve`: rotate, roll back, revoke, deny, resolve. Each is audited
with the person as actor like an MCP call, refused without its CSRF token or for a viewer, renders what people
typed escaped, and never reaches another tenant."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import running_server
from tests.api.support import Server
from tests.console.support import signed_in

XSS = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-actions")) as s:
        yield s


def rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(server.database_url.removeprefix("sqlite:///"))
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def audit(server: Server, tenant: str, method: str) -> list[tuple[str, str, str, str | None]]:
    return [
        (str(a), str(t), str(o), s)
        for a, t, o, s in rows(
            server,
            "SELECT actor_id, actor_type, outcome, secret_id FROM rm_audit WHERE tenant = ? AND method = ?"
            " ORDER BY position",
            tenant,
            method,
        )
    ]


def rotation_status(server: Server, tenant: str, secret_id: str) -> list[tuple[str, str]]:
    return [
        (str(k), str(s))
        for k, s in rows(
            server,
            "SELECT kind, status FROM rm_rotations WHERE tenant = ? AND secret_id = ? ORDER BY requested_at",
            tenant,
            secret_id,
        )
    ]


def wait_finished(server: Server, tenant: str, secret_id: str) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 30
    while True:
        found = rotation_status(server, tenant, secret_id)
        if found and all(s not in ("in_progress", "compensating") for _, s in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def current_version(server: Server, tenant: str, secret_id: str) -> tuple[int | None, str]:
    (found,) = rows(
        server, "SELECT current_version, status FROM rm_secrets WHERE tenant = ? AND secret_id = ?", tenant, secret_id
    )
    return found[0], str(found[1])


def test_rotate_roll_back_and_revoke_from_a_secrets_page(server: Server) -> None:
    tenant = server.tenant("act")
    server.secret(tenant, "prod/db/password")
    op = signed_in(server, tenant, "olga", "operator")
    page = op.get("/secret", id="prod/db/password").text
    for form in ('id="rotate"', 'id="rollback"', 'id="revoke"'):
        assert form in page

    r = op.post("/secret/rotate", {"secret_id": "prod/db/password", "reason": "quarterly", "confirm": "yes"})
    assert r.status_code == 200 and "in progress" in r.text
    assert wait_finished(server, tenant, "prod/db/password") == [("rotate", "completed")]
    assert current_version(server, tenant, "prod/db/password") == (2, "active")
    # The page shows each saga step with its duration, as bars.
    page = op.get("/secret", id="prod/db/password").text
    assert page.count('class="step completed"') >= 4 and "<svg" in page

    # Roll back: needs the box ticked and a well-formed version; refusals change nothing.
    op.get("/secret", id="prod/db/password")
    r = op.post("/secret/rollback", {"secret_id": "prod/db/password", "reason": "broke checkout"})
    assert r.status_code == 400 and "confirmation box" in r.text
    op.get("/secret", id="prod/db/password")
    bad = {"secret_id": "prod/db/password", "reason": "x", "confirm": "yes", "to_version": "1; DROP"}
    r = op.post("/secret/rollback", bad)
    assert r.status_code == 400 and "v3" in r.text
    op.get("/secret", id="prod/db/password")
    r = op.post(
        "/secret/rollback",
        {"secret_id": "prod/db/password", "reason": "broke checkout", "confirm": "yes", "to_version": "v1"},
    )
    assert r.status_code == 200 and "rollback" in r.text and "to v1" in r.text, r.text
    assert wait_finished(server, tenant, "prod/db/password")[-1] == ("rollback", "completed")
    assert current_version(server, tenant, "prod/db/password") == (1, "active")

    # Revoke: the id must be typed; a wrong one is refused and nothing is revoked.
    op.get("/secret", id="prod/db/password")
    wrong = {"secret_id": "prod/db/password", "reason": "abused", "confirm": "yes", "confirm_id": "prod/db"}
    r = op.post("/secret/revoke", wrong)
    assert r.status_code == 400 and "type the secret" in r.text
    assert current_version(server, tenant, "prod/db/password")[1] == "active"
    op.get("/secret", id="prod/db/password")
    r = op.post("/secret/revoke", {**wrong, "confirm_id": "prod/db/password"})
    assert r.status_code == 200 and "revoked v" in r.text and "incident inc_" in r.text
    assert current_version(server, tenant, "prod/db/password")[1] == "revoked"
    assert 'id="revoke"' not in op.get("/secret", id="prod/db/password").text  # nothing more to do

    # Audited like the MCP tools: the person is the actor; refused attempts are there too.
    who = ("olga", "person")
    assert audit(server, tenant, "rotate_secret") == [(*who, "ok", "prod/db/password")]
    assert audit(server, tenant, "rollback_secret") == [
        (*who, "invalid", "prod/db/password"),
        (*who, "invalid", "prod/db/password"),
        (*who, "ok", "prod/db/password"),
    ]
    assert audit(server, tenant, "revoke_secret") == [
        (*who, "invalid", "prod/db/password"),
        (*who, "ok", "prod/db/password"),
    ]
    # The events carry the person too.
    actors = rows(server, "SELECT actor_id, actor_type FROM rm_rotations WHERE tenant = ?", tenant)
    assert set(actors) == {("olga", "person")}


def test_deny_and_resolve_with_payloads_escaped(server: Server) -> None:
    tenant = server.tenant("deny")
    server.cli("secret", "add", "prod/api", "--tenant", tenant, "--provider", "generated",
               "--environment", "prod", "--approvals", "2")  # fmt: skip
    key = server.key(tenant)
    asked = server.result(
        key, "tools/call", {"name": "rotate_secret", "arguments": {"secret_id": "prod/api", "reason": "leak"}}
    )
    rotation_id = asked["structuredContent"]["rotation_id"]
    op = signed_in(server, tenant, "otto", "operator")
    op.get("/approvals")
    assert 'action="/approvals/deny"' in op.last_page
    r = op.post("/approvals/deny", {"rotation_id": rotation_id, "reason": "  "})
    assert r.status_code == 400
    op.get("/approvals")
    r = op.post("/approvals/deny", {"rotation_id": rotation_id, "reason": XSS_IMG})
    assert r.status_code == 200 and f"you denied {rotation_id}" in r.text
    assert rotation_id not in r.text.split("<h1>Approvals</h1>", 1)[1]  # gone from the pending list
    assert rotation_status(server, tenant, "prod/api") == [("rotate", "cancelled")]
    op.get("/approvals")
    r = op.post("/approvals/approve", {"rotation_id": rotation_id})
    assert r.status_code == 409  # a denied rotation is never approved back to life
    # Audited like an MCP call, naming the secret the rotation is about.
    assert audit(server, tenant, "rotation.deny") == [
        ("otto", "person", "invalid", "prod/api"),
        ("otto", "person", "ok", "prod/api"),
    ]

    # An incident (a detection with a payload as its source), resolved with a payload as the note.
    value = b"deny-test-credential-value-0123456789abcdef"
    server.secret(tenant, "prod/leaky", value=value)
    found = server.result(
        key, "tools/call", {"name": "detect_exposure", "arguments": {"text": value.decode(), "source": XSS}}
    )
    incident_id = found["structuredContent"]["incident_ids"][0]
    page = op.get("/incident", id=incident_id).text
    assert 'id="resolve"' in page and "&lt;script&gt;" in page and "<script>alert" not in page
    r = op.post("/incident/resolve", {"incident_id": incident_id, "note": XSS})
    assert r.status_code == 200 and "resolved" in r.text
    assert "<script>alert" not in r.text and "resolved: &lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert 'id="resolve"' not in r.text
    assert rows(server, "SELECT status FROM rm_incidents WHERE incident_id = ?", incident_id) == [("resolved",)]
    r = op.post("/incident/resolve", {"incident_id": incident_id, "note": "again"})
    assert r.status_code == 409  # a resolution is never overwritten
    assert audit(server, tenant, "incident.resolve") == [
        ("otto", "person", "ok", "prod/leaky"),
        ("otto", "person", "error", "prod/leaky"),
    ]

    # The timeline exports as JSON (the note in it as data) and as a printable page, escaped.
    exported = op.get("/incident/timeline.json", id=incident_id)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    assert "attachment" in exported.headers["content-disposition"]
    body = exported.json()
    assert body["incident_id"] == incident_id and body["status"] == "resolved"
    assert any(e["summary"] == f"resolved: {XSS}" and e["actor_id"] == "otto" for e in body["entries"])
    printable = op.get("/incident/print", id=incident_id)
    assert printable.status_code == 200 and "<script>alert" not in printable.text
    assert "&lt;script&gt;" in printable.text and "otto" in printable.text
    assert op.get("/incident/timeline.json", id=XSS_IMG).status_code == 404


def test_new_actions_need_the_csrf_token(server: Server) -> None:
    tenant = server.tenant("csrf2")
    server.secret(tenant, "prod/x")
    op = signed_in(server, tenant, "ivy", "admin")
    forms = {
        "/secret/rotate": {"secret_id": "prod/x", "reason": "r", "confirm": "yes"},
        "/secret/rollback": {"secret_id": "prod/x", "reason": "r", "confirm": "yes"},
        "/secret/revoke": {"secret_id": "prod/x", "reason": "r", "confirm": "yes", "confirm_id": "prod/x"},
        "/approvals/deny": {"rotation_id": "rot_x", "reason": "r"},
        "/incident/resolve": {"incident_id": "inc_x", "note": "n"},
    }
    for path, data in forms.items():
        for forged in ({}, {"csrf": "forged"}):
            r = op.post(path, {**data, **forged}, csrf=False)
            assert r.status_code == 403 and "CSRF" in r.text, path
    assert current_version(server, tenant, "prod/x") == (1, "active")
    assert rotation_status(server, tenant, "prod/x") == []
    # Refused before any work, so nothing was audited as an attempt either.
    assert rows(server, "SELECT COUNT(*) FROM rm_audit WHERE tenant = ? AND actor_type = 'person'"
                " AND method NOT LIKE 'console.%' AND method <> 'operator.setup'", tenant) == [(0,)]  # fmt: skip


def test_a_viewer_can_do_none_of_it(server: Server) -> None:
    tenant = server.tenant("view2")
    server.secret(tenant, "prod/y", value=b"viewer-test-credential-value-0123456789ab")
    key = server.key(tenant)
    found = server.result(
        key,
        "tools/call",
        {"name": "detect_exposure", "arguments": {"text": "viewer-test-credential-value-0123456789ab"}},
    )
    incident_id = found["structuredContent"]["incident_ids"][0]
    viewer = signed_in(server, tenant, "val", "viewer")
    page = viewer.get("/secret", id="prod/y").text
    assert 'action="/secret/rollback"' not in page and 'action="/secret/revoke"' not in page
    assert 'id="resolve"' not in viewer.get("/incident", id=incident_id).text
    attempts = {
        "/secret/rollback": {"secret_id": "prod/y", "reason": "r", "confirm": "yes"},
        "/secret/revoke": {"secret_id": "prod/y", "reason": "r", "confirm": "yes", "confirm_id": "prod/y"},
        "/approvals/deny": {"rotation_id": "rot_x", "reason": "r"},
        "/incident/resolve": {"incident_id": incident_id, "note": "n"},
    }
    for path, data in attempts.items():
        r = viewer.post(path, data)
        assert r.status_code == 403 and "role" in r.text, path
    assert current_version(server, tenant, "prod/y") == (1, "active")
    assert rows(server, "SELECT status FROM rm_incidents WHERE incident_id = ?", incident_id) == [("open",)]
    denied = rows(server, "SELECT method FROM rm_audit WHERE tenant = ? AND actor_id = 'val' AND outcome = 'denied'"
                  " ORDER BY position", tenant)  # fmt: skip
    assert [m for (m,) in denied] == ["rollback_secret", "revoke_secret", "rotation.deny", "incident.resolve"]


def test_tenant_a_cannot_act_on_tenant_b(server: Server) -> None:
    a, b = server.tenant("aa"), server.tenant("bb")
    server.cli("secret", "add", "prod/b", "--tenant", b, "--provider", "generated",
               "--environment", "prod", "--approvals", "1")  # fmt: skip
    b_key = server.key(b)
    asked = server.result(
        b_key, "tools/call", {"name": "rotate_secret", "arguments": {"secret_id": "prod/b", "reason": "b"}}
    )
    b_rotation = asked["structuredContent"]["rotation_id"]
    server.secret(b, "prod/b-leak", value=b"tenant-b-other-credential-0123456789")
    found = server.result(
        b_key, "tools/call", {"name": "detect_exposure", "arguments": {"text": "tenant-b-other-credential-0123456789"}}
    )
    b_incident = found["structuredContent"]["incident_ids"][0]
    alice = signed_in(server, a, "alice", "admin")
    assert b_rotation not in alice.get("/approvals").text
    assert alice.get("/incident/timeline.json", id=b_incident).status_code == 404
    assert alice.get("/incident/print", id=b_incident).status_code == 404
    for path, data in {
        "/secret/rollback": {"secret_id": "prod/b", "reason": "r", "confirm": "yes"},
        "/secret/revoke": {"secret_id": "prod/b", "reason": "r", "confirm": "yes", "confirm_id": "prod/b"},
        "/approvals/deny": {"rotation_id": b_rotation, "reason": "r"},
        "/approvals/approve": {"rotation_id": b_rotation},
        "/incident/resolve": {"incident_id": b_incident, "note": "n"},
    }.items():
        alice.get("/")
        r = alice.post(path, data)
        assert r.status_code == 404, (path, r.status_code, r.text[:300])
    assert rotation_status(server, b, "prod/b") == [("rotate", "pending_approval")]
    # A's audit records the attempts without learning which of B's secrets they were about.
    attempts = rows(server, "SELECT method, secret_id FROM rm_audit WHERE tenant = ? AND actor_id = 'alice'"
                    " AND method IN ('rotation.deny', 'rotation.approve', 'incident.resolve')", a)  # fmt: skip
    assert len(attempts) == 3 and {s for _, s in attempts} == {None}
    assert current_version(server, b, "prod/b") == (1, "active")
    assert rows(server, "SELECT status FROM rm_incidents WHERE incident_id = ?", b_incident) == [("open",)]
