"""Settings → operators, notifications and policies against a real `lockzero serve`: admins invite, remove and
edit; everyone else reads; CSRF, escaping and tenants hold as on every other page."""

from __future__ import annotations

import html
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from tests.api.conftest import running_server
from tests.api.support import Server
from tests.console.support import PASSWORD, Browserless, Invite, signed_in
from tests.policy.support import Receiver

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-settings")) as s:
        yield s


def rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(server.database_url.removeprefix("sqlite:///"))
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def test_admins_invite_and_remove_operators(server: Server) -> None:
    tenant = server.tenant("ops")
    admin = signed_in(server, tenant, "ada", "admin")
    admin.get("/settings/operators")
    assert 'id="invite"' in admin.last_page
    r = admin.post("/settings/operators/invite", {"name": XSS, "role": "viewer"})
    assert r.status_code == 400 and "<script>alert" not in r.text
    r = admin.post("/settings/operators/invite", {"name": "nina", "role": "operator"})
    assert r.status_code == 200 and 'id="setup-link"' in r.text
    link = html.unescape(r.text.split('<code id="setup-link">', 1)[1].split("</code>", 1)[0])
    assert link.startswith(server.base + "/setup?token=lz_setup_")
    # The link works in another browser; TOTP was left off, so a password is enough.
    nina = Browserless(server)
    nina.set_up(Invite(tenant, "nina", link))
    assert nina.sign_in(tenant, "nina", PASSWORD).status_code == 303
    assert "nina · operator" in nina.get("/").text
    # nina (operator) reads the page but may not manage; posting anyway is refused.
    page = nina.get("/settings/operators").text
    assert "ada" in page and 'id="invite"' not in page and 'action="/settings/operators/remove"' not in page
    assert nina.post("/settings/operators/invite", {"name": "mallory", "role": "admin"}).status_code == 403
    assert nina.post("/settings/operators/remove", {"name": "ada"}).status_code == 403

    admin.get("/settings/operators")
    assert admin.post("/settings/operators/remove", {"name": "ada"}).status_code == 409  # not yourself
    admin.get("/settings/operators")
    assert admin.post("/settings/operators/require-totp", {"name": "nina"}).status_code == 200
    r = admin.post("/settings/operators/remove", {"name": "nina"})
    assert r.status_code == 200 and "nina removed" in r.text
    assert 'action="/login"' in nina.get("/").text  # her session ended with her account
    for path, data in (("/settings/operators/invite", {"name": "x", "role": "viewer"}),
                       ("/settings/operators/remove", {"name": "ada"})):  # fmt: skip
        assert admin.post(path, data, csrf=False).status_code == 403
    audit = rows(server, "SELECT actor_id, method, outcome FROM rm_audit WHERE tenant = ? AND method LIKE 'operator.%'"
                 " AND method <> 'operator.setup' AND actor_type = 'person' ORDER BY position", tenant)  # fmt: skip
    assert audit == [
        ("ada", "operator.add", "invalid"),
        ("ada", "operator.add", "ok"),
        ("nina", "operator.add", "denied"),
        ("nina", "operator.remove", "denied"),
        ("ada", "operator.remove", "error"),
        ("ada", "operator.require_totp", "ok"),
        ("ada", "operator.remove", "ok"),
    ]


def test_policies_edit_and_notifications_view(server: Server) -> None:
    tenant, other = server.tenant("pol"), server.tenant("pol-other")
    server.secret(tenant, "prod/db", labels={"n": XSS})
    server.secret(other, "prod/other-tenant")
    with Receiver({}) as receiver:
        url = receiver.url("/hook?token=very-private-query")
        server.cli("secret", "policy", "prod/db", "--tenant", tenant, "--notify", url)
        admin = signed_in(server, tenant, "abe", "admin")
        admin.get("/settings/policies")
        assert "prod/other-tenant" not in admin.last_page
        edit = {"secret_id": "prod/db", "max_age_days": "31", "required_approvals": "2", "auto_rotate": "yes"}
        r = admin.post("/settings/policies/update", edit)
        assert r.status_code == 200 and "policy of prod/db updated" in r.text
        (stored,) = rows(server, "SELECT policy, max_age_s FROM rm_secrets WHERE tenant = ?", tenant)
        policy = msgspec.json.decode(stored[0])
        assert (policy["required_approvals"], policy["auto_rotate"], stored[1]) == (2, True, 31 * 86400)
        assert policy.get("allow_agent_rotation") is False  # the box was left unticked
        assert len(policy["notify"]) == 1  # the notify target is kept
        r = admin.post("/settings/policies/update", {"secret_id": "prod/db", "required_approvals": "99"})
        assert r.status_code == 400 and "approvals" in r.text
        assert admin.post("/settings/policies/update", {"secret_id": "prod/db"}, csrf=False).status_code == 403
        admin.get("/")
        r = admin.post("/settings/policies/update", {"secret_id": "prod/other-tenant", "required_approvals": "1"})
        assert r.status_code == 404

        # A rotation sends a notification to the target; the page lists the delivery.
        key = server.key(tenant)
        server.cli("secret", "policy", "prod/db", "--tenant", tenant, "--approvals", "0")
        server.result(
            key, "tools/call", {"name": "rotate_secret", "arguments": {"secret_id": "prod/db", "reason": "r"}}
        )
        deadline = time.monotonic() + 20
        while "HTTP 2" not in (page := admin.get("/settings/notifications").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.3)
        assert "very-private-query" not in page and "/hook" not in page  # targets are shown redacted
        assert "prod/other-tenant" not in page

    viewer = signed_in(server, tenant, "vic", "viewer")
    page = viewer.get("/settings/policies").text
    assert 'action="/settings/policies/update"' not in page and "prod/db" in page
    assert (
        viewer.post("/settings/policies/update", {"secret_id": "prod/db", "required_approvals": "0"}).status_code == 403
    )
