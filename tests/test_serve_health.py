"""`lockzero serve` start-up: a dead queue is one clear line; a healthy server reports store and queue ready."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.support import free_port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOCKZERO_DATABASE_URL": f"sqlite:///{tmp_path}/lz.db",
        "LOCKZERO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        **extra,
    }


def test_unreachable_redis_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "lockzero.api.cli.main", "serve"],
        env=_env(tmp_path, LOCKZERO_REDIS_URL="redis://127.0.0.1:1/0", LOCKZERO_PORT=str(free_port())),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("lockzero: error:")]
    assert errors == ["lockzero: error: the Redis queue at LOCKZERO_REDIS_URL is unreachable"]
    assert "Traceback" not in run.stderr


def test_readyz_reports_store_and_queue(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "lockzero.api.cli.main", "serve"],
        env=_env(tmp_path, LOCKZERO_PORT=str(port)),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        body = None
        for _ in range(100):
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            except httpx.HTTPError:
                assert server.poll() is None, "serve exited early"
                time.sleep(0.1)
                continue
            body = reply.json()
            assert reply.status_code == 200
            break
        assert body == {"status": "ready", "store": "ok", "queue": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        server.terminate()
        server.wait(timeout=10)
