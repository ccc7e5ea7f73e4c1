"""CLI start-up benchmark (issue 17): wall time of `lockzero --help` and `lockzero tenant list --json` (embedded
SQLite in a temp dir), beside a bare `python -c pass`, in interleaved rounds; medians with ranges are printed.

Run with ``make bench`` (or ``.venv/bin/python -m pytest -q -s -m bench tests/bench/test_cli_startup_bench.py``).
The assertions are sanity only (each run succeeded); the figures are printed, never asserted.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import base_env, new_key_b64

pytestmark = pytest.mark.bench

ROUNDS = 21
CLI = [sys.executable, "-m", "lockzero.api.cli.main"]


def test_cli_startup(tmp_path: Path) -> None:
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path}/lz.db", LOCKZERO_MASTER_KEY=new_key_b64())
    subprocess.run([*CLI, "tenant", "create", "acme"], env=env, cwd=tmp_path, check=True, capture_output=True)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "lockzero --help": [*CLI, "--help"],
        "lockzero tenant list --json": [*CLI, "tenant", "list", "--json"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(ROUNDS):
        for name, argv in commands.items():
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, timeout=60)
            times[name].append(time.perf_counter() - started)
            assert done.returncode == 0, done.stderr
    print()
    for name, xs in times.items():
        print(
            f"{name:30s} median {statistics.median(xs) * 1000:6.0f} ms"
            f"  range {min(xs) * 1000:.0f}-{max(xs) * 1000:.0f} ms  ({ROUNDS} interleaved rounds)"
        )
