"""Sessions are capped per key: a key that opens too many loses only its own oldest ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from api.mcp.sessions import MAX_SESSIONS_PER_KEY, SessionStore
from tests.api.support import Server


def test_a_key_cannot_evict_another_keys_sessions() -> None:
    store = SessionStore()
    theirs = store.open("key-b", "2025-11-25")
    # More sessions than the old shared cap of 10,000 (which evicted the oldest of anyone's).
    for _ in range(10_001):
        store.open("key-a", "2025-11-25")
    assert store.get(theirs.session_id, "key-b") is theirs
    assert store.count("key-a") == MAX_SESSIONS_PER_KEY
    assert len(store) == MAX_SESSIONS_PER_KEY + 1


def test_idle_sessions_expire_without_a_scan() -> None:
    store = SessionStore(idle_timeout_s=0.0)
    old = store.open("key-a", "2025-11-25")
    store.open("key-b", "2025-11-25")
    assert store.get(old.session_id, "key-a") is None
    assert len(store) == 0


def test_cross_tenant_eviction_over_http(server: Server) -> None:
    """Tenant A initializes past its cap; tenant B's session still works, A's oldest is gone."""
    a = server.key(server.tenant("sess-a"))
    b = server.key(server.tenant("sess-b"))
    b_sid, b_init = server.initialize(b)
    a_first, _ = server.initialize(a)
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }

    def opens(n: int) -> list[int]:
        with httpx.Client(timeout=30) as client:
            headers = {"Content-Type": "application/json", **a.auth}
            return [client.post(server.mcp_url, json=body, headers=headers).status_code for _ in range(n)]

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for batch in pool.map(opens, [MAX_SESSIONS_PER_KEY // 4] * 4) for s in batch]
    assert statuses == [200] * MAX_SESSIONS_PER_KEY
    version = b_init["protocolVersion"]
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    r = server.post(ping, key=b, headers={"Mcp-Session-Id": b_sid, "MCP-Protocol-Version": version})
    assert r.status_code == 200 and r.json()["result"] == {}, r.text
    r = server.post(ping, key=a, headers={"Mcp-Session-Id": a_first, "MCP-Protocol-Version": version})
    assert r.status_code == 404, r.text
