"""Tamper evidence for events and audit records: verify each tenant's hash chain (eventstore/chain.py).

Verification reads only; it never repairs. A failure names the first bad position of each broken chain.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockzero.engine.app import Engine
from lockzero.engine.config import ConfigError
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.security.outbound import redact_url
from lockzero.eventstore import Transaction
from lockzero.eventstore.chain import SYSTEM_CHAIN, VerifyReport, chain_of, verify_chain

#: The kind of failure that says a witness could not be read, not that a chain is broken.
UNVERIFIABLE = "unverifiable"


class ChainSummary(msgspec.Struct, frozen=True):
    tenant: str
    records: int
    legacy: int
    head_seq: int
    head_position: int


class FailureView(msgspec.Struct, frozen=True):
    tenant: str
    position: int
    kind: str
    detail: str


class Verdict(msgspec.Struct, frozen=True):
    ok: bool
    records: int
    chains: list[ChainSummary]
    checkpoints: int
    failures: list[FailureView]
    first_bad_position: int | None

    def message(self) -> str:
        if self.ok:
            return (
                f"audit chain intact: {self.records} records in {len(self.chains)} chains,"
                f" {self.checkpoints} checkpoints verified"
            )
        f = self.failures[0]
        return f"audit chain broken at position {f.position}: {f.kind} ({f.detail}) in the chain of {f.tenant!r}"


def _check_tenant(tenant: str | None) -> str | None:
    if tenant is None or tenant == SYSTEM_CHAIN:
        return tenant
    return naming.tenant_name(tenant)


def verdict(report: VerifyReport, checkpoints: int = 0, extra: list[FailureView] | None = None) -> Verdict:
    failures = sorted(
        [FailureView(f.chain, f.position, f.kind, f.detail) for f in report.failures] + (extra or []),
        key=lambda f: f.position,
    )
    chains = [ChainSummary(name, c.records, c.legacy, c.seq, c.position) for name, c in sorted(report.chains.items())]
    return Verdict(
        ok=not failures,
        records=report.records,
        chains=chains,
        checkpoints=checkpoints,
        failures=failures,
        first_bad_position=failures[0].position if failures else None,
    )


async def verify(engine: Engine, tenant: str | None = None, since: int = 0, witness: Witness | None = None) -> Verdict:
    """Walk the chain of ``tenant`` (every chain when None) from position ``since``, then check every
    signed checkpoint (stored and witnessed) against the chain."""
    tenant = _check_tenant(tenant)
    if since < 0:
        raise InvalidInput("--since must be a position >= 0")
    # One snapshot: read statement by statement, records appended during the walk would pass the chain heads
    # it read first and be taken for forged ones.
    async with engine.store.snapshot() as tx:
        report = await verify_chain(tx, tenant=tenant, since=since)
        signed = await signed_tenants(tx, report) if tenant is None else [] if tenant == SYSTEM_CHAIN else [tenant]
    checkpoints, extra = 0, []
    for t in signed:
        checked = await check_checkpoints(engine, t, witness)
        checkpoints += checked.count
        extra.extend(checked.failures)
    return verdict(report, checkpoints, extra)


async def signed_tenants(tx: Transaction, report: VerifyReport) -> list[str]:
    """The tenants whose checkpoints a whole-store verification checks."""
    rows = await tx.fetchall("SELECT tenant FROM rm_tenants UNION SELECT tenant FROM lz_audit_signing_keys")
    return sorted({str(r[0]) for r in rows} | {c for c in report.chains if c != SYSTEM_CHAIN})


# --------------------------------------------------------------------------------------------------
# signed checkpoints and witnesses
#
# A checkpoint is the tenant's chain head (seq, position, hash) signed with the tenant's Ed25519 key.
# The private key is sealed under the tenant's data key (so only a holder of the master key can sign);
# the public key is exportable for auditors. A copy of each checkpoint goes to an outside witness: a
# rewrite of the whole database (chain recomputed, checkpoints table replaced) then disagrees with it.

_KEY_REF = "audit-checkpoint"
_KEY_PURPOSE = "ed25519-signing-key"


class Checkpoint(msgspec.Struct, frozen=True):
    tenant: str
    seq: int
    position: int
    hash: str  # hex
    at: str
    signature: str = ""  # hex, over statement()

    def statement(self) -> bytes:
        return msgspec.json.encode(
            ["lockzero-audit-checkpoint/v1", self.tenant, self.seq, self.position, self.hash, self.at]
        )


class Witness(Protocol):
    name: str

    async def push(self, cp: Checkpoint) -> None: ...

    async def fetch(self, tenant: str) -> list[Checkpoint]: ...


class WitnessError(Exception):
    """The witness could not be reached or answered badly; never carries credentials."""


class FileWitness:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = f"file:{path}"

    async def push(self, cp: Checkpoint) -> None:
        line = msgspec.json.encode(cp) + b"\n"

        def write() -> None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            raise WitnessError(f"witness file cannot be written ({exc.strerror})") from None

    async def fetch(self, tenant: str) -> list[Checkpoint]:
        try:
            text = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WitnessError(f"witness file cannot be read ({exc.strerror})") from None
        out = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    cp = msgspec.json.decode(line, type=Checkpoint)
                except msgspec.DecodeError:
                    raise WitnessError(f"witness file line {number} is not a checkpoint") from None
                if cp.tenant == tenant:
                    out.append(cp)
        return out


class HttpWitness:
    """POST each checkpoint as JSON; GET ?tenant=T answers the list of that tenant's checkpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = redact_url(url)

    async def push(self, cp: Checkpoint) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.post(
                    self.url, content=msgspec.json.encode(cp), headers={"content-type": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise WitnessError(f"witness {self.name} unreachable ({type(exc).__name__})") from None
        if r.status_code // 100 != 2:
            raise WitnessError(f"witness {self.name} answered HTTP {r.status_code}")

    async def fetch(self, tenant: str) -> list[Checkpoint]:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(self.url, params={"tenant": tenant})
        except httpx.HTTPError as exc:
            raise WitnessError(f"witness {self.name} unreachable ({type(exc).__name__})") from None
        if r.status_code // 100 != 2:
            raise WitnessError(f"witness {self.name} answered HTTP {r.status_code}")
        try:
            return [cp for cp in msgspec.json.decode(r.content, type=list[Checkpoint]) if cp.tenant == tenant]
        except msgspec.ValidationError:
            raise WitnessError(f"witness {self.name} answered something that is not a checkpoint list") from None


class S3Witness:
    """One object per checkpoint, ``<prefix><tenant>/<seq>.json``; an Object Lock bucket makes it write-once.
    Credentials and endpoint come from the standard AWS environment (AWS_ENDPOINT_URL for moto/MinIO)."""

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        import boto3

        self.bucket, self.prefix = bucket, prefix
        self.name = f"s3://{bucket}/{prefix}"
        self._s3 = client if client is not None else boto3.client("s3")

    async def push(self, cp: Checkpoint) -> None:
        key = f"{self.prefix}{cp.tenant}/{cp.seq:012d}.json"
        try:
            await asyncio.to_thread(self._s3.put_object, Bucket=self.bucket, Key=key, Body=msgspec.json.encode(cp))
        except Exception as exc:  # botocore raises many classes; none may leak credentials
            raise WitnessError(f"witness {self.name} refused the checkpoint ({type(exc).__name__})") from None

    async def fetch(self, tenant: str) -> list[Checkpoint]:
        def read() -> list[Checkpoint]:
            out = []
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}{tenant}/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    body = self._s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    out.append(msgspec.json.decode(body, type=Checkpoint))
            return out

        try:
            return await asyncio.to_thread(read)
        except Exception as exc:
            raise WitnessError(f"witness {self.name} cannot be read ({type(exc).__name__})") from None


def witness_from_url(url: str | None) -> Witness | None:
    """LOCKZERO_AUDIT_WITNESS: ``file:/path`` (or an absolute path), ``https://…``, or ``s3://bucket/prefix``."""
    if not url:
        return None
    if url.startswith("file:"):
        return FileWitness(url.removeprefix("file:").removeprefix("//"))
    if url.startswith("/"):
        return FileWitness(url)
    if url.startswith(("http://", "https://")):
        return HttpWitness(url)
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError("LOCKZERO_AUDIT_WITNESS: s3:// needs a bucket, e.g. s3://audit-bucket/lockzero/")
        return S3Witness(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")
    raise ConfigError("LOCKZERO_AUDIT_WITNESS must be file:/path, https://… or s3://bucket/prefix")


async def _signing_key(engine: Engine, tenant: str, *, create: bool) -> Ed25519PrivateKey | None:
    keys = await engine.tenant_keys(tenant)
    async with engine.store.reader() as tx:
        row = await tx.fetchone("SELECT sealed_private_key FROM lz_audit_signing_keys WHERE tenant = ?", (tenant,))
    if row is not None:
        raw = keys.open(bytes(row[0]), ref=_KEY_REF, version=0, purpose=_KEY_PURPOSE)
        return Ed25519PrivateKey.from_private_bytes(raw)
    if not create:
        return None
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sealed = keys.seal(raw, ref=_KEY_REF, version=0, purpose=_KEY_PURPOSE)
    async with engine.store.transaction() as tx:
        # Two processes may race to create it: the first one wins, both then use the stored key.
        await tx.execute(
            "INSERT INTO lz_audit_signing_keys (tenant, public_key, sealed_private_key, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant) DO NOTHING",
            (tenant, public, sealed, iso(engine.clock.now())),
        )
    return await _signing_key(engine, tenant, create=False)


async def public_key_pem(engine: Engine, tenant: str) -> str:
    """The tenant's checkpoint verification key (PEM, SubjectPublicKeyInfo), created on first use."""
    naming.tenant_name(tenant)
    key = await _signing_key(engine, tenant, create=True)
    assert key is not None
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class CheckpointResult(msgspec.Struct, frozen=True):
    tenant: str
    created: list[int]
    witnessed: int
    witness_error: str | None = None


async def checkpoint(engine: Engine, tenant: str, witness: Witness | None = None) -> CheckpointResult:
    """Sign the tenant's current chain head (unless already signed) and push every unwitnessed checkpoint."""
    naming.tenant_name(tenant)
    await engine.tenant_keys(tenant)  # NotFound for an unknown tenant
    async with engine.store.reader() as tx:
        head = await tx.fetchone("SELECT seq, position, hash FROM lz_chain_heads WHERE chain = ?", (tenant,))
        last = await tx.fetchone("SELECT MAX(seq) FROM lz_audit_checkpoints WHERE tenant = ?", (tenant,))
    created: list[int] = []
    if head is not None and (last is None or last[0] is None or int(last[0]) < int(head[0])):
        key = await _signing_key(engine, tenant, create=True)
        assert key is not None
        cp = Checkpoint(tenant, int(head[0]), int(head[1]), bytes(head[2]).hex(), iso(engine.clock.now()))
        signature = key.sign(cp.statement())
        async with engine.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO lz_audit_checkpoints (tenant, seq, position, hash, at, signature)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, seq) DO NOTHING",
                (tenant, cp.seq, cp.position, bytes(head[2]), cp.at, signature),
            )
        created.append(cp.seq)
    if witness is None:
        return CheckpointResult(tenant, created, 0)
    pending = await _stored_checkpoints(engine, tenant, unwitnessed=True)
    done = 0
    try:
        for c in pending:
            await witness.push(c)  # at-least-once: a crash before the UPDATE pushes it again, harmlessly
            async with engine.store.transaction() as tx:
                await tx.execute(
                    "UPDATE lz_audit_checkpoints SET witnessed_at = ? WHERE tenant = ? AND seq = ?",
                    (iso(engine.clock.now()), tenant, c.seq),
                )
            done += 1
    except WitnessError as exc:
        return CheckpointResult(tenant, created, done, str(exc))
    return CheckpointResult(tenant, created, done)


async def _stored_checkpoints(
    engine: Engine, tenant: str, *, unwitnessed: bool = False, after_seq: int = 0
) -> list[Checkpoint]:
    sql = "SELECT tenant, seq, position, hash, at, signature FROM lz_audit_checkpoints WHERE tenant = ? AND seq > ?"
    if unwitnessed:
        sql += " AND witnessed_at IS NULL"
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(sql + " ORDER BY seq", (tenant, after_seq))
    return [Checkpoint(t, int(s), int(p), bytes(h).hex(), a, bytes(sig).hex()) for t, s, p, h, a, sig in rows]


@dataclass(frozen=True)
class CheckpointCheck:
    count: int
    failures: list[FailureView]
    #: The highest checkpoint seq checked (``after_seq`` when there was none).
    last_seq: int


async def check_checkpoints(
    engine: Engine, tenant: str, witness: Witness | None, after_seq: int = 0
) -> CheckpointCheck:
    """Every stored and witnessed checkpoint after ``after_seq`` must carry a valid signature and match the chain."""
    failures: list[FailureView] = []
    stored = await _stored_checkpoints(engine, tenant, after_seq=after_seq)
    witnessed: list[Checkpoint] = []
    if witness is not None:
        try:
            witnessed = [cp for cp in await witness.fetch(tenant) if cp.seq > after_seq]
        except WitnessError as exc:
            failures.append(FailureView(tenant, 0, UNVERIFIABLE, str(exc)))
    if not stored and not witnessed:
        return CheckpointCheck(0, failures, after_seq)
    last_seq = max(c.seq for c in [*stored, *witnessed])
    key = await _signing_key(engine, tenant, create=False)
    if key is None:
        first = min(c.position for c in [*stored, *witnessed])
        failures.append(FailureView(tenant, first, "rewritten", "checkpoints exist but the signing key is gone"))
        return CheckpointCheck(0, failures, last_seq)
    public = key.public_key()
    by_seq: dict[int, Checkpoint] = {}
    for cp in [*stored, *witnessed]:
        try:
            public.verify(bytes.fromhex(cp.signature), cp.statement())
        except (InvalidSignature, ValueError):
            failures.append(FailureView(tenant, cp.position, "rewritten", f"checkpoint #{cp.seq} has a bad signature"))
            continue
        by_seq.setdefault(cp.seq, cp)
    stored_seqs = {c.seq for c in stored}
    for cp in witnessed:
        if cp.seq not in stored_seqs:
            failures.append(
                FailureView(
                    tenant, cp.position, "rewritten", f"witnessed checkpoint #{cp.seq} is missing from the database"
                )
            )
    async with engine.store.reader() as tx:
        for cp in sorted(by_seq.values(), key=lambda c: c.seq):
            row = await tx.fetchone(
                "SELECT stream, chain_seq, chain_hash FROM lz_events WHERE position = ?", (cp.position,)
            )
            if row is None or chain_of(str(row[0])) != tenant or row[1] is None or int(row[1]) != cp.seq:
                failures.append(
                    FailureView(
                        tenant, cp.position, "rewritten", f"record #{cp.seq} of checkpoint at {cp.at} is not there"
                    )
                )
            elif bytes(row[2]).hex() != cp.hash:
                failures.append(
                    FailureView(
                        tenant,
                        cp.position,
                        "rewritten",
                        f"the chain differs from the signed checkpoint #{cp.seq} ({cp.at})",
                    )
                )
    return CheckpointCheck(len(by_seq), failures, last_seq)


async def checkpoint_all(engine: Engine, witness: Witness | None) -> list[CheckpointResult]:
    """Checkpoint every tenant's chain head, pushing to the witness."""
    async with engine.store.reader() as tx:
        tenants = [str(r[0]) for r in await tx.fetchall("SELECT tenant FROM rm_tenants ORDER BY tenant")]
    return [await checkpoint(engine, t, witness) for t in tenants]


async def audit_pass(engine: Engine, witness: Witness | None) -> tuple[list[CheckpointResult], Verdict]:
    """The scheduler's step: checkpoint every tenant's chain head (pushing to the witness), then verify all."""
    results = await checkpoint_all(engine, witness)
    return results, await verify(engine, witness=witness)
