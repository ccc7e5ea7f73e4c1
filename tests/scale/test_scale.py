"""Horizontal scale under kill -9: 2 `lockzero serve` processes behind a round-robin TCP proxy, 3 `lockzero worker`
processes, PostgreSQL and Redis; mixed direct JSON-RPC traffic plus rotations (with idempotency keys, retried)
over many secrets; one API process and one worker killed with -9 mid-run and restarted.

Checked afterwards: every accepted rotate ended completed or compensated; no two steps of one saga overlap (read
from the event log); every idempotency key started exactly one rotation; the audit holds exactly one row per
answered call. Modest sizes here (LOCKZERO_SCALE_* make them bigger)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.support import Key, Server
from tests.saga.support import ARQ, running_stack, wait_for

pytestmark = pytest.mark.postgres

SECRETS = int(os.environ.get("LOCKZERO_SCALE_SECRETS", "8"))
ROTATES = int(os.environ.get("LOCKZERO_SCALE_ROTATES", "48"))
CLIENTS = 6
REDIS_DB = 12


class RoundRobinProxy:
    """A TCP load balancer: each new connection goes to the next upstream that accepts it (a dead one is skipped,
    as a health-checking balancer would)."""

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self._next = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        for _ in range(len(self.upstreams)):
            with self._lock:
                port = self.upstreams[self._next % len(self.upstreams)]
                self._next += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            self._pump(client, upstream)
            return
        client.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing.set()
        self.listener.close()


class Client:
    """Direct JSON-RPC calls (no MCP session) through the proxy, one connection per call (round robin)."""

    #: Calls per method that got an answer (each must have exactly one audit row), and those whose answer was lost
    #: or said "unavailable" (a kill -9 or a failed audit write: they may or may not have a row). Shared by clients.
    answered: Counter[str] = Counter()
    unsure: Counter[str] = Counter()
    _counts = threading.Lock()

    def __init__(self, port: int, key: Key) -> None:
        self.url = f"http://127.0.0.1:{port}/api/mcp"
        self.key = key
        self.http = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        try:
            r = self.http.post(self.url, json=body, headers=self.key.auth)
        except httpx.TransportError:
            with self._counts:
                self.unsure[method] += 1
            raise
        assert r.status_code == 200, r.text
        answer = dict(r.json())
        with self._counts:
            if answer.get("error", {}).get("code") == -32016:
                self.unsure[method] += 1
            else:
                self.answered[method] += 1
        return answer

    def rotate(self, secret_id: str, idem: str, stats: dict[str, int]) -> str:
        """rotate_secret, retried with the same key after a transport failure (a killed API process)."""
        for _ in range(20):
            try:
                answer = self.call(
                    "rotate_secret", {"secret_id": secret_id, "reason": "scale", "idempotency_key": idem}
                )
            except httpx.TransportError:
                stats["transport_retries"] += 1
                time.sleep(0.2)
                continue
            if "error" in answer and answer["error"]["code"] == -32016:  # unavailable: retryable by contract
                stats["unavailable_retries"] += 1
                time.sleep(0.2)
                continue
            assert "result" in answer, answer
            return str(answer["result"]["rotation_id"])
        raise AssertionError(f"rotate of {secret_id} never answered")


def _saga_events(database_url: str) -> list[tuple[str, dict[str, Any]]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT type, data FROM lz_events WHERE type LIKE 'rotation.%' ORDER BY position"
        ).fetchall()
    return [(t, json.loads(bytes(d))) for t, d in rows]


def test_two_apis_three_workers_survive_kill_9(tmp_path: Path) -> None:
    with running_stack(ARQ, tmp_path / "scale", REDIS_DB, worker=False) as stack:
        api1 = stack.server
        api2 = Server("postgresql", api1.database_url, tmp_path / "scale" / "api2", dict(api1.env))
        api2.workdir.mkdir()
        api2.start()
        workers = [stack.start_worker() for _ in range(3)]
        proxy = RoundRobinProxy([api1.port, api2.port])
        try:
            tenant, key = stack.tenant_and_key()
            secret_ids = [f"prod/scale/s{i}" for i in range(SECRETS)]
            for sid in secret_ids:
                api1.secret(tenant, sid)
            stats: dict[str, int] = defaultdict(int)
            accepted: dict[str, tuple[str, str]] = {}  # idempotency key -> (secret, rotation id)
            lock = threading.Lock()
            rng = random.Random(14)
            plan = [(secret_ids[i % SECRETS], f"idem-{i}") for i in range(ROTATES)]

            def client_loop(part: list[tuple[str, str]]) -> None:
                client = Client(proxy.port, key)
                for sid, idem in part:
                    rotation_id = client.rotate(sid, idem, stats)
                    if rng.random() < 0.3:  # a retry after a "dropped connection": the same rotation
                        assert client.rotate(sid, idem, stats) == rotation_id
                        with lock:
                            stats["retried"] += 1
                    with lock:
                        accepted[idem] = (sid, rotation_id)
                    # Mixed read traffic between rotations.
                    for method, params in (
                        ("list_secrets", {"limit": 5}),
                        ("get_secret_metadata", {"secret_id": sid}),
                        ("verify_remediation", {"secret_id": sid, "rotation_id": rotation_id}),
                        ("detect_exposure", {"text": "nothing secret here\n"}),
                    ):
                        with contextlib.suppress(httpx.TransportError):
                            client.call(method, params)
                            with lock:
                                stats["reads"] += 1
                    time.sleep(0.05)

            parts = [plan[i::CLIENTS] for i in range(CLIENTS)]
            started = time.monotonic()
            with ThreadPoolExecutor(CLIENTS) as pool:
                futures = [pool.submit(client_loop, part) for part in parts]
                wait_for(lambda: len(accepted) >= ROTATES // 3, 60, "a third of the rotations")
                # kill -9 one API process and one worker in the middle of the run, then bring both back.
                assert api2.proc is not None
                api2.proc.send_signal(signal.SIGKILL)
                api2.proc.wait(timeout=10)
                stack.kill_worker(workers[0])
                time.sleep(1.0)
                api2.http = httpx.Client(timeout=30.0)
                api2.start()
                stack.start_worker()
                for f in futures:
                    f.result(timeout=180)
            traffic_s = time.monotonic() - started

            check = Client(proxy.port, key)

            def finished(sid: str, rotation_id: str) -> str | None:
                v = check.call("verify_remediation", {"secret_id": sid, "rotation_id": rotation_id})["result"]
                return v["status"] if v["status"] in ("completed", "compensated") else None

            rotations = {rid: sid for sid, rid in accepted.values()}
            outcomes = {rid: wait_for(lambda s=sid, r=rid: finished(s, r), 60, rid) for rid, sid in rotations.items()}
            assert set(outcomes.values()) <= {"completed", "compensated"}, outcomes

            events = _saga_events(api1.database_url)
            # Each idempotency key started exactly one rotation.
            requested = defaultdict(list)
            for kind, data in events:
                if kind == "rotation.requested" and data.get("idempotency_key"):
                    requested[data["idempotency_key"]].append(data["rotation_id"])
            # (A key whose call joined a rotation already in flight on that secret started none: it is absent.)
            for idem, (_, rid) in accepted.items():
                assert requested.get(idem, [rid]) == [rid], (idem, rid, requested.get(idem))
            assert all(len(v) == 1 for v in requested.values()), {k: v for k, v in requested.items() if len(v) > 1}
            # No two steps of one saga overlap: a step starts only when the previous one ended (a step started
            # again after a crash is the same step resumed, not an overlap).
            open_step: dict[str, tuple[str, bool] | None] = {}
            for kind, data in events:
                rid = data.get("rotation_id")
                step = (data.get("step"), bool(data.get("compensating")))
                if kind == "rotation.step_started":
                    current = open_step.get(rid)
                    assert current is None or current == step, (rid, current, step)
                    open_step[rid] = step
                elif kind in ("rotation.step_completed", "rotation.step_failed"):
                    assert open_step.get(rid) == step, (rid, open_step.get(rid), step)
                    open_step[rid] = None
            assert all(open_step.get(rid) is None for rid in rotations), open_step

            print(
                f"\nscale: {len(rotations)} rotations from {ROTATES} keyed rotate calls over {SECRETS} secrets,"
                f" {stats['retried']} same-key retries, {stats['transport_retries']} transport retries,"
                f" {stats['reads']} reads in {traffic_s:.1f} s; outcomes:"
                f" { {o: list(outcomes.values()).count(o) for o in set(outcomes.values())} }"
            )
            # The kill really hit traffic: the restarted API and worker did work afterwards.
            assert len(rotations) >= SECRETS

            # The audit holds exactly one row per answered call (by method); a call whose answer was lost in the
            # kill may have one or not, never two.
            with psycopg.connect(api1.database_url) as conn:
                rows = conn.execute(
                    "SELECT method, count(*) FROM rm_audit WHERE tenant = %s AND actor_id = %s GROUP BY method",
                    (tenant, key.key_id),
                ).fetchall()
            audited = {str(m): int(n) for m, n in rows}
            for method in set(audited) | set(Client.answered):
                low, high = Client.answered[method], Client.answered[method] + Client.unsure[method]
                assert low <= audited.get(method, 0) <= high, (method, audited.get(method), low, high)
            print(
                f"scale: audit rows {sum(audited.values())} for {sum(Client.answered.values())} answered calls"
                f" (+{sum(Client.unsure.values())} whose answer was lost or unavailable)"
            )
        finally:
            proxy.close()
            api2.stop()
