"""Backup and restore benchmark (issue 14): rows/s of `create_backup` and `restore_backup` (rows, replay and chain
verification included) per backend, over a store of EVENTS audit records plus TENANTS tenants with a secret each.

Run with ``make bench`` (or ``.venv/bin/python -m pytest -q -s -m bench tests/bench/test_backup_bench.py``).
The assertions are sanity only (every row came back, the chain verifies); the figures are printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets, tenants
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.security.backup import create_backup, restore_backup
from lockzero.engine.security.backup_format import KeySource
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.conftest import fresh_pg_database
from tests.engine.support import OPERATOR, T0

pytestmark = pytest.mark.bench

EVENTS = 20_000
TENANTS = 50


async def _fill(engine: Engine) -> None:
    await engine.migrate()
    for t in range(TENANTS):
        name = f"t{t:03d}"
        await tenants.create_tenant(engine, name, OPERATOR)
        await secrets.register_secret(
            engine, name, OPERATOR, secret_id="prod/db", provider="generated", environment="prod"
        )
    per_batch = 500
    for b in range(EVENTS // per_batch):
        batch = [
            (
                ev.AuditRecorded(
                    at=T0, tenant="t000", audit_id=f"a{b}-{i}", actor_id="k", actor_type="agent",
                    method="list_secrets", outcome="ok",
                ),
                OPERATOR,
            )
            for i in range(per_batch)
        ]  # fmt: skip
        await engine.append_each(naming.audit_stream("t000"), batch)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_backup_and_restore_throughput(backend: str, tmp_path: Path) -> None:
    key = MasterKey.generate()
    keys = KeySource(master_key=key)
    with fresh_pg_database() as pg_src, fresh_pg_database() as pg_dst:
        src = pg_src if backend == "postgresql" else f"sqlite:///{tmp_path / 'src.db'}"
        dst = pg_dst if backend == "postgresql" else f"sqlite:///{tmp_path / 'dst.db'}"
        engine = Engine(await open_store(src), key)
        try:
            await _fill(engine)
        finally:
            await engine.close()
        out = tmp_path / "bench.lzbackup"
        started = time.perf_counter()
        summary = await create_backup(src, key, keys, out)
        backup_s = time.perf_counter() - started
        rows = sum(summary.rows.values())
        target = Engine(await open_store(dst), key)
        try:
            started = time.perf_counter()
            with out.open("rb") as fh:
                restored = await restore_backup(target, key, fh, keys)
            restore_s = time.perf_counter() - started
        finally:
            await target.close()
    assert restored.audit_chain_ok and sum(restored.rows.values()) == rows
    print(
        f"\n{backend:10s} {rows} rows ({summary.rows['lz_events']} events), file {summary.bytes / 1e6:.1f} MB:"
        f" backup {backup_s:.2f} s ({rows / backup_s:,.0f} rows/s),"
        f" restore+replay+verify {restore_s:.2f} s ({rows / restore_s:,.0f} rows/s)"
    )
