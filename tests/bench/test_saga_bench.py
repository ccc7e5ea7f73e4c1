"""Rotation saga benchmark: time to remediation, and sustained rotation throughput.

Run with ``make bench``. In ONE run:

A. Time to remediation. A real Redis ACL user (``lzb-<uuid8>``, created with a password, deleted at the end) is
   registered with the real CLI as a ``redis_acl`` secret (``--value-stdin``), with one webhook dependent (an
   HTTP server in this test that answers 200 only to a correctly HMAC-signed delivery) and one pull dependent (a
   task that GETs /api/v1/secrets/{id}/current with its lz_svc_ token every 50 ms, like a sidecar, as issue 17
   states its goal; then again with one polling every 20 ms, as earlier runs of this bench did). Before each
   rotation a random pause of up to one sidecar cycle, so that the sidecar's phase when the new version goes
   live is uniform, as for a leak found at any moment. N rotations in sequence: t0 just before the direct
   JSON-RPC ``rotate_secret`` call, t1 when ``verify_remediation`` first answers verified=true. Two agents, rotations
   alternating between them: one polls every 20 ms, one long-polls (``wait_seconds``). Two rows each: PostgreSQL
   (fresh database) + arq (a dedicated, flushed Redis DB) with one ``lockzero serve`` and one ``lockzero worker``
   subprocess; and the embedded default (SQLite, in-process worker, no Redis queue). A per-phase
   breakdown, read from the saga's own step events, shows where the time goes.
B. Sustained throughput. 200 ``generated`` secrets (registered in-process through
   engine.secrets.register_secret: 200 CLI processes would take minutes), no dependents; ``rotate_secret``
   is fired through the real API for all 200 (at most 32 calls in flight), run by two ``lockzero worker``
   processes on PostgreSQL + arq; the clock stops when rm_rotations shows all 200 finished. Baseline, same
   database, same run: the same number of bare event-store appends, in the shape one rotation writes them.

Beside each measurement the table shows the CPU each process group spent per rotation (from /proc) and
how busy the whole machine was meanwhile: on a shared 2-core box other processes move the numbers, and
this line says by how much.

The test prints a table and asserts correctness only (every rotation completed and verified, deliveries
signed, counts match), never a speed threshold. It stops every process it started (SIGTERM, then SIGKILL),
deletes its ACL users and flushes its Redis DB.

Environment: LOCKZERO_TEST_PG_DSN (admin DSN, see tests/conftest.py); LOCKZERO_BENCH_REDIS_ADMIN_URL
(default redis://127.0.0.1:6379/0, must be allowed ACL SETUSER/DELUSER); LOCKZERO_BENCH_REDIS_DB (the queue's
DB number, default 13, flushed); LOCKZERO_BENCH_PYSPY=<dir> records py-spy profiles of the serve and worker
processes per phase (collapsed stacks; needs `pip install py-spy`, see saga_support.PySpy).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets as secret_cmds
from lockzero.engine.domain import events as ev
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import NewEvent, open_store
from tests.api.support import Key, Server, start_server
from tests.bench.saga_support import (
    PHASES,
    CpuMeter,
    CpuUsage,
    PySpy,
    WebhookReceiver,
    WorkerProcess,
    load_saga_record,
    median,
    median_interval,
    parse_iso,
    percentile,
    phase_breakdown,
)
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.bench

# --- A: time to remediation -------------------------------------------------------------------------
ROTATIONS = 40  # timed, in sequence, per mode; the p50 is printed with its 95% interval
WARMUP_ROTATIONS = 2  # untimed, per mode, before the timed ones
VERIFY_POLL_S = 0.02  # the agent polls verify_remediation this often
#: The other agent long-polls instead: verify_remediation with wait_seconds, again until verified.
VERIFY_WAIT_S = 10.0
#: The pull dependent re-reads the secret this often: 50 ms as issue 17 states its goal, then 20 ms.
SIDECAR_POLLS_S = (0.05, 0.02)
ROTATION_TIMEOUT_S = 30.0
GOAL_P50_MS = 60.0  # issue 17 (issue 5 asked 250)
GOAL_P99_MS = 200.0  # issue 17 (issue 5 asked 1,000)
CLAIM_MS = 4200.0  # the product page's "time to remediation"

# --- B: sustained throughput --------------------------------------------------------------------------
THROUGHPUT_SECRETS = 200
FIRE_CONCURRENCY = 32  # rotate_secret calls in flight at once
#: Sustained throughput is measured with 1, then 2, then 3 `lockzero worker` processes, in one run.
THROUGHPUT_WORKERS = (1, 2, 3)
REGISTER_CONCURRENCY = 16
DB_POLL_S = 0.02
THROUGHPUT_TIMEOUT_S = 120.0
GOAL_ROTATIONS_PER_S = 200.0  # issue 17 (issue 14 asked 50)
#: Appends one rotation of a `generated` secret without dependents makes on its stream, and their event
#: counts: RotationRequested; create's intent; then each step's outcome with the next step's intent, validate and
#: verify (which change nothing) whole within them: completed create + SecretVersionCreated + started and
#: completed validate + started shift + SecretVersionActivated; completed shift + started retire; completed retire +
#: SecretVersionRetired + started and completed verify + RotationFinished.
APPEND_SHAPE = (1, 1, 6, 2, 5)
BASELINE_PAYLOAD = b'{"at":"2026-01-01T00:00:00.000000+00:00","tenant":"bench","secret_id":"bench/gen/000",' + (
    b'"rotation_id":"rot_0123456789abcdef","step":"create","compensating":false,"detail":"' + b"x" * 120 + b'"}'
)

REDIS_ADMIN_URL = os.environ.get("LOCKZERO_BENCH_REDIS_ADMIN_URL", "redis://127.0.0.1:6379/0")
QUEUE_DB = int(os.environ.get("LOCKZERO_BENCH_REDIS_DB", "13"))  # dedicated to this benchmark; flushed
QUEUE_URL = f"{REDIS_ADMIN_URL.rsplit('/', 1)[0]}/{QUEUE_DB}"
ARQ_HEALTH_KEY = "arq:queue:health-check"
WORKER_START_TIMEOUT_S = 30.0
CORES = os.cpu_count() or 1
OPERATOR = ev.EventMeta(actor_id="bench:saga", actor_type="operator")


# --------------------------------------------------------------------------------------------------
# Plumbing.


async def rpc(client: httpx.AsyncClient, key: Key, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A direct JSON-RPC call as the product page shows it; returns the tool's result."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    r = await client.post("/api/mcp", json=body, headers=key.auth)
    assert r.status_code == 200, (method, r.status_code, r.text)
    reply = r.json()
    assert "error" not in reply, (method, reply)
    result: dict[str, Any] = reply["result"]
    return result


async def start_worker(workdir: Path, server: Server, name: str, queue: aioredis.Redis) -> WorkerProcess:
    """Start `lockzero worker` and wait until it polls the queue (its first poll writes arq's health key)."""
    await queue.delete(ARQ_HEALTH_KEY)
    worker = WorkerProcess(name, workdir, dict(server.env))
    worker.start()
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while not await queue.exists(ARQ_HEALTH_KEY):
        if not worker.alive() or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"lockzero worker {name} did not start:\n{worker.logs()}")
        await asyncio.sleep(0.05)
    return worker


@asynccontextmanager
async def profiled(spy: PySpy, phase: str, pids: dict[str, list[int]]) -> AsyncIterator[None]:
    ours = {name: ps[0] for name, ps in pids.items() if not name.startswith(("bench client", "redis-server"))}
    procs = spy.start(phase, ours)
    if procs:
        await asyncio.sleep(0.5)  # let py-spy attach before the phase starts
    try:
        yield
    finally:
        spy.stop(procs)


async def password_works(username: str, password: str) -> bool:
    base = aioredis.Redis.from_url(REDIS_ADMIN_URL)
    kw = base.connection_pool.connection_kwargs
    await base.aclose()
    client = aioredis.Redis(
        host=kw.get("host", "127.0.0.1"),
        port=kw.get("port", 6379),
        username=username,
        password=password,
        socket_timeout=5,
    )
    try:
        return bool(await client.ping())
    except (AuthenticationError, ResponseError):
        return False
    finally:
        await client.aclose()


class Sidecar:
    """A pull dependent: GET …/current every ``poll_s`` with its lz_svc_ token, as a sidecar would."""

    def __init__(self, client: httpx.AsyncClient, secret_id: str, token: str, poll_s: float) -> None:
        self.client = client
        self.poll_s = poll_s
        self.path = f"/api/v1/secrets/{secret_id}/current"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.version: str | None = None
        self.value: str | None = None
        self.reads = 0
        #: How long each GET took (ms): the sidecar's cycle is poll_s plus this.
        self.get_ms: list[float] = []
        self.errors: list[str] = []
        self.first = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                called = time.perf_counter()
                r = await self.client.get(self.path, headers=self.headers)
                self.get_ms.append((time.perf_counter() - called) * 1000)
                if r.status_code == 200:
                    body = r.json()
                    self.version, self.value = body["version"], body["value"]
                    self.first.set()
                else:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                self.errors.append(type(exc).__name__)
            self.reads += 1
            await asyncio.sleep(self.poll_s)


# --------------------------------------------------------------------------------------------------
# A: time to remediation.


@dataclass
class LatencyResult:
    label: str
    sidecar_poll_s: float
    ms: list[float]
    phases: list[dict[str, float]]
    polls: list[int]
    #: How long each verify_remediation call took (ms), every call of every rotation.
    verify_call_ms: list[float]
    #: The long-polling agent's rotations (interleaved with the polled ones): t1 - t0, phases, calls.
    waited_ms: list[float]
    waited_phases: list[dict[str, float]]
    waited_calls: list[int]
    sidecar_reads: int
    sidecar_get_ms: list[float]
    webhook_ok: int
    cpu: CpuUsage


async def time_to_remediation(
    label: str,
    server: Server,
    store_url: str,
    admin: aioredis.Redis,
    users: list[str],
    spy: PySpy,
    pids: dict[str, list[int]],
    sidecar_poll_s: float,
) -> LatencyResult:
    username = f"lzb-{uuid.uuid4().hex[:8]}"
    leaked = secrets.token_urlsafe(24)
    await admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", username, "on", f">{leaked}", "resetkeys", "resetchannels", "-@all", "+ping"
    )
    users.append(username)
    assert await password_works(username, leaked)

    tenant = server.tenant("bench-ttr")
    key = server.key(tenant)
    secret_id = "prod/redis/cache"
    config = json.dumps({"url": REDIS_ADMIN_URL, "username": username})
    added = server.secret(tenant, secret_id, provider="redis_acl", config=config, value=leaked.encode())
    assert added["current_version"] == "v1", added
    receiver = WebhookReceiver()
    receiver.start()
    try:
        hook = server.dependent(tenant, secret_id, "session-worker", f"webhook:{receiver.url}")
        receiver.signing_secret = hook["signing_secret"]
        pull = server.dependent(tenant, secret_id, "checkout-api", "pull")
        assert str(pull["token"]).startswith("lz_svc_"), pull

        samples: list[tuple[str, float, float, float, list[float]]] = []  # rotation_id, t0/t1 wall, ms, call ms
        waited: list[tuple[str, float, float, float, list[float]]] = []  # the same, of the long-polling agent
        async with (
            httpx.AsyncClient(base_url=server.base, timeout=30) as agent,
            httpx.AsyncClient(base_url=server.base, timeout=30) as side,
        ):
            sidecar = Sidecar(side, secret_id, pull["token"], sidecar_poll_s)
            task = asyncio.create_task(sidecar.run())
            try:
                await asyncio.wait_for(sidecar.first.wait(), timeout=10)
                for i in range(WARMUP_ROTATIONS):
                    await one_rotation(agent, key, secret_id, f"warm-up {i}")
                    await one_rotation(agent, key, secret_id, f"warm-up {i} (long poll)", wait_s=VERIFY_WAIT_S)
                meter = CpuMeter(pids, store_url if store_url.startswith("postgresql") else None)
                phase = random.Random(f"{label} {sidecar_poll_s}")  # the same pauses in every run
                async with profiled(spy, f"ttr-{label}-{sidecar_poll_s * 1000:.0f}ms", pids):
                    await meter.start()
                    for i in range(ROTATIONS):
                        # Rotations back to back would lock onto the sidecar's cycle (each one starts a fixed time
                        # after the last adoption), so every one would wait the same part of it; a random pause of
                        # up to one cycle makes the sidecar's phase at activation uniform, as for a real leak.
                        await asyncio.sleep(phase.uniform(0, sidecar_poll_s))
                        samples.append(await one_rotation(agent, key, secret_id, f"bench {i}"))
                        await asyncio.sleep(phase.uniform(0, sidecar_poll_s))
                        waited.append(
                            await one_rotation(agent, key, secret_id, f"bench {i} (long poll)", wait_s=VERIFY_WAIT_S)
                        )
                    cpu = await meter.stop()
                await asyncio.sleep(3 * sidecar_poll_s)
            finally:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
    finally:
        receiver.stop()

    # ---- correctness -------------------------------------------------------------------------------
    total = 2 * (WARMUP_ROTATIONS + ROTATIONS)
    final = f"v{1 + total}"
    record = await load_saga_record(store_url, tenant, secret_id)
    rotations = record.rotations
    assert len(rotations) == total
    assert all(r.outcome == "completed" for r in rotations.values()), [r.outcome for r in rotations.values()]
    assert receiver.bad == 0, f"{receiver.bad} webhook deliveries with a bad signature"
    assert receiver.ok == total, (receiver.ok, total)
    assert receiver.versions == [f"v{n}" for n in range(2, total + 2)], receiver.versions
    assert not sidecar.errors, sidecar.errors[:5]
    assert sidecar.version == final and sidecar.value is not None, (sidecar.version, final)
    assert await password_works(username, sidecar.value), "the current password does not authenticate"
    assert not await password_works(username, leaked), "the leaked password still works"

    phases = [phase_breakdown(record, rid, t0, t1) for rid, t0, t1, _, _ in samples]
    return LatencyResult(
        label,
        sidecar_poll_s,
        [s[3] for s in samples],
        phases,
        [len(s[4]) for s in samples],
        [ms for s in samples for ms in s[4]],
        [s[3] for s in waited],
        [phase_breakdown(record, rid, t0, t1) for rid, t0, t1, _, _ in waited],
        [len(s[4]) for s in waited],
        sidecar.reads,
        sidecar.get_ms,
        receiver.ok,
        cpu,
    )


async def one_rotation(
    agent: httpx.AsyncClient, key: Key, secret_id: str, reason: str, wait_s: float = 0.0
) -> tuple[str, float, float, float, list[float]]:
    """One rotation, its agent polling verify_remediation every VERIFY_POLL_S, or long-polling it (wait_s)."""
    t0_wall, t0 = time.time(), time.perf_counter()
    started = await rpc(agent, key, "rotate_secret", {"secret_id": secret_id, "reason": reason})
    assert started["status"] == "in_progress", started
    rotation_id = started["rotation_id"]
    calls: list[float] = []
    params: dict[str, Any] = {"secret_id": secret_id, "rotation_id": rotation_id}
    if wait_s:
        params["wait_seconds"] = wait_s
    while True:
        called = time.perf_counter()
        verdict = await rpc(agent, key, "verify_remediation", params)
        calls.append((time.perf_counter() - called) * 1000)
        if verdict["verified"]:
            t1, t1_wall = time.perf_counter(), time.time()
            break
        assert verdict["status"] in ("in_progress", "completed"), verdict
        assert time.perf_counter() - t0 < ROTATION_TIMEOUT_S, f"not verified after {ROTATION_TIMEOUT_S}s: {verdict}"
        if not wait_s:
            await asyncio.sleep(VERIFY_POLL_S)
    checks = verdict["checks"]
    assert checks["new_credential_valid"] == "passed" and checks["old_credential_rejected"] == "passed", verdict
    assert checks["dependents_adopted"] == {"adopted": 2, "total": 2, "pending": []}, verdict
    return rotation_id, t0_wall, t1_wall, (t1 - t0) * 1000, calls


# --------------------------------------------------------------------------------------------------
# B: sustained throughput, and the bare-append baseline.


@dataclass
class ThroughputResult:
    wall_s: float
    fire_s: float
    cpu: CpuUsage
    latencies_ms: list[float] = field(default_factory=list)
    events_per_rotation: int = 0


async def secret_stream_counts(conn: psycopg.AsyncConnection[Any], tenant: str) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT stream, count(*) FROM lz_events WHERE stream LIKE %s GROUP BY stream", (f"secret-{tenant}/%",)
    )
    return {str(s): int(n) for s, n in await cur.fetchall()}


async def sustained_throughput(server: Server, pg_url: str, spy: PySpy, pids: dict[str, list[int]]) -> ThroughputResult:
    tenant = server.tenant("bench-tput")
    key = server.key(tenant)
    ids = [f"bench/gen/{i:03d}" for i in range(THROUGHPUT_SECRETS)]
    engine = await Engine.open(pg_url, MasterKey.from_base64(server.env["LOCKZERO_MASTER_KEY"]))
    try:
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def register(secret_id: str) -> None:
            async with gate:
                s = await secret_cmds.register_secret(
                    engine, tenant, OPERATOR, secret_id=secret_id, provider="generated", environment="prod"
                )
                assert s.current_version == "v1", s

        await asyncio.gather(*(register(s) for s in ids))
    finally:
        await engine.close()

    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        before = await secret_stream_counts(conn, tenant)
        assert len(before) == THROUGHPUT_SECRETS
        limits = httpx.Limits(max_connections=FIRE_CONCURRENCY, max_keepalive_connections=FIRE_CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
            gate = asyncio.Semaphore(FIRE_CONCURRENCY)

            async def fire(secret_id: str) -> str:
                async with gate:
                    r = await rpc(client, key, "rotate_secret", {"secret_id": secret_id, "reason": "throughput bench"})
                    assert r["status"] == "in_progress" and r["to_version"] == "v2", r
                    return str(r["rotation_id"])

            meter = CpuMeter(pids, pg_url)
            async with profiled(spy, "throughput", pids):
                await meter.start()
                t0 = time.perf_counter()
                rotation_ids = await asyncio.gather(*(fire(s) for s in ids))
                fired = time.perf_counter()
                while True:
                    cur = await conn.execute(
                        "SELECT count(*) FROM rm_rotations WHERE tenant = %s AND finished_at IS NOT NULL", (tenant,)
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    if int(row[0]) >= THROUGHPUT_SECRETS:
                        break
                    assert time.perf_counter() - t0 < THROUGHPUT_TIMEOUT_S, f"only {row[0]} rotations finished"
                    await asyncio.sleep(DB_POLL_S)
                t1 = time.perf_counter()
                cpu = await meter.stop()

            # ---- correctness -------------------------------------------------------------------------
            cur = await conn.execute(
                "SELECT rotation_id, secret_id, status, requested_at, finished_at FROM rm_rotations WHERE tenant = %s",
                (tenant,),
            )
            rows = await cur.fetchall()
            assert len(rows) == THROUGHPUT_SECRETS
            assert {r[0] for r in rows} == set(rotation_ids)
            assert {r[1] for r in rows} == set(ids)
            assert all(r[2] == "completed" for r in rows), sorted({r[2] for r in rows})

            async def verified(secret_id: str, rotation_id: str) -> None:
                async with gate:
                    v = await rpc(
                        client, key, "verify_remediation", {"secret_id": secret_id, "rotation_id": rotation_id}
                    )
                    assert v["verified"] is True and v["status"] == "completed", v

            await asyncio.gather(*(verified(s, r) for s, r in zip(ids, rotation_ids, strict=True)))
        after = await secret_stream_counts(conn, tenant)
    deltas = {after[s] - before[s] for s in before}
    assert len(deltas) == 1, f"rotations wrote different event counts: {sorted(deltas)}"
    return ThroughputResult(
        wall_s=t1 - t0,
        fire_s=fired - t0,
        cpu=cpu,
        latencies_ms=[(parse_iso(r[4]) - parse_iso(r[3])) * 1000 for r in rows],
        events_per_rotation=deltas.pop(),
    )


@dataclass
class BaselineResult:
    appends: int
    events: int
    wall_s: float


async def bare_appends(pg_url: str) -> BaselineResult:
    """THROUGHPUT_SECRETS streams, all at once, each appending APPEND_SHAPE in order with expected_version:
    the store's own limit for what the saga writes, with no reads, no projections and no provider calls."""
    store = await open_store(pg_url)  # the default pool, as serve and the workers open it
    run = uuid.uuid4().hex[:8]

    async def one_stream(stream: str) -> int:
        version = 0
        for n in APPEND_SHAPE:
            batch = [NewEvent(type="BenchSagaEvent", data=BASELINE_PAYLOAD) for _ in range(n)]
            version = (await store.append(stream, batch, expected_version=version)).stream_version
        return version

    try:
        await asyncio.gather(*(one_stream(f"bench-warm-{run}-{i}") for i in range(16)))
        streams = [f"bench-bare-{run}-{i:03d}" for i in range(THROUGHPUT_SECRETS)]
        t0 = time.perf_counter()
        versions = await asyncio.gather(*(one_stream(s) for s in streams))
        wall = time.perf_counter() - t0
        assert versions == [sum(APPEND_SHAPE)] * THROUGHPUT_SECRETS
        for s in streams[:: THROUGHPUT_SECRETS // 10]:
            assert len(await store.read_stream(s)) == sum(APPEND_SHAPE)
    finally:
        await store.close()
    return BaselineResult(len(APPEND_SHAPE) * THROUGHPUT_SECRETS, sum(APPEND_SHAPE) * THROUGHPUT_SECRETS, wall)


# --------------------------------------------------------------------------------------------------


async def test_saga_bench(tmp_path: Path) -> None:
    admin = aioredis.Redis.from_url(REDIS_ADMIN_URL)
    queue = aioredis.Redis.from_url(QUEUE_URL)
    spy = PySpy()
    users: list[str] = []
    t_start = time.perf_counter()
    try:
        await queue.flushdb()
        redis_pid = int((await admin.info("server"))["process_id"])
        common = {"bench client (pytest)": [os.getpid()], "redis-server (shared)": [redis_pid]}
        with fresh_pg_database() as pg_url:
            workdir = tmp_path / "postgresql"
            workdir.mkdir()
            server = start_server("postgresql", workdir, pg_url, LOCKZERO_REDIS_URL=QUEUE_URL)
            workers: list[WorkerProcess] = []
            try:
                assert server.proc is not None
                workers.append(await start_worker(workdir, server, "worker-1", queue))
                pids = {"serve": [server.proc.pid], "worker": [workers[0].pid], **common}
                arq = [
                    await time_to_remediation("arq", server, pg_url, admin, users, spy, pids, poll)
                    for poll in SIDECAR_POLLS_S
                ]
                tput: dict[int, ThroughputResult] = {}
                for n in THROUGHPUT_WORKERS:
                    while len(workers) < n:
                        workers.append(await start_worker(workdir, server, f"worker-{len(workers) + 1}", queue))
                    pids = {"serve": [server.proc.pid], **{f"worker-{i + 1}": [w.pid] for i, w in enumerate(workers)}}
                    tput[n] = await sustained_throughput(server, pg_url, spy, {**pids, **common})
                    assert all(w.alive() for w in workers), "\n".join(w.logs() for w in workers)
                baseline = await bare_appends(pg_url)
            finally:
                for w in workers:
                    w.stop()
                server.stop()

        workdir = tmp_path / "embedded"
        workdir.mkdir()
        server = start_server("sqlite", workdir, f"sqlite:///{workdir / 'lockzero.db'}")
        try:
            assert server.proc is not None
            pids = {"serve (+ in-process worker)": [server.proc.pid], **common}
            embedded = [
                await time_to_remediation("embedded", server, server.database_url, admin, users, spy, pids, poll)
                for poll in SIDECAR_POLLS_S
            ]
        finally:
            server.stop()
    finally:
        for user in users:
            await admin.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]
        await queue.flushdb()
        await queue.aclose()
        await admin.aclose()
    report(arq, embedded, tput, baseline, time.perf_counter() - t_start, spy)


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def cpu_lines(label: str, cpu: CpuUsage, rotations: int) -> list[str]:
    """CPU ms per rotation by process group, and how busy the whole machine was meanwhile."""
    parts = ", ".join(f"{name} {sec * 1000 / rotations:.1f}" for name, sec in cpu.by_group.items())
    return [
        f"   CPU ms per rotation ({label}): {parts}",
        f"      = {cpu.ours_s * 1000 / rotations:.1f} ms ours; machine busy {cpu.machine_busy_s / cpu.wall_s:.2f} of"
        f" {CORES} cores over {cpu.wall_s:.1f}s, of which {cpu.others_s / cpu.wall_s:.2f} cores other processes/kernel",
    ]


def vs_claim(p50_ms: float) -> str:
    return f"{CLAIM_MS / p50_ms:.1f}x faster" if p50_ms <= CLAIM_MS else f"{p50_ms / CLAIM_MS:.1f}x slower"


def report(
    arqs: list[LatencyResult],
    embeddeds: list[LatencyResult],
    by_workers: dict[int, ThroughputResult],
    baseline: BaselineResult,
    runtime_s: float,
    spy: PySpy,
) -> None:
    hr = "-" * 118
    # The phase breakdown is of the first sidecar interval's runs: the one issue 17 states its goal with.
    arq, embedded = arqs[0], embeddeds[0]
    every = arqs + embeddeds
    lines = [
        "",
        hr,
        "Lockzero rotation saga benchmark (one run)",
        hr,
        f"A. time to remediation: t0 = just before the rotate_secret JSON-RPC call, t1 = first verify_remediation"
        f" with verified=true; rotations alternate between an agent polling every {VERIFY_POLL_S * 1000:.0f} ms"
        f" and one long-polling (wait_seconds={VERIFY_WAIT_S:.0f})",
        "   redis_acl secret (real ACL user), 1 signed-webhook + 1 pull dependent (a sidecar GETs /current every"
        f" {' or '.join(f'{p * 1000:.0f}' for p in SIDECAR_POLLS_S)} ms, a fresh secret for each);",
        f"   {ROTATIONS} rotations in sequence after {WARMUP_ROTATIONS} warm-up; p99 = nearest rank (the slowest of"
        f" {ROTATIONS}); p50 95% = where the true median lies with 95% confidence (order statistics, no"
        " assumption about the distribution): the sidecar's phase alone moves single rotations by up to 50 ms",
        hr,
        f"{'mode, sidecar interval, agent':<52} | {'p50 ms':>7} | {'p50 95%':>8} | {'p99 ms':>7} | {'min ms':>7}"
        f" | {'max ms':>7} | {f'goal p50<={GOAL_P50_MS:.0f}, p99<={GOAL_P99_MS:.0f}':>24} | {'vs claim 4,200 ms':>17}",
        hr,
    ]
    rows = []
    for a, e in zip(arqs, embeddeds, strict=True):
        for r, name in ((a, "PostgreSQL + arq"), (e, "embedded (SQLite)")):
            interval = f"{r.sidecar_poll_s * 1000:.0f} ms"
            rows += [(r.ms, f"{name}, {interval}, agent polls"), (r.waited_ms, f"{name}, {interval}, agent long-polls")]
    for ms, name in rows:
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        low, high = median_interval(ms)
        goal = f"p50 {_met(p50 <= GOAL_P50_MS)}, p99 {_met(p99 <= GOAL_P99_MS)}"
        lines.append(
            f"{name:<52} | {p50:>7.0f} | {f'{low:.0f}-{high:.0f}':>8} | {p99:>7.0f} | {min(ms):>7.0f}"
            f" | {max(ms):>7.0f} | {goal:>24} | {vs_claim(p50):>17}"
        )
    lines += [
        hr,
        "   where the time goes (sidecar every"
        f" {arq.sidecar_poll_s * 1000:.0f} ms, agent polling; so are the lines below unless they say otherwise):"
        " ms per phase, from the timestamps of the saga's own step and adoption events;",
        "   the top-level phases add up to t1-t0 of each rotation (so their means add up to the mean t1-t0);"
        " '.' rows break down the row above",
        f"   {'':<70} {'arq':>17} {'embedded':>14}",
        f"   {'':<70} {'p50':>10}{'mean':>7} {'p50':>7}{'mean':>7}",
    ]
    for key, text in PHASES:
        a, e = [p[key] for p in arq.phases], [p[key] for p in embedded.phases]
        lines.append(
            f"   {text:<70} {median(a):>11.1f}{sum(a) / len(a):>7.1f} {median(e):>7.1f}{sum(e) / len(e):>7.1f}"
        )
    third = ROTATIONS // 3
    lines += [
        f"   {'= t1-t0':<70} {median(arq.ms):>11.1f}{sum(arq.ms) / ROTATIONS:>7.1f}"
        f" {median(embedded.ms):>7.1f}{sum(embedded.ms) / ROTATIONS:>7.1f}",
        f"   {'verify_remediation calls per rotation (median)':<70} {median(arq.polls):>11.0f}"
        f" {median(embedded.polls):>14.0f}",
        f"   {'long-polling agent: RotationFinished -> verified (the observe phase)':<70}"
        f" {median([p['observe'] for p in arq.waited_phases]):>11.1f}"
        f" {median([p['observe'] for p in embedded.waited_phases]):>14.1f}",
        f"   {'long-polling agent: t1-t0, and verify_remediation calls per rotation (medians)':<70}"
        f" {f'{median(arq.waited_ms):.1f}, {median(arq.waited_calls):.0f}':>14}"
        f" {f'{median(embedded.waited_ms):.1f}, {median(embedded.waited_calls):.0f}':>14}",
        f"   {'one verify_remediation call, ms (median)':<70} {median(arq.verify_call_ms):>11.1f}"
        f" {median(embedded.verify_call_ms):>14.1f}",
        *(
            f"   {f'one sidecar GET of /current, ms (median; sidecar every {a.sidecar_poll_s * 1000:.0f} ms)':<70}"
            f" {median(a.sidecar_get_ms):>11.1f} {median(e.sidecar_get_ms):>14.1f}"
            for a, e in zip(arqs, embeddeds, strict=True)
        ),
        f"   {f'trend: median ms, rotations 1-{third} -> {ROTATIONS - third + 1}-{ROTATIONS} (stream grows)':<70}"
        f" {f'{median(arq.ms[:third]):.0f} -> {median(arq.ms[-third:]):.0f}':>14}"
        f" {f'{median(embedded.ms[:third]):.0f} -> {median(embedded.ms[-third:]):.0f}':>14}",
        # Over the whole timed loop: the sidecar's reads in the pauses between rotations count too.
        *cpu_lines(f"arq, sidecar every {arq.sidecar_poll_s * 1000:.0f} ms, pauses included", arq.cpu, ROTATIONS),
        *cpu_lines(
            f"embedded, sidecar every {embedded.sidecar_poll_s * 1000:.0f} ms, pauses included", embedded.cpu, ROTATIONS
        ),
        f"   correctness: every rotation completed and verified; {sum(r.webhook_ok for r in every)} signed"
        f" webhook deliveries adopted, 0 bad signatures; sidecar reads {sum(r.sidecar_reads for r in every)},"
        " 0 errors; leaked password refused",
        hr,
    ]
    tput = by_workers[max(by_workers)]
    rate = THROUGHPUT_SECRETS / tput.wall_s
    per_rotation_ms = tput.cpu.ours_s * 1000 / THROUGHPUT_SECRETS
    bare_rate = THROUGHPUT_SECRETS / baseline.wall_s
    one = THROUGHPUT_SECRETS / by_workers[min(by_workers)].wall_s
    lines += [
        f"B. sustained throughput: {THROUGHPUT_SECRETS} `generated` secrets, no dependents; rotate_secret fired"
        f" through the API ({FIRE_CONCURRENCY} in flight), with {', '.join(map(str, by_workers))} `lockzero worker`"
        " processes in turn, PostgreSQL + arq",
        hr,
        f"{'':<44} | {'wall s':>7} | {'rotations/s':>11} | {'appends/s':>9} | {'events/s':>8}"
        f" | goal >= {GOAL_ROTATIONS_PER_S:.0f} rotations/s",
        hr,
    ]
    for n, result in by_workers.items():
        per_s = THROUGHPUT_SECRETS / result.wall_s
        label = f"saga (API -> arq -> {n} worker{'s' if n > 1 else ''} -> completed)"
        lines.append(
            f"{label:<44} | {result.wall_s:>7.2f} |"
            f" {per_s:>11.1f} | {per_s * len(APPEND_SHAPE):>9,.0f} | {per_s * result.events_per_rotation:>8,.0f} |"
            f" {_met(per_s >= GOAL_ROTATIONS_PER_S)}; x{per_s / one:.2f} of 1 worker"
        )
    lines += [
        f"{'baseline: bare event-store appends':<44} | {baseline.wall_s:>7.2f} | {bare_rate:>11.1f} |"
        f" {baseline.appends / baseline.wall_s:>9,.0f} | {baseline.events / baseline.wall_s:>8,.0f} |"
        f" saga ({max(by_workers)} workers) = {rate / bare_rate:.1%} of it",
        hr,
        f"   baseline: {THROUGHPUT_SECRETS} streams x {len(APPEND_SHAPE)} appends ({sum(APPEND_SHAPE)} events, the"
        f" shape of one rotation), all streams at once, one process, default pool; same database, same run",
        f"   saga ({max(by_workers)} workers): {tput.events_per_rotation} events per rotation on each secret stream"
        f" (+1 audit record per call); {THROUGHPUT_SECRETS} rotate_secret calls answered in {tput.fire_s:.2f}s"
        f" ({THROUGHPUT_SECRETS / tput.fire_s:.0f}/s)",
        f"   per-rotation latency under this load (RotationRequested -> RotationFinished): p50"
        f" {percentile(tput.latencies_ms, 50):,.0f} ms, p99 {percentile(tput.latencies_ms, 99):,.0f} ms",
        *[
            line
            for n, res in by_workers.items()
            for line in cpu_lines(f"saga, {n} workers", res.cpu, THROUGHPUT_SECRETS)
        ],
        f"   CPU-bound ceiling on this {CORES}-core machine: {CORES * 1000:,} ms/s / {per_rotation_ms:.1f} ms of"
        f" our CPU per rotation = {CORES * 1000 / per_rotation_ms:.0f} rotations/s if nothing else ran",
        f"   correctness: {THROUGHPUT_SECRETS}/{THROUGHPUT_SECRETS} completed and verify_remediation verified=true"
        " in every run; rotation ids match; every secret stream grew by the same event count",
        hr,
        f"runtime {runtime_s:.0f}s" + (f"; py-spy profiles in {spy.dir}" if spy.enabled else ""),
        hr,
    ]
    print("\n".join(lines))
