"""The console in a real browser (Debian's chromium driven by Playwright) against a real `lockzero serve`.

One story, in order: sign in with TOTP, create a key and use it from the MCP SDK client, two different people
approve the agent's rotation and watch it finish, open the incident the agent caused and read its timeline,
revoke the key and see the client refused. Screenshots of each page go to test-output/console/.
"""

from __future__ import annotations

import asyncio
import os
import time
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

    # Watch it finish: the secret page shows v2 current and v1 retired once the saga is done.
    deadline = time.monotonic() + 30
    while True:
        bob.goto("/secret?id=prod/db/password")
        states = bob.inner_text("main")
        if "v2\tcurrent" in states or ("v2" in states and "completed" in states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)
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
    alice.screenshot(path=str(SHOTS / "09-overview-after.png"), full_page=True)

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
