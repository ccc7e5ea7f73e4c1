"""Helpers for tests/bench/test_saga_bench.py: a signed-webhook receiver, `lockzero worker` subprocesses,
nearest-rank percentiles, a per-phase breakdown read from the saga's own events, optional py-spy profiles."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Rotation, fold_secret
from lockzero.eventstore import open_store

SIGNATURE_HEADER = "X-Lockzero-Signature"
STOP_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------------------------------
# A webhook dependent: a real HTTP server that adopts only correctly signed deliveries.


class WebhookReceiver:
    """HTTP server in its own thread. POST → 200 when ``X-Lockzero-Signature`` is ``sha256=<hex HMAC-SHA256 of the
    raw body>`` under the signing secret `lockzero dependent add` printed, else 401 (so Lockzero sees it not adopted).
    """

    def __init__(self) -> None:
        self.signing_secret: str | None = None
        self.ok = 0
        self.bad = 0
        self.versions: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                good = receiver._check(self.headers.get(SIGNATURE_HEADER, ""), body)
                reply = b'{"adopted":true}' if good else b'{"error":"bad signature"}'
                self.send_response(200 if good else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _check(self, given: str, body: bytes) -> bool:
        secret = self.signing_secret
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() if secret else ""
        good = bool(secret) and hmac.compare_digest(given, expected)
        with self._lock:
            if good:
                self.ok += 1
                self.versions.append(str(json.loads(body).get("version")))
            else:
                self.bad += 1
        return good

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# Subprocesses.


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, wait, then SIGKILL: only the process we started, by its own handle."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class WorkerProcess:
    """A `lockzero worker` subprocess with the serve process's environment (same store, key and queue)."""

    name: str
    workdir: Path
    env: dict[str, str] = field(repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with (
            (self.workdir / f"{self.name}.stdout").open("wb") as out,
            (self.workdir / f"{self.name}.stderr").open("wb") as err,
        ):
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lockzero.api.cli.main", "worker"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        parts = []
        for suffix in ("stdout", "stderr"):
            path = self.workdir / f"{self.name}.{suffix}"
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        stop_process(self.proc)


# --------------------------------------------------------------------------------------------------
# Statistics.


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the samples at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the k-th smallest and k-th largest sample, k as
    large as keeps the chance that the true median lies between them at ``confidence`` or more (the number of
    samples below the median is Binomial(n, 1/2)). With too few samples for that, the whole range."""
    ordered = sorted(values)
    n = len(ordered)
    best = 1
    for k in range(1, n // 2 + 1):
        if sum(math.comb(n, i) for i in range(k, n - k + 1)) / 2**n >= confidence:
            best = k
    return ordered[best - 1], ordered[n - best]


# --------------------------------------------------------------------------------------------------
# Where one rotation's time went, from the events the saga recorded (engine clock = wall clock).

STEPS: tuple[ev.SagaStep, ...] = ("create", "validate", "shift", "retire", "verify")

#: (key, label). Rows whose label starts with "  ." break the row above down; they are not added to the total.
PHASES: tuple[tuple[str, str], ...] = (
    ("api", "rotate_secret call -> RotationRequested appended"),
    ("queue", "RotationRequested -> create step starts (enqueue, worker pickup, fold)"),
    ("create", "create   (intent+pending value append, provider add password)"),
    ("validate", "validate (new password authenticates at Redis)"),
    ("shift", "shift    (activate append, webhook POST, wait for adoption)"),
    ("shift_webhook", "  . shift start -> webhook dependent adopted (its 200 recorded)"),
    ("shift_pull", "  . shift start -> pull dependent adopted (sidecar GET recorded)"),
    ("shift_tail", "  . last adoption -> saga notices (woken by the append)"),
    ("retire", "retire   (remove old password)"),
    ("verify", "verify   (new works, old refused)"),
    ("between", "between steps: next intent made; the append is in the next step (x4)"),
    ("finish", "last step -> RotationFinished appended"),
    ("observe", "RotationFinished -> verify_remediation says verified"),
)


@dataclass(frozen=True)
class SagaRecord:
    """What the saga recorded for one secret: its rotations, and when each dependent adopted each version."""

    rotations: dict[str, Rotation]
    adopted_at: dict[tuple[int, str], float]  # (version, via) -> wall-clock seconds


def phase_breakdown(record: SagaRecord, rotation_id: str, t0_wall: float, t1_wall: float) -> dict[str, float]:
    """Milliseconds per phase of PHASES; the top-level ones add up to t1 - t0."""
    rotation = record.rotations[rotation_id]
    steps = [rotation.last(s) for s in STEPS]
    assert all(s is not None and s.finished_at is not None for s in steps), rotation
    assert rotation.finished_at is not None and rotation.to_version is not None
    started = [s.started_at.timestamp() for s in steps if s is not None]
    finished = [s.finished_at.timestamp() for s in steps if s is not None and s.finished_at is not None]
    shift_start, shift_end = started[STEPS.index("shift")], finished[STEPS.index("shift")]
    webhook = record.adopted_at[rotation.to_version, "webhook"]
    pull = record.adopted_at[rotation.to_version, "pull"]
    out = {
        "api": rotation.requested_at.timestamp() - t0_wall,
        "queue": started[0] - rotation.requested_at.timestamp(),
        "between": sum(started[i] - finished[i - 1] for i in range(1, len(STEPS))),
        "finish": rotation.finished_at.timestamp() - finished[-1],
        "observe": t1_wall - rotation.finished_at.timestamp(),
        "shift_webhook": webhook - shift_start,
        "shift_pull": pull - shift_start,
        "shift_tail": shift_end - max(webhook, pull),
    }
    for name, s, f in zip(STEPS, started, finished, strict=True):
        out[name] = f - s
    return {k: v * 1000 for k, v in out.items()}


async def load_saga_record(store_url: str, tenant: str, secret_id: str) -> SagaRecord:
    """Read straight from the event store: the secret's stream and its adoption stream."""
    store = await open_store(store_url, pool_size=1)
    try:
        recorded = await store.read_stream(naming.secret_stream(tenant, secret_id))
        adoptions = await store.read_stream(naming.adoption_stream(tenant, secret_id))
    finally:
        await store.close()
    secret = fold_secret([ev.decode(r.data) for r in recorded], [ev.decode_meta(r.metadata) for r in recorded])
    assert secret is not None
    adopted_at: dict[tuple[int, str], float] = {}
    for r in adoptions:
        e = ev.decode(r.data)
        if isinstance(e, ev.DependentAdopted):
            adopted_at.setdefault((e.version, e.via), e.at.timestamp())
    return SagaRecord({r.rotation_id: r for r in secret.rotations}, adopted_at)


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --------------------------------------------------------------------------------------------------
# CPU accounting from /proc: who spent the CPU during a phase (the machine has 2 cores, and may be shared).

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rpartition(")")[2].split()  # fields[0] is stat field 3 (state); utime, stime are 14, 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle (nor waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


@dataclass
class CpuUsage:
    wall_s: float
    by_group: dict[str, float]  # CPU seconds per group of processes
    machine_busy_s: float

    @property
    def ours_s(self) -> float:
        return sum(v for k, v in self.by_group.items() if not k.endswith("(shared)"))

    @property
    def others_s(self) -> float:
        """Everything else the machine did meanwhile (other processes, kernel, shared servers)."""
        return max(0.0, self.machine_busy_s - sum(self.by_group.values()))


class CpuMeter:
    """CPU seconds spent during a phase by named groups of pids, by the PostgreSQL backends serving one
    database, and by the whole machine."""

    def __init__(self, groups: dict[str, list[int]], pg_url: str | None = None) -> None:
        self.groups = groups
        self.pg_url = pg_url
        self._before: dict[int, float] = {}
        self._pg_before: set[int] = set()
        self._t0 = 0.0
        self._busy0 = 0.0

    async def _pg_pids(self) -> set[int]:
        if self.pg_url is None:
            return set()
        async with await psycopg.AsyncConnection.connect(self.pg_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return {int(r[0]) for r in await cur.fetchall()}

    async def start(self) -> None:
        self._pg_before = await self._pg_pids()
        pids = {p for ps in self.groups.values() for p in ps} | self._pg_before
        self._before = {p: process_cpu_s(p) for p in pids}
        self._t0, self._busy0 = time.perf_counter(), machine_busy_s()

    async def stop(self) -> CpuUsage:
        wall, busy = time.perf_counter() - self._t0, machine_busy_s() - self._busy0
        by_group = {name: sum(self._spent(p) for p in pids) for name, pids in self.groups.items()}
        if self.pg_url is not None:
            # Backends that closed meanwhile are lost; pools keep theirs open, so that is the odd short one.
            by_group["postgres backends (this DB)"] = sum(
                self._spent(p) for p in self._pg_before | await self._pg_pids()
            )
        return CpuUsage(wall, by_group, busy)

    def _spent(self, pid: int) -> float:
        now = process_cpu_s(pid)
        return max(0.0, now - self._before.get(pid, 0.0)) if now else 0.0


# --------------------------------------------------------------------------------------------------
# Optional sampling profiles: LOCKZERO_BENCH_PYSPY=<dir> and py-spy installed (PyPI `py-spy`).


class PySpy:
    """Records each named process for the length of one phase as collapsed stacks (<dir>/<phase>-<name>.txt),
    one line per stack with its sample count, ready for flamegraph.pl or speedscope."""

    def __init__(self) -> None:
        self.dir = Path(os.environ["LOCKZERO_BENCH_PYSPY"]) if os.environ.get("LOCKZERO_BENCH_PYSPY") else None
        local = Path(sys.executable).with_name("py-spy")
        self.exe = str(local) if local.exists() else shutil.which("py-spy")
        self.idle = os.environ.get("LOCKZERO_BENCH_PYSPY_IDLE") == "1"

    @property
    def enabled(self) -> bool:
        return self.dir is not None and self.exe is not None

    def start(self, phase: str, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
        if not self.enabled:
            return []
        assert self.dir is not None and self.exe is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        procs = []
        for name, pid in pids.items():
            args = [self.exe, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking"]
            args += ["-o", str(self.dir / re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{phase}-{name}.txt"))]
            if self.idle:
                args.append("--idle")
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs

    @staticmethod
    def stop(procs: list[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                stop_process(p)
