"""`lockzero audit verify|export|checkpoint|public-key` as a subprocess on both backends (issue 16)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import psycopg

from tests.cli.test_cli import LOCKZERO, TIMEOUT, base_env, new_key_b64


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOCKZERO, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def _tamper(url: str, statement: str) -> None:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement)


def test_verify_clean_then_tampered(store_url: str, tmp_path: Path) -> None:
    witness = tmp_path / "witness.jsonl"
    env = base_env(
        LOCKZERO_DATABASE_URL=store_url, LOCKZERO_MASTER_KEY=new_key_b64(), LOCKZERO_AUDIT_WITNESS=f"file:{witness}"
    )
    assert _run(env, tmp_path, "migrate").returncode == 0
    assert _run(env, tmp_path, "tenant", "create", "acme").returncode == 0
    assert _run(env, tmp_path, "key", "create", "--tenant", "acme").returncode == 0
    cp = _run(env, tmp_path, "audit", "checkpoint", "--tenant", "acme")
    assert cp.returncode == 0, cp.stderr
    assert witness.read_text().count("\n") == 1
    pem = _run(env, tmp_path, "audit", "public-key", "--tenant", "acme")
    assert pem.returncode == 0 and pem.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    clean = _run(env, tmp_path, "audit", "verify", "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["ok"] is True and json.loads(clean.stdout)["checkpoints"] == 1
    _tamper(store_url, "UPDATE lz_events SET type = 'Forged' WHERE position = 2")
    broken = _run(env, tmp_path, "audit", "verify", "--tenant", "acme")
    assert broken.returncode == 1
    assert "broken at position 2: modified" in broken.stderr
    bad = _run(env, tmp_path, "audit", "verify", "--tenant", "Not A Tenant")
    assert bad.returncode == 2 and "tenant name" in bad.stderr
    export = _run(env, tmp_path, "audit", "export", "--tenant", "acme", "--format", "ocsf")
    assert export.returncode == 0 and "lz_mcp_" not in export.stdout
