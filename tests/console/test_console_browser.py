"""The console in a real browser (Debian's chromium driven by Playwright) against a real `lockzero serve`.

One story, in order: sign in with TOTP, create a key and use it from the MCP SDK client, two different people
approve the agent's rotation and watch it finish live (server-sent events, while it waits for a pull dependent),
open the incident the agent caused, read its timeline and resolve it with a note, look at the audit log and the
settings, revoke the key and see the client refused. Screenshots of each page go to test-output/console/.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import httpx2
import pyotp
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.sync_api import sync_playwright

from tests.api.conftest import running_server
from tests.api.support import REPO, Server
from tests.console.support import PASSWORD, invite

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "test-output" / "console"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-browser")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # A failure, not a skip: `make test` installs it (deploy/ensure-services.sh), so missing means broken set-up.
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed; `make services` installs it"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


async def _mcp(server: Server, token: str, tool: str, args: dict[str, Any]) -> Any:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30.0) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        return await client.call_tool(tool, args)


def mcp_call(server: Server, token: str, tool: str, args: dict[str, Any]) -> Any:
    # Playwright's sync API owns this thread's event loop; the SDK client runs on a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _mcp(server, token, tool, args)).result()


def set_up(page: Any, link: str, *, totp: bool) -> str | None:
    page.goto(link)
    secret = page.input_value("input[name=totp_secret]")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    if totp:
        page.fill("input[name=totp]", pyotp.TOTP(secret).now())
    page.click("#setup button[type=submit]")
    page.wait_for_selector("#login")
    return secret if totp else None


def sign_in(page: Any, tenant: str, name: str, totp_secret: str | None = None) -> None:
    page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + "/")
    page.fill("input[name=tenant]", tenant)
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    if totp_secret:
        page.fill("input[name=totp]", pyotp.TOTP(totp_secret).now())
    page.click("#login button[type=submit]")
    page.wait_for_selector(f"text={name} · ")


def test_the_console_story(server: Server, browser: Any) -> None:
    tenant = server.tenant("story")
    server.cli("secret", "add", "prod/db/password", "--tenant", tenant, "--provider", "generated",
               "--environment", "prod", "--approvals", "2")  # fmt: skip
    server.cli("secret", "add", "prod/payments/key", "--tenant", tenant, "--provider", "generated",
               "--environment", "prod", "--no-agent-rotation")  # fmt: skip
    # A pull dependent: the rotation's shift step waits until billing reads the new version.
    billing = server.dependent(tenant, "prod/db/password", "billing")
    alice_invite = invite(server, tenant, "alice", "admin", require_totp=True)
    bob_invite = invite(server, tenant, "bob", "operator")

    alice_ctx = browser.new_context(base_url=server.base)
    alice = alice_ctx.new_page()
    alice.on("dialog", lambda d: d.accept())
    # Sign in with TOTP: without the code the password alone is refused.
    totp_secret = set_up(alice, alice_invite.link, totp=True)
    assert totp_secret
    alice.screenshot(path=str(SHOTS / "01-sign-in.png"))
    alice.fill("input[name=tenant]", tenant)
    alice.fill("input[name=name]", "alice")
    alice.fill("input[name=password]", PASSWORD)
    alice.click("#login button[type=submit]")
    assert "wrong" in alice.inner_text(".flash")
    sign_in(alice, tenant, "alice", totp_secret)
    alice.screenshot(path=str(SHOTS / "02-overview.png"), full_page=True)

    # Create a read-write key, shown once with the snippets, and use it from the MCP SDK client.
    alice.goto("/settings/keys")
    alice.fill("#create-key input[name=name]", "claude-code")
    alice.select_option("#create-key select[name=permission]", "read-write")
    alice.click("#create-key button[type=submit]")
    token = alice.inner_text("#new-key").strip()
    assert token.startswith("lz_mcp_")
    assert token in alice.inner_text("#snippet-code") and "claude mcp add" in alice.inner_text("#snippet-code")
    alice.screenshot(path=str(SHOTS / "03-key-created.png"), full_page=True)
    listed = mcp_call(server, token, "list_secrets", {})
    assert sorted(s["secret_id"] for s in listed.structured_content["secrets"]) == [
        "prod/db/password",
        "prod/payments/key",
    ]
    # The agent asks for a rotation that needs two people; and tries one its policy forbids (an incident).
    asked = mcp_call(server, token, "rotate_secret", {"secret_id": "prod/db/password", "reason": "leaked in CI log"})
    assert asked.is_error is False, asked
    rotation_id = asked.structured_content["rotation_id"]
    assert asked.structured_content["status"] == "pending_approval"
    refused = mcp_call(server, token, "rotate_secret", {"secret_id": "prod/payments/key", "reason": "because"})
    assert refused.is_error is True

    # Two different people approve: alice (admin) first; her second click does not count.
    alice.goto("/approvals")
    assert rotation_id in alice.inner_text("main")
    alice.screenshot(path=str(SHOTS / "04-approvals.png"), full_page=True)
    alice.click("button[name=approve]")
    assert "1/2 approvals" in alice.inner_text(".flash")
    approve_form_csrf = alice.input_value("header input[name=csrf]")
    again = alice_ctx.request.post(
        "/approvals/approve", form={"csrf": approve_form_csrf, "rotation_id": rotation_id}, max_redirects=0
    )
    assert again.status == 409 and "distinct people" in again.text()

    bob_ctx = browser.new_context(base_url=server.base)
    bob = bob_ctx.new_page()
    set_up(bob, bob_invite.link, totp=False)
    sign_in(bob, tenant, "bob")
    bob.goto("/approvals")
    bob.click("button[name=approve]")
    assert "2/2 approvals" in bob.inner_text(".flash")

    # Watch it finish live: the rotation's page waits for billing, then moves on by itself (server-sent events,
    # no reload: a marker set in the page survives) once billing reads the new version.
    bob.goto(f"/rotation?id={rotation_id}")
    bob.wait_for_selector("#waiting-for", timeout=30_000)
    assert "billing (prod) via pull" in bob.inner_text("#waiting-for")
    bob.evaluate("window.__stillTheSamePage = true")
    bob.screenshot(path=str(SHOTS / "05-rotation-live-waiting.png"), full_page=True)
    pulled = httpx.get(
        f"{server.base}/api/v1/secrets/prod/db/password/current",
        headers={"Authorization": f"Bearer {billing['token']}"},
        timeout=10,
    )
    assert pulled.status_code == 200
    bob.wait_for_selector("#rotation-status.completed", timeout=30_000)
    assert bob.evaluate("window.__stillTheSamePage") is True
    assert bob.query_selector("#waiting-for") is None
    steps = bob.inner_text("#progress table.steps")
    for step in ("create", "validate", "shift", "retire", "verify"):
        assert step in steps
    bob.screenshot(path=str(SHOTS / "05-rotation-live-completed.png"), full_page=True)
    bob.goto("/secret?id=prod/db/password")
    assert "v2\tcurrent" in bob.inner_text("#versions")
    assert server.cli("secret", "list", "--tenant", tenant)["secrets"][0]["current_version"] == "v2"
    bob.screenshot(path=str(SHOTS / "05-secret-rotated.png"), full_page=True)

    # The incident the forbidden rotation opened, and its timeline.
    alice.goto("/incidents")
    alice.screenshot(path=str(SHOTS / "06-incidents.png"), full_page=True)
    alice.click("text=inc_")
    alice.wait_for_selector("#timeline")
    timeline = alice.inner_text("#timeline")
    assert "incident opened (policy_violation" in timeline
    assert "rotate_secret" in timeline
    alice.screenshot(path=str(SHOTS / "07-incident-timeline.png"), full_page=True)
    alice.goto("/")
    assert alice.inner_text("#open-incidents") == "1"

    # Resolve it with a note: the timeline ends with the note and who wrote it; nothing is open any more.
    alice.goto("/incidents")
    alice.click("text=inc_")
    alice.fill("#resolve textarea[name=note]", "agent key scoped down; payments rotation stays human-only")
    alice.click("#resolve button[type=submit]")
    assert "resolved" in alice.inner_text(".flash")
    assert alice.inner_text("#incident-status") == "resolved"
    last = alice.inner_text("#timeline li:last-child")
    assert "resolved: agent key scoped down" in last and "person:alice" in last
    alice.screenshot(path=str(SHOTS / "10-incident-resolved.png"), full_page=True)
    alice.click("#printable")
    alice.screenshot(path=str(SHOTS / "11-incident-printable.png"), full_page=True)
    alice.goto("/")
    assert alice.inner_text("#open-incidents") == "0"
    assert alice.query_selector("#ttr-chart rect.dot") is not None  # today's resolution on the chart
    alice.screenshot(path=str(SHOTS / "09-overview-after.png"), full_page=True)
    pages = {"12-audit": "/audit?actor=alice", "13-operators": "/settings/operators",
             "14-policies": "/settings/policies", "15-notifications": "/settings/notifications"}  # fmt: skip
    for name, path in pages.items():
        alice.goto(path)
        alice.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert "incident.resolve" in alice.goto("/audit?actor=alice").text()

    # Revoke the key in the console: the client is refused from then on.
    alice.goto("/settings/keys")
    alice.click("#keys button.danger")
    assert "revoked" in alice.inner_text(".flash")
    alice.screenshot(path=str(SHOTS / "08-key-revoked.png"), full_page=True)
    r = httpx.post(
        server.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
    )
    assert r.status_code == 401
    with pytest.raises(Exception):
        mcp_call(server, token, "list_secrets", {})
    for shot in SHOTS.glob("*.png"):
        assert shot.stat().st_size > 5_000, shot
    alice_ctx.close()
    bob_ctx.close()
