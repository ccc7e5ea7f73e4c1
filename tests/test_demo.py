"""`lockzero demo` tells the whole story against the machine's Redis and ends verified."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_remediates_the_leak(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "lockzero.api.cli.main", "demo", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["verified"] is True
    assert summary["time_to_remediation_ms"] > 0
    text = run.stdout
    assert "detect_exposure → 1 finding(s); managed prod/redis/cache" in text
    assert "open incidents on the secret after verification: 0" in text
    assert "is refused by Redis" in text
    assert "Traceback" not in run.stderr
    # The demo ran in its own temporary state, not in the caller's directory.
    assert not (tmp_path / ".lockzero").exists()
