"""Every call reaches the audit: protocol methods, notifications, malformed and unknown requests,
refused keys and Origins, and every plaintext read of the pull endpoint. A flood of refusals
becomes a bounded number of rows whose counts still add up."""

from __future__ import annotations

import time

import httpx

from tests.api.audit_rows import SYSTEM_TENANT, AuditRow, audit_rows
from tests.api.support import MODERN, Server, unique

SUMMARY_WAIT_S = 12.0  # window (5 s) + flush tick (1 s) + slack for a loaded machine


def _methods(rows: list[AuditRow]) -> list[str]:
    return [r.method for r in rows]


def test_protocol_calls_and_refusals_are_audited_in_the_tenant(server: Server) -> None:
    tenant = server.tenant("aud")
    key = server.key(tenant)
    sid, init = server.initialize(key)  # initialize + notifications/initialized
    session = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": init["protocolVersion"]}
    assert server.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, key=key, headers=session).status_code == 200
    assert server.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, key=key, headers=session).status_code == 200
    assert server.modern(key, "server/discover").status_code == 200
    assert server.post(content=b"{not json", key=key).status_code == 400
    assert server.call(key, "frobnicate", {}).json()["error"]["code"] == -32601
    unknown_tool = server.call(key, "tools/call", {"name": "no_such_tool", "arguments": {}}).json()
    assert unknown_tool["error"]["code"] == -32602
    assert server.post({"jsonrpc": "2.0", "method": "notifications/whatever"}, key=key).status_code == 202
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "1.0", "id": 2, "method": "ping"}]
    assert server.post(batch, key=key).status_code == 200
    foreign = server.post(
        {"jsonrpc": "2.0", "id": 1, "method": "ping"}, key=key, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403

    rows = [r for r in audit_rows(server, tenant) if r.actor_type == "agent"]  # not the CLI's set-up
    methods = _methods(rows)
    for expected in (
        "initialize",
        "notifications/initialized",
        "ping",
        "tools/list",
        "server/discover",
        "parse_error",
        "unknown_method",
        "tools/call",
        "notifications/other",
        "invalid_request",
        "POST /api/mcp",
    ):
        assert expected in methods, (expected, methods)
    assert all(r.actor_id == key.key_id for r in rows), rows
    by_method = {r.method: r for r in rows}
    assert by_method["ping"].outcome == "ok"
    assert by_method["parse_error"].outcome == "invalid"
    assert by_method["POST /api/mcp"].outcome == "denied" and "forbidden_origin" in by_method["POST /api/mcp"].detail
    assert methods.count("ping") == 2  # the single one and the batch's valid one


def test_every_pull_read_is_audited(server: Server) -> None:
    tenant = server.tenant("pull")
    server.secret(tenant, "prod/pulled")
    token = server.dependent(tenant, "prod/pulled", "billing")["token"]
    url = f"{server.base}/api/v1/secrets/prod/pulled/current"
    for _ in range(3):
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    missing = httpx.get(
        f"{server.base}/api/v1/secrets/prod/other/current", headers={"Authorization": f"Bearer {token}"}
    )
    assert missing.status_code == 404
    reads = [r for r in audit_rows(server, tenant) if r.method == "pull_current"]
    ok = [r for r in reads if r.outcome == "ok"]
    # Every read, not only the first one of a version.
    assert len(ok) == 3, reads
    assert all(r.actor_type == "service" and r.secret_id == "prod/pulled" and "v1" in r.detail for r in ok), ok
    assert [r.outcome for r in reads if r.outcome != "ok"] == ["invalid"], reads


def _flood(server: Server, source: str, n: int, *, path: str = "/api/mcp", token: str | None = None) -> None:
    # A distinct loopback source address per test: the flood guard counts per source.
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        for _ in range(n):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if path == "/api/mcp":
                r = client.post(f"{server.base}{path}", content=b"{}", headers=headers)
            else:
                r = client.get(f"{server.base}{path}", headers=headers)
            assert r.status_code == 401, r.text


def _counted(server: Server, method: str, source: str, expected: int) -> list[AuditRow]:
    deadline = time.monotonic() + SUMMARY_WAIT_S
    while True:
        rows = [r for r in audit_rows(server, SYSTEM_TENANT) if r.method == method and source in r.detail]
        if sum(r.count for r in rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_refused_keys_are_audited_as_bounded_summaries(server: Server) -> None:
    source = "127.0.0.23"
    n = 150
    _flood(server, source, n, token="lz_mcp_" + unique("bogus"))
    _flood(server, source, 5)  # no Authorization header at all
    rows = _counted(server, "POST /api/mcp", source, n + 5)
    assert sum(r.count for r in rows) == n + 5, rows
    assert all(r.outcome == "denied" and "invalid_token" in r.detail for r in rows), rows
    assert any(r.is_summary for r in rows), rows
    # Bounded: at most 20 rows one by one per window, plus its summary (the flood may span two).
    assert len(rows) <= 2 * 21, len(rows)
    summary = next(r for r in rows if r.is_summary)
    assert f"source={source}" in summary.detail and "first=" in summary.detail and "last=" in summary.detail


def test_refused_pull_tokens_are_audited(server: Server) -> None:
    source = "127.0.0.24"
    _flood(server, source, 3, path="/api/v1/secrets/prod/x/current", token="lz_svc_" + unique("bogus"))
    rows = _counted(server, "pull_current", source, 3)
    assert sum(r.count for r in rows) == 3, rows


def test_refused_origin_without_a_key_goes_to_the_system_audit(server: Server) -> None:
    source = "127.0.0.25"
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
        r = client.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Origin": "https://evil.example", "MCP-Protocol-Version": MODERN},
        )
    assert r.status_code == 403
    rows = _counted(server, "POST /api/mcp", source, 1)
    assert [r.outcome for r in rows] == ["denied"] and "forbidden_origin" in rows[0].detail, rows
