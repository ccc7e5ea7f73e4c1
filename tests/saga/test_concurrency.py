"""One in-flight rotation per secret, under a burst of concurrent rotate_secret calls, and idempotency keys."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.api.support import Key
from tests.saga.support import Stack, wait_for

CALLS = 50


async def burst(stack: Stack, key: Key, secret_id: str, n: int) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> dict[str, Any]:
            body = {
                "jsonrpc": "2.0",
                "id": i,
                "method": "rotate_secret",
                "params": {"secret_id": secret_id, "reason": f"leak reported by scanner #{i}"},
            }
            r = await client.post(stack.server.mcp_url, json=body, headers=key.auth)
            assert r.status_code == 200, r.text
            return dict(r.json())

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_concurrent_rotate_calls_start_exactly_one_rotation(stack: Stack) -> None:
    tenant, key = stack.tenant_and_key()
    sid = "prod/internal/token"
    stack.server.secret(tenant, sid)  # `generated`: v1 minted at registration
    # A pull dependent that reads only at the end keeps the rotation in flight for the whole burst.
    token = stack.server.dependent(tenant, sid, "api", "pull")["token"]
    stack.policy(tenant, sid, "--adoption-deadline", "120s")

    answers = asyncio.run(burst(stack, key, sid, CALLS))
    errors = [a for a in answers if "error" in a]
    assert errors == [], errors[:3]
    assert sorted(a["id"] for a in answers) == list(range(CALLS))
    ids = {a["result"]["rotation_id"] for a in answers}
    assert len(ids) == 1, ids
    assert {(a["result"]["from_version"], a["result"]["to_version"]) for a in answers} == {("v1", "v2")}

    (rotation_id,) = ids
    history = stack.history(key, sid)
    assert [r["rotation_id"] for r in history] == [rotation_id]

    # Let it finish; still one rotation, and it moved the secret to v2.
    wait_for(lambda: stack.step_status(key, sid, rotation_id, "shift") == "started", 30, "shift")
    assert stack.pull(token, sid).json()["version"] == "v2"
    result = stack.wait_finished(key, sid, rotation_id)
    assert result["status"] == "completed" and result["verified"] is True, result
    assert [r["rotation_id"] for r in stack.history(key, sid)] == [rotation_id]


def test_idempotency_key_returns_the_same_rotation(stack: Stack) -> None:
    tenant, key = stack.tenant_and_key()
    sid = "prod/webhooks/signing"
    stack.server.secret(tenant, sid)
    params = {"secret_id": sid, "reason": "quarterly", "idempotency_key": "change-4711"}

    first = stack.server.result(key, "rotate_secret", params)
    second = stack.server.result(key, "rotate_secret", params)
    assert second["rotation_id"] == first["rotation_id"]
    assert stack.wait_finished(key, sid, first["rotation_id"])["status"] == "completed"

    # A retry after the rotation finished is still that rotation, not a new one.
    third = stack.server.result(key, "rotate_secret", params)
    assert third["rotation_id"] == first["rotation_id"], third
    assert third["status"] == "completed" and third["to_version"] == "v2", third
    assert len(stack.history(key, sid)) == 1

    # A different key is a different request: a new rotation, v2 -> v3.
    other = stack.server.result(key, "rotate_secret", params | {"idempotency_key": "change-4712"})
    assert other["rotation_id"] != first["rotation_id"]
    assert (other["from_version"], other["to_version"]) == ("v2", "v3")
    assert stack.wait_finished(key, sid, other["rotation_id"])["status"] == "completed"
    assert len(stack.history(key, sid)) == 2
