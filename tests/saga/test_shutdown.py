"""SIGTERM with real processes: `lockzero serve` drains the calls in flight (bounded), and a `lockzero worker`
in the middle of a saga step lets go of the saga lock at once, so another worker resumes it without waiting
for the lock's TTL."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockzero.workers.arq_worker import SAGA_LOCK_TTL_MS, STALL_AFTER_S
from tests.saga.support import (
    ARQ,
    EMBEDDED,
    AclUser,
    StallingProxy,
    admin_redis,
    running_stack,
    wait_for,
)

REDIS_DB = 11


def _call_in_thread(url: str, token: str, method: str, params: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    """A JSON-RPC call on its own connection, answered (or cut off) into the returned list."""
    out: list[Any] = []

    def run() -> None:
        try:
            r = httpx.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            out.append(r)
        except httpx.HTTPError as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_serve_drains_a_call_in_flight(tmp_path: Path, acl_user: AclUser) -> None:
    with StallingProxy() as proxy, running_stack(EMBEDDED, tmp_path / "drain") as stack:
        tenant, key = stack.tenant_and_key()
        stack.add_redis_secret(tenant, "prod/drain/redis", acl_user, port=proxy.port)
        proxy.hold.set()  # the revoke's provider call waits at the proxy: the call is in flight
        thread, out = _call_in_thread(
            stack.server.mcp_url, key.token, "revoke_secret", {"secret_id": "prod/drain/redis", "reason": "drain"}
        )
        wait_for(lambda: proxy.held > 0, 15, "the revoke to reach the provider")
        proc = stack.server.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        # Draining: no new connection is accepted, the process stays up for the call in flight.
        wait_for(lambda: _refused(stack.server.base), 5, "the listener to close")
        assert proc.poll() is None
        proxy.hold.clear()
        thread.join(timeout=20)
        assert out and isinstance(out[0], httpx.Response), out
        body = out[0].json()
        assert body["result"]["status"] == "revoked", body
        proc.wait(timeout=15)
    assert acl_user.refused(acl_user.password)  # the drained call really finished its work


@pytest.mark.parametrize("mode", [pytest.param(EMBEDDED, id="embedded")])
def test_drain_is_bounded(tmp_path: Path, acl_user: AclUser, mode: str) -> None:
    with StallingProxy() as proxy, running_stack(mode, tmp_path / "bounded") as stack:
        tenant, key = stack.tenant_and_key()
        stack.add_redis_secret(tenant, "prod/drain/stuck", acl_user, port=proxy.port)
        stack.server.stop()  # restart with a 1 s drain limit
        stack.server.env["LOCKZERO_SHUTDOWN_TIMEOUT"] = "1"
        stack.server.http = httpx.Client(timeout=30.0)
        stack.server.start()
        proxy.hold.set()
        thread, out = _call_in_thread(
            stack.server.mcp_url, key.token, "revoke_secret", {"secret_id": "prod/drain/stuck", "reason": "stuck"}
        )
        wait_for(lambda: proxy.held > 0, 15, "the revoke to reach the provider")
        proc = stack.server.proc
        assert proc is not None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.monotonic() - started
        proxy.hold.clear()
        thread.join(timeout=20)
        # The provider never answered: the call was cut off after the limit instead of holding shutdown up.
        assert took < 6, took
        assert out and (isinstance(out[0], httpx.HTTPError) or out[0].status_code >= 500), out


def _refused(base: str) -> bool:
    try:
        httpx.get(f"{base}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


@pytest.mark.postgres
def test_worker_hands_its_saga_off_on_sigterm(tmp_path: Path, acl_user: AclUser) -> None:
    redis = admin_redis(REDIS_DB)
    with StallingProxy() as proxy, running_stack(ARQ, tmp_path / "handoff", REDIS_DB, worker=False) as stack:
        tenant, key = stack.tenant_and_key()
        stack.add_redis_secret(tenant, "prod/handoff/redis", acl_user, port=proxy.port)
        first = stack.start_worker()
        proxy.hold.set()  # the saga's first provider call waits at the proxy: worker 0 is inside a step
        rotation_id = stack.server.result(
            key, "rotate_secret", {"secret_id": "prod/handoff/redis", "reason": "handoff"}
        )["rotation_id"]
        lock = f"lockzero:saga-lock:{rotation_id}"
        wait_for(lambda: proxy.held > 0, 15, "the saga to reach the provider")
        held_by_first = wait_for(lambda: redis.get(lock), 10, "worker 0 to hold the saga lock")
        second = stack.start_worker()

        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0, stack.logs()
        stopped_in = time.monotonic() - started
        # Let go at once: the lock is no longer worker 0's (gone, or already taken by worker 1).
        assert redis.get(lock) != held_by_first
        proxy.hold.clear()
        done = stack.wait_finished(key, "prod/handoff/redis", rotation_id, timeout=30)
        resumed_in = time.monotonic() - started
        assert done["status"] == "completed" and done["verified"] is True, done
        # Without the hand-off the saga would wait for the lock's TTL and the reconciler's stall window.
        assert stopped_in < 6, stopped_in
        assert resumed_in < min(SAGA_LOCK_TTL_MS / 1000, STALL_AFTER_S), resumed_in
        assert second.poll() is None
        handed = (tmp_path / "handoff" / "worker0.stderr").read_text()
        assert '"msg":"saga handed off"' in handed and rotation_id in handed, stack.logs()
        resumed = (tmp_path / "handoff" / "worker1.stderr").read_text()
        assert '"msg":"saga finished"' in resumed and rotation_id in resumed, stack.logs()
        assert acl_user.passwords() and not acl_user.works(acl_user.password)
    redis.close()
