"""The console's security against a real `lockzero serve`: cookies, CSP, CSRF, escaping, throttling, roles, tenants."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from tests.api.conftest import running_server
from tests.api.support import Server
from tests.console.support import PASSWORD, Browserless, invite, signed_in

XSS = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-sec")) as s:
        yield s


def audit_rows(server: Server, tenant: str) -> list[tuple[str, str, str, str, str | None]]:
    db = sqlite3.connect(server.database_url.removeprefix("sqlite:///"))
    try:
        return db.execute(
            "SELECT actor_id, actor_type, method, outcome, secret_id FROM rm_audit WHERE tenant = ? ORDER BY position",
            (tenant,),
        ).fetchall()
    finally:
        db.close()


def test_signed_out_root_is_the_sign_in_page_with_strict_headers(server: Server) -> None:
    c = Browserless(server)
    r = c.get("/")
    assert r.status_code == 200 and 'action="/login"' in r.text
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    # Every other page sends a signed-out visitor back to sign in.
    for path in ("/secrets", "/incidents", "/approvals", "/settings/keys"):
        assert c.get(path).status_code == 303


def test_session_cookie_flags_and_sign_out(server: Server) -> None:
    tenant = server.tenant("cookies")
    c = Browserless(server)
    c.set_up(invite(server, tenant, "carol", "viewer"))
    r = c.sign_in(tenant, "carol")
    assert r.status_code == 303
    session = next(h for h in c.set_cookies if h.startswith("__Host-lz_session="))
    flags = {part.strip().lower() for part in session.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags, session
    assert not any(f.startswith("domain") for f in flags)
    token = c.cookies["__Host-lz_session"]
    assert c.get("/").status_code == 200 and "carol · viewer" in c.last_page
    assert c.post("/logout", {}).status_code == 303
    # The old cookie is dead server-side, not just cleared in this client.
    replay = Browserless(server, cookies={"__Host-lz_session": token})
    assert replay.get("/").status_code == 200 and 'action="/login"' in replay.last_page
    assert [(a, m, o) for a, _, m, o, _ in audit_rows(server, tenant) if m.startswith("console.")] == [
        ("carol", "console.sign_in", "ok"),
        ("carol", "console.sign_out", "ok"),
    ]


def test_csrf_missing_or_wrong_is_refused_and_changes_nothing(server: Server) -> None:
    tenant = server.tenant("csrf")
    admin = signed_in(server, tenant, "ada", "admin")
    admin.get("/settings/keys")
    for data in ({"name": "k1", "permission": "read", "expires": "30"}, {"csrf": "forged", "name": "k1"}):
        r = admin.post("/settings/keys/create", {"permission": "read", "expires": "30", **data}, csrf=False)
        assert r.status_code == 403 and "CSRF" in r.text
    assert server.cli("key", "list", "--tenant", tenant)["keys"] == []
    # Another session's token is no good either.
    other = signed_in(server, tenant, "ben", "admin")
    r = admin.post("/settings/keys/create", {"csrf": other.last_page and _csrf(other), "name": "k2"}, csrf=False)
    assert r.status_code == 403
    # Signed out: the sign-in form needs its double-submit token too.
    fresh = Browserless(server)
    r = fresh.post("/login", {"tenant": tenant, "name": "ada", "password": PASSWORD}, csrf=False)
    assert r.status_code == 403 and "__Host-lz_session" not in fresh.cookies
    # With the token it works, and the key exists.
    admin.get("/settings/keys")
    r = admin.post("/settings/keys/create", {"name": "k3", "permission": "read", "expires": "30", "scopes": ""})
    assert r.status_code == 200 and "shown once" in r.text
    assert [k["name"] for k in server.cli("key", "list", "--tenant", tenant)["keys"]] == ["k3"]


def _csrf(c: Browserless) -> str:
    from tests.console.support import hidden

    c.get("/")
    return hidden(c.last_page, "csrf")


def test_payloads_render_escaped(server: Server) -> None:
    tenant = server.tenant("xss")
    value = b"xss-test-credential-value-0123456789abcdef"
    server.secret(tenant, "prod/xss", labels={"note": XSS}, value=value)
    key = server.key(tenant)
    # A rotation reason and an incident source with markup, through MCP like an agent would send them.
    rotated = server.result(
        key, "tools/call", {"name": "rotate_secret", "arguments": {"secret_id": "prod/xss", "reason": XSS_IMG}}
    )
    assert rotated["isError"] is False, rotated
    found = server.result(
        key, "tools/call", {"name": "detect_exposure", "arguments": {"text": value.decode(), "source": XSS}}
    )
    incident_id = found["structuredContent"]["incident_ids"][0]
    admin = signed_in(server, tenant, "eve", "admin")
    admin.get("/settings/keys")
    admin.post("/settings/keys/create", {"name": XSS, "permission": "read", "expires": "7"})
    pages = [
        admin.get("/secrets"),
        admin.get("/secret", id="prod/xss"),
        admin.get("/incidents"),
        admin.get("/incident", id=incident_id),
        admin.get("/settings/keys"),
        admin.get("/secret", id=XSS),
        admin.get("/incident", id=XSS_IMG),
    ]
    for r in pages:
        assert "<script>alert" not in r.text and "<img src=x" not in r.text, r.url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text  # the label, shown escaped
    assert "&lt;img src=x onerror=alert(2)&gt;" in pages[1].text  # the rotation reason
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[3].text  # the incident's source in its summary
    assert "&lt;script&gt;" in pages[4].text  # the key name
    assert pages[5].status_code == 404 and pages[6].status_code == 404


def test_brute_force_is_throttled_then_locked(server: Server) -> None:
    tenant = server.tenant("brute")
    c = Browserless(server)
    c.set_up(invite(server, tenant, "dave", "viewer"))
    for _ in range(5):
        r = c.sign_in(tenant, "dave", password="wrong password guess")
        assert r.status_code == 401 and "__Host-lz_session" not in c.cookies
    # Locked: even the right password is refused now, with the same answer for a name that does not exist.
    r = c.sign_in(tenant, "dave")
    assert r.status_code == 429 and "too many failed sign-ins" in r.text
    assert "__Host-lz_session" not in c.cookies
    assert c.sign_in(tenant, "nobody").status_code == 401
    denied = [o for a, _, m, o, _ in audit_rows(server, tenant) if m == "console.sign_in" and a == "dave"]
    assert denied == ["denied"] * 6
    # Another account is not locked by dave's attempts.
    other = signed_in(server, tenant, "erin", "viewer")
    other.close()


def test_viewer_cannot_rotate_approve_or_create_keys(server: Server) -> None:
    tenant = server.tenant("viewer")
    server.secret(tenant, "prod/db/password")
    viewer = signed_in(server, tenant, "vic", "viewer")
    viewer.get("/secret", id="prod/db/password")
    assert "Rotate now" not in viewer.last_page  # not offered ...
    r = viewer.post("/secret/rotate", {"secret_id": "prod/db/password", "reason": "try", "confirm": "yes"})
    assert r.status_code == 403 and "needs the operator role" in r.text  # ... and refused when posted anyway
    r = viewer.post("/settings/keys/create", {"name": "k", "permission": "read-write", "expires": "30"})
    assert r.status_code == 403
    r = viewer.post("/approvals/approve", {"rotation_id": "rot_x"})
    assert r.status_code == 403
    assert server.cli("key", "list", "--tenant", tenant)["keys"] == []
    history = server.cli("secret", "list", "--tenant", tenant)["secrets"][0]
    assert history["current_version"] == "v1"
    denied = [(a, t, m, o, s) for a, t, m, o, s in audit_rows(server, tenant) if o == "denied"]
    assert denied == [
        ("vic", "person", "rotate_secret", "denied", "prod/db/password"),
        ("vic", "person", "key.create", "denied", None),
        ("vic", "person", "rotation.approve", "denied", None),
    ]


def test_tenant_a_never_sees_tenant_b(server: Server) -> None:
    a, b = server.tenant("ta"), server.tenant("tb")
    server.secret(b, "prod/b-only", value=b"tenant-b-credential-value-987654321")
    b_key = server.key(b)
    found = server.result(
        b_key,
        "tools/call",
        {"name": "detect_exposure", "arguments": {"text": "tenant-b-credential-value-987654321"}},
    )
    b_incident = found["structuredContent"]["incident_ids"][0]
    alice = signed_in(server, a, "alice", "admin")
    assert "prod/b-only" not in alice.get("/secrets").text
    assert alice.get("/secret", id="prod/b-only").status_code == 404
    assert b_incident not in alice.get("/incidents").text
    assert alice.get("/incident", id=b_incident).status_code == 404
    assert b_key.key_id not in alice.get("/settings/keys").text
    r = alice.post("/settings/keys/revoke", {"key_id": b_key.key_id})
    assert r.status_code == 404
    assert server.cli("key", "list", "--tenant", b)["keys"][0]["status"] == "active"
    # Signing in with A's operator name under tenant B fails: accounts are per tenant.
    assert Browserless(server).sign_in(b, "alice").status_code == 401


def test_setup_link_works_once(server: Server) -> None:
    tenant = server.tenant("once")
    inv = invite(server, tenant, "fay", "viewer")
    c = Browserless(server)
    c.set_up(inv)
    again = Browserless(server)
    r = again.get(inv.link.removeprefix(server.base))
    assert r.status_code == 404 and "not valid" in r.text
    listed = server.cli("operator", "list", "--tenant", tenant)["operators"]
    assert [(o["name"], o["status"]) for o in listed] == [("fay", "active")]
