"""An MCP key used unlike itself, through the real `lockzero serve`: its write calls from a second address raise
one usage_anomaly (on the secret the call named), not one per call or per secret; calls from the address it
learned first raise nothing. The second address is real: the client binds 127.0.0.2 (all of 127/8 is loopback)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.api.conftest import Tenant
from tests.api.support import Key, Server


def _client(source: str) -> httpx.Client:
    return httpx.Client(timeout=30.0, transport=httpx.HTTPTransport(local_address=source))


def _rotate(s: Server, http: httpx.Client, key: Key, secret_id: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "rotate_secret", "params": {"secret_id": secret_id, "reason": "drill"}}
    r = http.post(s.mcp_url, content=json.dumps(body), headers={"Content-Type": "application/json", **key.auth})
    assert "result" in r.json(), r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the next call must not find this rotation still in flight
        verdict = s.result(key, "verify_remediation", {"secret_id": secret_id})
        if verdict["status"] in ("completed", "failed", "compensated"):
            return
        time.sleep(0.05)
    raise AssertionError(f"rotation of {secret_id} did not finish")


def _anomalies(s: Server, key: Key) -> list[dict[str, Any]]:
    page = s.result(key, "get_active_incidents", {"kind": "usage_anomaly"})
    return list(page["incidents"])


def test_write_calls_from_a_new_address_are_one_anomaly(tenant: Tenant) -> None:
    s, key = tenant.server, tenant.key
    first, second = _client("127.0.0.1"), _client("127.0.0.2")
    try:
        _rotate(s, first, key, "prod/db/password")
        _rotate(s, first, key, "staging/api-token")
        assert _anomalies(s, key) == []  # the first address is the baseline, not an anomaly

        _rotate(s, second, key, "prod/db/password")
        _rotate(s, second, key, "staging/api-token")
        _rotate(s, second, key, "staging/api-token")
        # (A later verified rotation of prod/db/password would resolve it, as for every usage anomaly.)
        found = _anomalies(s, key)
        assert len(found) == 1, found
        assert found[0]["secret_id"] == "prod/db/password"
        assert "127.0.0.2" in found[0]["summary"] and key.key_id in found[0]["summary"]
    finally:
        first.close()
        second.close()


def test_read_calls_do_not_teach_or_trip_the_key_baseline(tenant: Tenant) -> None:
    s, key = tenant.server, tenant.key
    second = _client("127.0.0.2")
    try:
        for _ in range(3):
            body = {"jsonrpc": "2.0", "id": 1, "method": "list_secrets", "params": {}}
            r = second.post(
                s.mcp_url, content=json.dumps(body), headers={"Content-Type": "application/json", **key.auth}
            )
            assert "result" in r.json(), r.text
        _rotate(s, s.http, key, "prod/db/password")
        assert _anomalies(s, key) == []
    finally:
        second.close()
