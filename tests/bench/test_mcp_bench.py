"""MCP endpoint benchmark: the real Lockzero server against a bare Litestar endpoint, same load.

Run with ``make bench``. In ONE fresh PostgreSQL database: the CLI sets up a tenant, a read-write key
and SECRETS secrets; ``lockzero serve`` (rate limit off) and the bare app (tests/bench/bare_app.py,
which answers every POST with the exact bytes Lockzero returned for one get_secret_metadata call: no
auth, no audit, no database) run as subprocesses with the same uvicorn settings; a separate load
process (tests/bench/loadgen.py) drives each with CONCURRENCY closed-loop clients sending direct
JSON-RPC ``get_secret_metadata`` calls. Targets are measured interleaved, ROUNDS times.

The test prints a table and asserts correctness only (every call answered with a result; every
successful Lockzero call has its durable audit row in rm_audit while the server is still running),
never a speed threshold.

Three floors (tests/bench/floor_app.py) run in the same rounds: the bare endpoint plus get_secret_metadata's read,
plus that read and one group-committed append, plus that read and one audit record through Lockzero's own durable
audit path. They show how much of the bare endpoint's rate any server doing that database work keeps, and so
what part of the gap is Lockzero's per-call Python and what part the work the goal requires.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lockzero.engine.domain.events import AuditRecorded
from tests.api.support import free_port
from tests.bench.floor_app import FLOOR_ENV, FLOORS
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
TENANT = "bench"
SECRETS = 50
SETUP_PARALLEL = 4  # CLI processes at once while adding secrets
CONCURRENCY = 16  # closed-loop clients, one keep-alive connection each
ROUNDS = 3  # Lockzero and bare measured alternately this many times; the table shows the median round
WARMUP_S = 1.0  # per run, not measured (calls still audited and counted for the durability check)
MEASURE_S = 4.0  # per run
HTTPX_MEASURE_S = 2.0  # one extra run of the bare endpoint with an httpx client, to show why it is not used
GOAL_RATIO = 0.50  # Lockzero calls/s >= 50% of the bare endpoint's
START_TIMEOUT_S = 20.0
AUDIT_EVENT_TYPE = str(AuditRecorded.__struct_config__.tag)  # lz_events.type of audit records
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------------------------------
# Processes and plumbing.


def base_env(url: str, master_key: str) -> dict[str, str]:
    """The caller's environment without LOCKZERO_*/OTEL_* (no tracing, no Redis), plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKZERO_", "OTEL_"))}
    env.update(LOCKZERO_DATABASE_URL=url, LOCKZERO_MASTER_KEY=master_key, PYTHONDONTWRITEBYTECODE="1")
    return env


def cli(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "lockzero.api.cli.main", *args, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"lockzero {' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}"
    return json.loads(proc.stdout)


def start_server(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server not listening on {port} after {START_TIMEOUT_S}s:\n{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def rpc_body(call_id: int, secret_id: str) -> bytes:
    # Same bytes as tests/bench/loadgen.py sends.
    return json.dumps(
        {"jsonrpc": "2.0", "id": call_id, "method": "get_secret_metadata", "params": {"secret_id": secret_id}},
        separators=(",", ":"),
    ).encode()


def post_raw(port: int, token: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/mcp",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds; 0 if it is gone or /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait_s(pid: int) -> float:
    """Time the process's main thread spent runnable but waiting for a CPU (/proc/PID/schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class PgBackends:
    """CPU of the PostgreSQL backends serving the bench database (read from /proc: same host)."""

    def __init__(self, conn: psycopg.Connection[Any], dbname: str) -> None:
        self.conn, self.dbname = conn, dbname

    def snapshot(self) -> dict[int, float]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname,)
        ).fetchall()
        return {pid: proc_cpu_s(pid) for (pid,) in rows}

    @staticmethod
    def delta(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


# --------------------------------------------------------------------------------------------------
# One measured run.


@dataclass
class Run:
    target: str
    ok: int
    failed: int
    first_failure: str
    warmup_ok: int
    warmup_failed: int
    elapsed_s: float
    latencies_us: list[int]
    client_cpu_s: float
    server_cpu_s: float
    server_wait_s: float
    pg_cpu_s: float

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s


def run_load(
    target: str,
    port: int,
    token: str,
    secret_ids: list[str],
    server_pid: int,
    pg: PgBackends | None,
    *,
    client: str = "raw",
    measure_s: float = MEASURE_S,
) -> Run:
    args = [sys.executable, "-m", "tests.bench.loadgen", "--port", str(port), "--token", token, "--client", client]
    args += ["--concurrency", str(CONCURRENCY), "--duration", str(measure_s), "--warmup", str(WARMUP_S), "--markers"]
    for sid in secret_ids:
        args += ["--secret", sid]
    with tempfile.TemporaryFile() as errors:
        load = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=errors)
        assert load.stdout is not None
        # Server-side counters are read exactly around the loader's measured window.
        marker = load.stdout.readline()
        cpu0, wait0 = proc_cpu_s(server_pid), runqueue_wait_s(server_pid)
        pg0 = pg.snapshot() if pg else {}
        marker += load.stdout.readline()
        cpu1, wait1 = proc_cpu_s(server_pid), runqueue_wait_s(server_pid)
        pg1 = pg.snapshot() if pg else {}
        out = load.stdout.read()
        load.stdout.close()
        returncode = load.wait(timeout=60)
        errors.seek(0)
        assert returncode == 0 and marker == b"start\nstop\n", f"load generator failed: {errors.read()[-2000:]!r}"
    d = json.loads(out)
    return Run(
        target=target,
        ok=d["ok"],
        failed=d["failed"],
        first_failure=d["first_failure"],
        warmup_ok=d["warmup_ok"],
        warmup_failed=d["warmup_failed"],
        elapsed_s=d["elapsed_s"],
        latencies_us=d["latencies_us"],
        client_cpu_s=d["client_cpu_s"],
        server_cpu_s=cpu1 - cpu0,
        server_wait_s=wait1 - wait0,
        pg_cpu_s=PgBackends.delta(pg0, pg1),
    )


@dataclass
class Summary:
    runs: list[Run] = field(default_factory=list)

    @property
    def median_rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)

    def spread(self) -> str:
        rates = [r.rate for r in self.runs]
        return f"{min(rates):,.0f}-{max(rates):,.0f}"

    def percentile_ms(self, q: float) -> float:
        lat = sorted(x for r in self.runs for x in r.latencies_us)
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000

    def per_call_us(self, attr: str) -> float:
        calls = sum(r.ok + r.failed for r in self.runs)
        return 1e6 * sum(getattr(r, attr) for r in self.runs) / max(calls, 1)


# --------------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def test_mcp_bench(tmp_path: Path) -> None:
    with fresh_pg_database() as url:
        _bench(url, tmp_path)


def _bench(url: str, tmp: Path) -> None:
    load_before = os.getloadavg()
    master_key = b64encode(os.urandom(32)).decode()
    env = base_env(url, master_key)

    # ---- setup through the CLI -----------------------------------------------------------------
    t0 = time.perf_counter()
    cli(env, "migrate")
    cli(env, "tenant", "create", TENANT)
    key = cli(env, "key", "create", "--tenant", TENANT, "--name", "bench")
    key_id, token = key["key_id"], key["key"]
    secret_ids = [f"prod/bench-{i:03d}/api-key" for i in range(SECRETS)]
    with ThreadPoolExecutor(SETUP_PARALLEL) as pool:
        added = list(
            pool.map(
                lambda sid: cli(
                    env, "secret", "add", sid, "--tenant", TENANT, "--provider", "generated", "--environment", "prod"
                ),
                secret_ids,
            )
        )
    assert [a["secret_id"] for a in added] == secret_ids
    setup_s = time.perf_counter() - t0

    lz_port, bare_port = free_port(), free_port()
    lz_log, bare_log = tmp / "lockzero.log", tmp / "bare.log"
    body_file = tmp / "get_secret_metadata.json"
    lz_env = {**env, "LOCKZERO_PORT": str(lz_port), "LOCKZERO_HOST": "127.0.0.1", "LOCKZERO_RATE_LIMIT": "0"}
    bare_env = {**env, "LOCKZERO_PORT": str(bare_port), "LOCKZERO_HOST": "127.0.0.1"}
    bare_env["LOCKZERO_BENCH_BARE_BODY"] = str(body_file)

    lz: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    floors: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    dbname = url.rsplit("/", 1)[1]
    try:
        with psycopg.connect(url, autocommit=True) as monitor:
            # ---- the real server; capture one answer for the bare endpoint ------------------------
            served_from = datetime.now(UTC)  # audit appends from here on are the server's (not the CLI's)
            lz = start_server([sys.executable, "-m", "lockzero.api.cli.main", "serve"], lz_env, lz_log)
            wait_listening(lz, lz_port, lz_log)
            status, captured = post_raw(lz_port, token, rpc_body(1, secret_ids[0]))
            assert status == 200, captured
            answer = json.loads(captured)
            assert answer["id"] == 1 and answer["result"]["secret_id"] == secret_ids[0], answer
            body_file.write_bytes(captured)
            audited_expected = 1

            bare = start_server([sys.executable, "-m", "tests.bench.bare_app"], bare_env, bare_log)
            wait_listening(bare, bare_port, bare_log)
            status, echoed = post_raw(bare_port, "", rpc_body(1, secret_ids[0]))
            assert (status, echoed) == (200, captured)
            for floor in FLOORS:
                port, log = free_port(), tmp / f"floor-{floor}.log"
                floor_env = {**bare_env, "LOCKZERO_PORT": str(port), FLOOR_ENV: floor}
                floors[floor] = start_server([sys.executable, "-m", "tests.bench.floor_app"], floor_env, log), port
                wait_listening(floors[floor][0], port, log)
                assert post_raw(port, "", rpc_body(1, secret_ids[0])) == (200, captured)

            # ---- interleaved runs -----------------------------------------------------------------
            pg = PgBackends(monitor, dbname)
            lz_sum, bare_sum = Summary(), Summary()
            floor_sums = {floor: Summary() for floor in FLOORS}
            for _ in range(ROUNDS):
                run = run_load("lockzero", lz_port, token, secret_ids, lz.pid, pg)
                lz_sum.runs.append(run)
                audited_expected += run.ok + run.warmup_ok
                bare_sum.runs.append(run_load("bare", bare_port, token, secret_ids, bare.pid, None))
                for floor, (proc, port) in floors.items():
                    floor_sums[floor].runs.append(run_load(f"floor {floor}", port, token, secret_ids, proc.pid, pg))
            # Why not httpx: the same load with it, once, against the bare endpoint.
            httpx_run = run_load(
                "bare/httpx", bare_port, token, secret_ids, bare.pid, None, client="httpx", measure_s=HTTPX_MEASURE_S
            )

            floor_runs = [r for s in floor_sums.values() for r in s.runs]
            for r in [*lz_sum.runs, *bare_sum.runs, *floor_runs, httpx_run]:
                assert r.failed == 0 and r.warmup_failed == 0, f"{r.target}: failed calls, first: {r.first_failure}"
                assert r.ok > 0

            # ---- durability: every answered call has its audit row, read while the server runs ------
            audited, audited_ok = monitor.execute(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'ok') FROM rm_audit"
                " WHERE method = 'get_secret_metadata' AND actor_id = %s",
                (key_id,),
            ).fetchone() or (0, 0)
            # All events of one group commit share recorded_at (lz_append_batch's p_at).
            batches, audit_events = monitor.execute(
                "SELECT count(DISTINCT recorded_at), count(*) FROM lz_events WHERE type = %s AND recorded_at >= %s"
                " AND convert_from(data, 'UTF8')::jsonb ->> 'actor_id' = %s",
                (AUDIT_EVENT_TYPE, served_from, key_id),
            ).fetchone() or (0, 0)
    finally:
        stop(lz)
        stop(bare)
        for proc, _ in floors.values():
            stop(proc)
    load_after = os.getloadavg()

    assert audited == audited_expected, (
        f"rm_audit has {audited} get_secret_metadata rows, calls answered {audited_expected}"
    )
    assert audited_ok == audited_expected

    # ---- report --------------------------------------------------------------------------------
    ratio = lz_sum.median_rate / bare_sum.median_rate
    raw_client_us = bare_sum.per_call_us("client_cpu_s")
    httpx_client_us = Summary([httpx_run]).per_call_us("client_cpu_s")
    cpu_ceiling = bare_sum.per_call_us("server_cpu_s") / lz_sum.per_call_us("server_cpu_s")
    audit_floor = floor_sums["audit"]
    own_us = lz_sum.per_call_us("server_cpu_s") - audit_floor.per_call_us("server_cpu_s")
    hr = "-" * 106
    lines = [
        "",
        hr,
        "Lockzero MCP endpoint benchmark: direct JSON-RPC get_secret_metadata, one fresh PostgreSQL database",
        f"setup via CLI in {setup_s:.1f}s: migrate, tenant, read-write key, {SECRETS} secrets (provider generated);"
        " servers: one uvicorn process each, log_level warning, no access log",
        f"load: a separate process; {CONCURRENCY} closed-loop clients, one keep-alive HTTP/1.1 connection each, raw"
        " asyncio sockets; secret ids round-robin",
        f"      not httpx: against the bare endpoint it cost {httpx_client_us:,.0f} µs client CPU per call (raw:"
        f" {raw_client_us:,.0f} µs) and reached {httpx_run.rate:,.0f} calls/s (raw: {bare_sum.median_rate:,.0f})",
        f"      per run {WARMUP_S:.0f}s warm-up + {MEASURE_S:.0f}s measured; {ROUNDS} interleaved rounds; calls/s ="
        " median round [min-max]; p50/p99 over all measured calls",
        "bare: Litestar POST handler, reads the body, returns the captured Lockzero bytes"
        f" ({len(captured)} B); no auth, no audit, no DB",
        f"machine: {os.cpu_count()} CPUs, load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
        " (server, PostgreSQL and load generator share the CPUs)",
        hr,
        f"{'endpoint':<12} | {'calls/s':>22} | {'p50 ms':>7} | {'p99 ms':>7} | {'calls':>6} | per call µs: "
        f"{'server CPU':>10} {'srv runq':>8} {'PG CPU':>7} {'client':>6}",
        hr,
    ]
    rows = [("Lockzero", lz_sum), ("bare", bare_sum), *((f"floor {f}", floor_sums[f]) for f in FLOORS)]
    for name, s in rows:
        calls = sum(r.ok for r in s.runs)
        rate_txt = f"{s.median_rate:,.0f} [{s.spread()}]"
        pg_txt = f"{s.per_call_us('pg_cpu_s'):7.0f}" if name != "bare" else f"{'-':>7}"
        lines.append(
            f"{name:<12} | {rate_txt:>22} | {s.percentile_ms(0.5):7.2f} | {s.percentile_ms(0.99):7.2f} | {calls:>6} |"
            f"              {s.per_call_us('server_cpu_s'):10.0f} {s.per_call_us('server_wait_s'):8.0f} {pg_txt}"
            f" {s.per_call_us('client_cpu_s'):6.0f}"
        )
    lines += [
        hr,
        f"Lockzero / bare calls/s: {ratio:.1%}   (server CPU per call, bare / Lockzero: {cpu_ceiling:.1%}: the most"
        " Lockzero's one event loop could reach if its own CPU were the only limit)",
        f"goal >= {GOAL_RATIO:.0%} of the bare endpoint's rate with the audit durable: {_met(ratio >= GOAL_RATIO)}",
        hr,
        "floors (tests/bench/floor_app.py): the bare endpoint plus get_secret_metadata's read (read), plus one"
        " group-committed append (append), plus one audit record through Lockzero's durable audit path (audit);",
        "no auth, JSON-RPC, tool layer, logging or tracing. Floor / bare = the most the ratio can be with that work:",
        "   "
        + "; ".join(f"{f} {floor_sums[f].median_rate / bare_sum.median_rate:.1%}" for f in FLOORS)
        + "   (server CPU per call, bare / floor: "
        + "; ".join(
            f"{f} {bare_sum.per_call_us('server_cpu_s') / floor_sums[f].per_call_us('server_cpu_s'):.1%}"
            for f in FLOORS
        )
        + ")",
        f"Lockzero / audit floor calls/s: {lz_sum.median_rate / audit_floor.median_rate:.1%}; Lockzero's own per-call"
        f" work beyond the audit floor: {own_us:,.0f} µs of server CPU",
        hr,
        f"durability: rm_audit holds {audited:,} get_secret_metadata rows for key {key_id} (all outcome ok) ="
        f" {audited_expected:,} calls answered (incl. warm-up), counted before the server stopped",
        f"audit group commit (server): {audit_events:,} audit events in {batches:,} appends"
        f" = {audit_events / max(batches, 1):.2f} events per commit",
        "srv runq = time the server's event-loop thread was runnable but waiting for a CPU",
        hr,
    ]
    print("\n".join(lines))
