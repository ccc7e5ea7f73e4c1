"""One request must not freeze the server: batches are capped, and while one key floods the server
with the biggest batches it takes, another tenant's ping stays fast."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.api.conftest import Tenant
from tests.api.support import Server

MAX_BATCH = 100


def _batch(n: int, method: str = "ping") -> list[dict[str, Any]]:
    return [{"jsonrpc": "2.0", "id": i, "method": method} for i in range(n)]


def test_over_long_batch_is_refused_naming_the_cap(shared: Tenant) -> None:
    r = shared.server.post(_batch(MAX_BATCH + 1), key=shared.key)
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["code"] == -32600, err
    assert str(MAX_BATCH) in err["message"] and err["data"] == {"max_batch": MAX_BATCH}, err


def test_batch_at_the_cap_is_answered_in_full(shared: Tenant) -> None:
    r = shared.server.post(_batch(MAX_BATCH), key=shared.key)
    assert r.status_code == 200, r.text[:300]
    answers = r.json()
    assert sorted(a["id"] for a in answers) == list(range(MAX_BATCH))
    assert all(a["result"] == {} for a in answers)


def test_batch_flood_does_not_stall_another_tenant(server: Server) -> None:
    """Two clients of a read-only key post batches of 3,000 tools/list (the old 20 s stall) and
    batches of 100 tools/list (the most a batch may hold) back to back; meanwhile another tenant's
    pings keep a p99 under 100 ms."""
    attacker = server.key(server.tenant("flood"), read_only=True)
    victim = server.key(server.tenant("victim"))
    stop = threading.Event()
    sent = [0, 0]

    def flood(slot: int) -> None:
        with httpx.Client(timeout=60) as client:
            headers = {"Content-Type": "application/json", **attacker.auth}
            while not stop.is_set():
                for n in (3000, MAX_BATCH):
                    client.post(server.mcp_url, json=_batch(n, "tools/list"), headers=headers)
                    sent[slot] += 1

    flooders = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(2)]
    for t in flooders:
        t.start()
    latencies: list[float] = []
    try:
        time.sleep(0.3)
        with httpx.Client(timeout=60) as client:
            headers = {"Content-Type": "application/json", **victim.auth}
            for i in range(150):
                started = time.perf_counter()
                r = client.post(server.mcp_url, json={"jsonrpc": "2.0", "id": i, "method": "ping"}, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200 and r.json()["result"] == {}, r.text
    finally:
        stop.set()
        for t in flooders:
            t.join(90)
    assert sum(sent) >= 4, f"the flood barely ran ({sent} batches): the test measured nothing"
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert p99 < 0.100, (
        f"ping p99 {p99 * 1000:.0f} ms under the flood (median {latencies[len(latencies) // 2] * 1000:.0f} ms)"
    )
