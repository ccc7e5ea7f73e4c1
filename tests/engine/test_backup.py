"""Backup and restore (engine/security/backup.py), on both backends: a restored store has the source's events,
side tables and, rebuilt by replay, identical read models; its audit chain verifies; a canary value never
appears in the file; an altered, truncated or wrongly keyed file and a non-empty target are refused with
nothing written."""

from __future__ import annotations

import asyncio
import secrets as pysecrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets, tenants
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.errors import Conflict
from lockzero.engine.readmodels.schema import PROJECTION_TABLES
from lockzero.engine.security import keys
from lockzero.engine.security.backup import copied_tables, create_backup, list_tables, restore_backup
from lockzero.engine.security.backup_format import BackupInvalid, KeySource
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from lockzero.eventstore.chain import verify_chain
from tests.conftest import fresh_pg_database
from tests.engine.support import OPERATOR, T0, ManualClock, add_imported_redis, migrated_engine, snapshot
from tests.engine.test_replay import build_history
from tests.eventstore.test_wait_head import counting

CANARY = b"canary-" + pysecrets.token_hex(12).encode()


@contextmanager
def empty_store_url(like: str, tmp_path: Path, name: str) -> Iterator[str]:
    """A second, empty store of the same backend as ``like``."""
    if like.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / name}"
    else:
        with fresh_pg_database() as url:
            yield url


@asynccontextmanager
async def opened(url: str, key: MasterKey, clock: ManualClock | None = None) -> AsyncIterator[Engine]:
    engine = Engine(await open_store(url), key, clock)
    try:
        yield engine
    finally:
        await engine.close()


async def all_tables(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    async with engine.store.reader() as tx:
        names = await list_tables(tx, engine.store.dialect)
    return await snapshot(engine, tuple(copied_tables(names)) + PROJECTION_TABLES)


async def _source(url: str, key: MasterKey, clock: ManualClock) -> dict[str, str]:
    async with migrated_engine(url, None, clock=clock, master_key=key) as engine:
        tokens = await build_history(engine, clock)
        await add_imported_redis(engine, "beta", "prod/canary", CANARY, username="canary")
    return tokens


async def restored_head_seen_by_waiters(engine: Engine, head: int) -> None:
    """A waiter's head (EventStore.wait_head) reaches the restored head without a new append."""
    assert await engine.store.head_position() == head
    for _ in range(500):
        if await engine.store.wait_head() == head:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waiters still count from {await engine.store.wait_head()}, the head is {head}")


async def test_restore_gives_identical_tables_and_a_clean_chain(
    store_url: str, tmp_path: Path, clock: ManualClock
) -> None:
    key = MasterKey.generate()
    tokens = await _source(store_url, key, clock)
    out = tmp_path / "store.lzbackup"
    summary = await create_backup(store_url, key, KeySource(master_key=key), out)
    assert summary.rows["lz_events"] > 30 and summary.rows["lz_tenant_keys"] == 2
    assert out.stat().st_mode & 0o777 == 0o600
    assert CANARY not in out.read_bytes() and b"imported-redis-password" not in out.read_bytes()

    async with opened(store_url, key) as source:
        before = await all_tables(source)
    for table in ("rm_secrets", "rm_audit", "lz_secret_versions", "lz_sealed", "lz_chain_heads"):
        assert before[table], table

    with empty_store_url(store_url, tmp_path, "restored.db") as target:
        async with opened(target, key) as engine:
            await engine.migrate()
            assert await engine.store.wait_head() == 0  # a waiter on the empty store
            if target.startswith("postgresql"):
                await counting(engine.store)  # its listener counts the head: the restore must tell it
            with out.open("rb") as fh:
                restored = await restore_backup(engine, key, fh, KeySource(master_key=key))
            assert restored.audit_chain_ok and restored.events_replayed == summary.rows["lz_events"]
            await restored_head_seen_by_waiters(engine, summary.rows["lz_events"])
            assert restored.rows == {t: n for t, n in summary.rows.items() if n}
            after = await all_tables(engine)
            # Every read model (rebuilt by replay) and every copied table equals the source's.
            assert after == before
            async with engine.store.reader() as tx:
                report = await verify_chain(tx)
            assert report.ok and report.records == summary.rows["lz_events"]
            assert await secrets.read_version_value(engine, "beta", "prod/canary", 1) == CANARY
            assert await keys.authenticate(engine, tokens["rw"]) is not None
            # The restored store takes new events after the restored ones, on the same chain.
            await tenants.create_tenant(engine, "gamma", OPERATOR)
            async with engine.store.reader() as tx:
                assert (await verify_chain(tx)).ok
            assert await engine.store.head_position() == summary.rows["lz_events"] + 1


async def test_a_non_empty_target_is_refused_and_left_alone(store_url: str, tmp_path: Path) -> None:
    key = MasterKey.generate()
    async with migrated_engine(store_url, master_key=key) as engine:
        out = tmp_path / "b.lzbackup"
        await create_backup(store_url, key, KeySource(master_key=key), out)
        before = await all_tables(engine)
        with out.open("rb") as fh, pytest.raises(Conflict, match="not empty"):
            await restore_backup(engine, key, fh, KeySource(master_key=key))
        assert await all_tables(engine) == before


async def _restore_fails(target: str, key: MasterKey, data: bytes, keys_: KeySource, tmp_path: Path) -> str:
    path = tmp_path / f"t-{pysecrets.token_hex(4)}.lzbackup"
    path.write_bytes(data)
    async with opened(target, key) as engine:
        with path.open("rb") as fh, pytest.raises(BackupInvalid) as err:
            await restore_backup(engine, key, fh, keys_)
        async with engine.store.reader() as tx:
            names = await list_tables(tx, engine.store.dialect)
            for table in copied_tables(names):
                if table != "lz_chain_start":
                    assert await tx.fetchall(f"SELECT 1 FROM {table} LIMIT 1") == [], table
    assert "\n" not in str(err.value)
    return str(err.value)


async def test_tampered_truncated_or_wrongly_keyed_backups_are_refused(
    store_url: str, tmp_path: Path, clock: ManualClock
) -> None:
    key = MasterKey.generate()
    await _source(store_url, key, clock)
    out = tmp_path / "b.lzbackup"
    await create_backup(store_url, key, KeySource(master_key=key), out)
    data = out.read_bytes()
    mine = KeySource(master_key=key)
    with empty_store_url(store_url, tmp_path, "target.db") as target:
        # A byte flipped in the last chunk: everything before it authenticated and was inserted, then rolled back.
        flipped = bytearray(data)
        flipped[-20] ^= 0x01
        assert "does not authenticate" in await _restore_fails(target, key, bytes(flipped), mine, tmp_path)
        assert "truncated" in await _restore_fails(target, key, data[:-300], mine, tmp_path)
        # The header is associated data of every chunk: editing it (here: the source dialect) breaks them all.
        edited = bytearray(data)
        edited[data.index(b'"source":"') + 10] ^= 0x20  # "sqlite" -> "Sqlite": same length, still valid JSON
        assert "does not authenticate" in await _restore_fails(target, key, bytes(edited), mine, tmp_path)
        other = KeySource(master_key=MasterKey.generate())
        assert "does not authenticate" in await _restore_fails(target, key, data, other, tmp_path)
        passphrase = KeySource(passphrase=b"correct horse")
        assert "master key" in await _restore_fails(target, key, data, passphrase, tmp_path)
        assert "not a Lockzero backup" in await _restore_fails(target, key, b"PK\x03\x04", mine, tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
async def test_any_flipped_bit_is_refused(tmp_path: Path, position: int, bit: int) -> None:
    """Wherever a bit flips (magic, header, frame flags, lengths, ciphertext, tags), restore refuses the file."""
    key = MasterKey.generate()
    src = f"sqlite:///{tmp_path / f'src-{pysecrets.token_hex(4)}.db'}"
    async with migrated_engine(src, master_key=key):
        pass  # a store holding tenant acme
    out = tmp_path / f"{pysecrets.token_hex(4)}.lzbackup"
    await create_backup(src, key, KeySource(master_key=key), out)
    data = bytearray(out.read_bytes())
    data[position % len(data)] ^= 1 << bit
    target = f"sqlite:///{tmp_path / f'dst-{pysecrets.token_hex(4)}.db'}"
    await _restore_fails(target, key, bytes(data), KeySource(master_key=key), tmp_path)


async def test_a_passphrase_backup_restores_with_the_passphrase_only(store_url: str, tmp_path: Path) -> None:
    key = MasterKey.generate()
    async with migrated_engine(store_url, master_key=key):
        pass  # a store holding tenant acme
    out = tmp_path / "p.lzbackup"
    await create_backup(store_url, key, KeySource(passphrase=b"correct horse battery"), out)
    with empty_store_url(store_url, tmp_path, "target.db") as target:
        wrong = KeySource(passphrase=b"correct horse battery!")
        assert "does not authenticate" in await _restore_fails(target, key, out.read_bytes(), wrong, tmp_path)
        # The passphrase opens the file, but the tenant keys inside still need the source's master key.
        assert "another master key" in await _restore_fails(
            target, MasterKey.generate(), out.read_bytes(), KeySource(passphrase=b"correct horse battery"), tmp_path
        )
        async with opened(target, key) as engine:
            with out.open("rb") as fh:
                done = await restore_backup(engine, key, fh, KeySource(passphrase=b"correct horse battery"))
            assert done.rows["lz_tenant_keys"] == 1
            assert [t.tenant for t in await tenants.list_tenants(engine)] == ["acme"]


async def test_an_embedded_backup_restores_into_postgresql(tmp_path: Path, clock: ManualClock) -> None:
    """The file is portable between the backends: the way off the embedded default onto PostgreSQL."""
    key = MasterKey.generate()
    src = f"sqlite:///{tmp_path / 'embedded.db'}"
    tokens = await _source(src, key, clock)
    out = tmp_path / "embedded.lzbackup"
    await create_backup(src, key, KeySource(master_key=key), out)
    async with opened(src, key) as source:
        before = await snapshot(source, PROJECTION_TABLES)
    with fresh_pg_database() as target:
        async with opened(target, key) as engine:
            with out.open("rb") as fh:
                restored = await restore_backup(engine, key, fh, KeySource(master_key=key))
            assert restored.source == "sqlite" and restored.audit_chain_ok
            assert await snapshot(engine, PROJECTION_TABLES) == before
            assert await secrets.read_version_value(engine, "beta", "prod/canary", 1) == CANARY
            assert await keys.authenticate(engine, tokens["rw"]) is not None
            await tenants.create_tenant(engine, "gamma", OPERATOR)
            async with engine.store.reader() as tx:
                assert (await verify_chain(tx)).ok


async def test_a_backup_taken_during_writes_is_one_consistent_snapshot(store_url: str, tmp_path: Path) -> None:
    """Tenants and secrets keep being created while the backup reads: whatever instant the snapshot caught, every
    tenant in it has its wrapped key, every stored value its events, and the chains end where their heads say."""
    key = MasterKey.generate()
    async with migrated_engine(store_url, master_key=key) as engine:
        # Enough rows that reading them takes a while (a thousand audit records, in batches as the batcher makes them).
        for batch in range(4):
            await engine.append_each(
                naming.audit_stream("acme"),
                [
                    (
                        ev.AuditRecorded(
                            at=T0, tenant="acme", audit_id=f"a{batch}-{i}", actor_id="k", actor_type="agent",
                            method="list_secrets", outcome="ok",
                        ),
                        OPERATOR,
                    )
                    for i in range(250)
                ],
            )  # fmt: skip
        stop, started = asyncio.Event(), asyncio.Event()
        written: list[int] = []

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                name = f"t{i:04d}"
                await tenants.create_tenant(engine, name, OPERATOR)
                await add_imported_redis(engine, name, "prod/db", CANARY, username="u")
                written.append(i)
                if len(written) == 2:
                    started.set()
                i += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(writer())
        await started.wait()
        out = tmp_path / "busy.lzbackup"
        try:
            summary = await create_backup(store_url, key, KeySource(master_key=key), out)
        finally:
            stop.set()
            await task
    assert CANARY not in out.read_bytes()

    with empty_store_url(store_url, tmp_path, "busy-restored.db") as target:
        async with opened(target, key) as engine:
            with out.open("rb") as fh:
                restored = await restore_backup(engine, key, fh, KeySource(master_key=key))
            assert restored.audit_chain_ok, restored.audit_chain_problem
            async with engine.store.reader() as tx:
                names = {r[0] for r in await tx.fetchall("SELECT tenant FROM rm_tenants")}
                wrapped = {r[0] for r in await tx.fetchall("SELECT tenant FROM lz_tenant_keys")}
                registered = set(await tx.fetchall("SELECT tenant, secret_id FROM rm_secrets"))
                stored = set(await tx.fetchall("SELECT tenant, secret_id FROM lz_secret_versions"))
            assert names == wrapped and registered == stored
            assert len(names) - 1 >= 2 and summary.rows["lz_tenant_keys"] == len(names)
            # (The last tenant may have been caught between its creation and its secret's registration.)
            assert registered and all(tenant in names for tenant, _ in registered)
            for tenant, secret_id in registered:
                assert await secrets.read_version_value(engine, tenant, secret_id, 1) == CANARY
