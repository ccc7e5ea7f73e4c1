"""Signed checkpoints (issue 16) on both backends: the exported public key verifies them; a rewrite of the
whole database (chain recomputed from the first changed record on, head moved, checkpoints deleted) passes
the chain walk but is caught by the checkpoint a witness holds (a file, an HTTP endpoint, S3 on moto);
the scheduler's pass opens one critical incident for a broken chain."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from lockzero.engine.app import Engine
from lockzero.engine.audit import chain as audit_chain
from lockzero.engine.saga.scheduler import run_pass
from lockzero.eventstore.chain import GENESIS, chain_of, link
from tests.engine.support import serving
from tests.engine.test_audit_chain import mixed_calls, positions_of, sql
from tests.providers_ext.support import MotoServer


class _Queue:
    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        raise AssertionError("no rotation expected")


async def rewrite_chain(engine: Engine, tenant: str, position: int) -> None:
    """What an attacker with full database access can do: change one record and recompute every later
    link of the tenant's chain and its head, so the chain walk alone sees nothing wrong."""
    await sql(engine, "UPDATE lz_events SET data = ? WHERE position = ?", (b'{"forged":true}', position))
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT position, stream, version, event_id, type, data, metadata, recorded_at, chain_seq"
            " FROM lz_events ORDER BY position"
        )
    prev, seq, last = GENESIS, 0, 0
    updates: list[tuple[bytes, int]] = []
    for r in rows:
        if chain_of(r[1]) != tenant or r[8] is None:
            continue
        event_id = r[3] if isinstance(r[3], uuid.UUID) else uuid.UUID(r[3])
        at = datetime.fromisoformat(r[7]) if isinstance(r[7], str) else r[7]
        seq = int(r[8])
        prev = link(prev, int(r[0]), seq, r[1], int(r[2]), event_id, r[4], bytes(r[5]), bytes(r[6]), at)
        updates.append((prev, int(r[0])))
        last = int(r[0])
    async with engine.store.transaction() as tx:
        await tx.executemany("UPDATE lz_events SET chain_hash = ? WHERE position = ?", updates)
        await tx.execute("UPDATE lz_chain_heads SET hash = ?, position = ? WHERE chain = ?", (prev, last, tenant))
        await tx.execute("DELETE FROM lz_audit_checkpoints WHERE tenant = ?", (tenant,))


async def test_public_key_verifies_the_checkpoint(engine: Engine, tmp_path: Path) -> None:
    await mixed_calls(engine, 30)
    witness = audit_chain.FileWitness(str(tmp_path / "witness.jsonl"))
    result = await audit_chain.checkpoint(engine, "acme", witness)
    assert result.created and result.witnessed == 1 and result.witness_error is None
    again = await audit_chain.checkpoint(engine, "acme", witness)
    assert again.created == [] and again.witnessed == 0  # nothing new to sign or push
    pem = await audit_chain.public_key_pem(engine, "acme")
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    (line,) = (tmp_path / "witness.jsonl").read_text().splitlines()
    cp = msgspec.json.decode(line, type=audit_chain.Checkpoint)
    key.verify(bytes.fromhex(cp.signature), cp.statement())  # raises InvalidSignature if wrong
    forged = msgspec.structs.replace(cp, seq=cp.seq + 1)
    with pytest.raises(InvalidSignature):
        key.verify(bytes.fromhex(cp.signature), forged.statement())
    verdict = await audit_chain.verify(engine, witness=witness)
    assert verdict.ok and verdict.checkpoints == 1


async def test_whole_database_rewrite_is_caught_by_the_file_witness(engine: Engine, tmp_path: Path) -> None:
    await mixed_calls(engine, 60)
    witness = audit_chain.FileWitness(str(tmp_path / "witness.jsonl"))
    await audit_chain.checkpoint(engine, "acme", witness)
    checkpointed = (await positions_of(engine, "acme"))[-1]
    target = (await positions_of(engine, "acme"))[4]
    await rewrite_chain(engine, "acme", target)
    # The chain itself is consistent again: only the witness can tell.
    assert (await audit_chain.verify(engine)).ok
    caught = await audit_chain.verify(engine, witness=witness)
    assert not caught.ok
    assert caught.failures[0].kind == "rewritten" and caught.first_bad_position == checkpointed
    assert caught.failures[0].tenant == "acme"


async def test_rewrite_that_keeps_the_stored_checkpoints_is_caught_without_a_witness(engine: Engine) -> None:
    await mixed_calls(engine, 40)
    await audit_chain.checkpoint(engine, "beta")
    stored = await audit_chain.verify(engine)
    assert stored.ok and stored.checkpoints == 1
    async with engine.store.transaction() as tx:
        saved = await tx.fetchall("SELECT tenant, seq, position, hash, at, signature FROM lz_audit_checkpoints")
    await rewrite_chain(engine, "beta", (await positions_of(engine, "beta"))[2])
    async with engine.store.transaction() as tx:  # the attacker cannot re-sign; put the old ones back
        await tx.executemany(
            "INSERT INTO lz_audit_checkpoints (tenant, seq, position, hash, at, signature) VALUES (?, ?, ?, ?, ?, ?)",
            saved,
        )
    verdict = await audit_chain.verify(engine, "beta")
    assert [f.kind for f in verdict.failures] == ["rewritten"]


class _WitnessHandler(BaseHTTPRequestHandler):
    store: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.store.append(json.loads(body))
        self.send_response(201)
        self.end_headers()

    def do_GET(self) -> None:
        tenant = parse_qs(urlparse(self.path).query)["tenant"][0]
        body = json.dumps([c for c in self.store if c["tenant"] == tenant]).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_witness() -> Iterator[str]:
    _WitnessHandler.store = []
    with serving(_WitnessHandler) as origin:
        yield f"{origin}/checkpoints"


async def test_http_witness_catches_a_rewrite(engine: Engine, http_witness: str) -> None:
    await mixed_calls(engine, 30)
    witness = audit_chain.witness_from_url(http_witness)
    assert isinstance(witness, audit_chain.HttpWitness)
    assert (await audit_chain.checkpoint(engine, "acme", witness)).witnessed == 1
    assert len(_WitnessHandler.store) == 1
    assert (await audit_chain.verify(engine, "acme", witness=witness)).ok
    await rewrite_chain(engine, "acme", (await positions_of(engine, "acme"))[1])
    failures = (await audit_chain.verify(engine, "acme", witness=witness)).failures
    # The witnessed checkpoint is missing from the database, and the chain differs from it.
    assert {f.kind for f in failures} == {"rewritten"} and any("differs" in f.detail for f in failures)


async def test_s3_witness_on_moto_catches_a_rewrite(engine: Engine, moto: MotoServer) -> None:
    s3 = moto.client("s3")
    bucket = f"audit-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    witness = audit_chain.S3Witness(bucket, "lockzero/", client=s3)
    await mixed_calls(engine, 30)
    assert (await audit_chain.checkpoint(engine, "beta", witness)).witnessed == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("lockzero/beta/")
    await rewrite_chain(engine, "beta", (await positions_of(engine, "beta"))[3])
    verdict = await audit_chain.verify(engine, witness=witness)
    assert {(f.tenant, f.kind) for f in verdict.failures} == {("beta", "rewritten")}
    assert any("differs" in f.detail for f in verdict.failures)


async def test_unreachable_witness_keeps_the_checkpoint_for_the_next_push(engine: Engine, tmp_path: Path) -> None:
    await mixed_calls(engine, 20)
    down = audit_chain.HttpWitness("http://127.0.0.1:9/checkpoints")
    result = await audit_chain.checkpoint(engine, "acme", down)
    assert result.created and result.witnessed == 0 and result.witness_error
    up = audit_chain.FileWitness(str(tmp_path / "w.jsonl"))
    assert (await audit_chain.checkpoint(engine, "acme", up)).witnessed == 1


async def test_scheduler_opens_one_incident_for_a_broken_chain(engine: Engine) -> None:
    await mixed_calls(engine, 40)
    clean = await run_pass(engine, _Queue())
    assert clean.audit_incidents == []
    target = (await positions_of(engine, "acme"))[6]
    await sql(engine, "UPDATE lz_events SET metadata = ? WHERE position = ?", (b"{}", target))
    first = await run_pass(engine, _Queue())
    assert len(first.audit_incidents) == 1
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT kind, severity, summary FROM rm_incidents WHERE tenant = 'acme' AND incident_id = ?",
            (first.audit_incidents[0],),
        )
    assert row is not None and row[0] == "policy_violation" and row[1] == "critical"
    assert f"position {target}" in row[2]
    second = await run_pass(engine, _Queue())
    assert second.audit_incidents == first.audit_incidents  # the same incident, not a new one
    async with engine.store.reader() as tx:
        count = await tx.fetchone("SELECT COUNT(*) FROM rm_incidents WHERE incident_id LIKE 'inc_audit_%'")
    assert count is not None and count[0] == 1
