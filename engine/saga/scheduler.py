"""The periodic pass: overdue secrets get an incident (and a rotation when policy says auto-rotate),
and retired versions whose grace period ended are retired for good.

Time comes from engine.clock, so tests move it instead of waiting.
"""

from __future__ import annotations

import hashlib
import os

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.audit import chain as audit_chain
from lockzero.engine.commands.incidents import open_incident
from lockzero.engine.commands.rotations import SagaQueue, rotate
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import LockzeroError
from lockzero.engine.saga.provider_access import open_with
from lockzero.eventstore import ConcurrencyError
from lockzero.providers.base import ProviderError

SCHEDULER = ev.EventMeta(actor_id="lockzero:scheduler", actor_type="system")
#: Where signed checkpoints go (file:/path, https://…, s3://bucket/prefix); unset keeps them in the database only.
WITNESS_ENV = "LOCKZERO_AUDIT_WITNESS"


class PassReport(msgspec.Struct):
    overdue_incidents: list[str] = msgspec.field(default_factory=list)
    auto_rotations: list[str] = msgspec.field(default_factory=list)
    expired_versions: list[str] = msgspec.field(default_factory=list)
    audit_incidents: list[str] = msgspec.field(default_factory=list)


async def run_pass(engine: Engine, queue: SagaQueue) -> PassReport:
    report = PassReport()
    await _overdue(engine, queue, report)
    await _grace_ends(engine, report)
    await _audit_chain(engine, report)
    return report


async def _audit_chain(engine: Engine, report: PassReport) -> None:
    """Checkpoint each tenant's chain (to LOCKZERO_AUDIT_WITNESS when set) and verify every chain; a broken
    chain opens a critical incident in its tenant, once per first bad record (the id is derived from it)."""
    _, verdict = await audit_chain.audit_pass(engine, audit_chain.witness_from_url(os.environ.get(WITNESS_ENV)))
    async with engine.store.reader() as tx:
        tenants = {str(r[0]) for r in await tx.fetchall("SELECT tenant FROM rm_tenants")}
    seen: set[str] = set()
    for f in verdict.failures:
        if f.tenant not in tenants or f.tenant in seen:
            continue  # e.g. the _system chain: no tenant to hold the incident; `audit verify` still names it
        seen.add(f.tenant)
        digest = hashlib.sha256(f"{f.tenant}:{f.position}:{f.kind}".encode()).hexdigest()[:16]
        incident_id = await open_incident(
            engine,
            f.tenant,
            SCHEDULER,
            kind="policy_violation",
            severity="critical",
            secret_id=None,
            summary=f"audit chain broken at position {f.position}: {f.kind} ({f.detail}); run `lockzero audit verify`",
            incident_id=f"inc_audit_{digest}",
        )
        report.audit_incidents.append(incident_id)


async def _overdue(engine: Engine, queue: SagaQueue, report: PassReport) -> None:
    now = iso(engine.clock.now())
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT s.tenant, s.secret_id, s.policy FROM rm_secrets s"
            " WHERE s.status = 'active' AND s.due_at IS NOT NULL AND s.due_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM rm_incidents i WHERE i.tenant = s.tenant AND i.secret_id = s.secret_id"
            " AND i.kind = 'overdue_rotation' AND i.status <> 'resolved') LIMIT 500",
            (now,),
        )
    for tenant, secret_id, policy_json in rows:
        policy = msgspec.json.decode(policy_json, type=ev.Policy)
        incident_id = await open_incident(
            engine,
            tenant,
            SCHEDULER,
            kind="overdue_rotation",
            severity="medium",
            secret_id=secret_id,
            summary=f"{secret_id} is older than its max age; rotate it"
            + (" (auto-rotation started)" if policy.auto_rotate else ""),
        )
        report.overdue_incidents.append(incident_id)
        if policy.auto_rotate:
            try:
                started = await rotate(engine, queue, tenant, secret_id, SCHEDULER, "overdue under its rotation policy")
            except LockzeroError:
                continue  # e.g. revoked meanwhile; the incident stays open for a human
            report.auto_rotations.append(started.rotation_id)


async def _grace_ends(engine: Engine, report: PassReport) -> None:
    now = iso(engine.clock.now())
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT tenant, secret_id, version FROM rm_retired_versions WHERE restorable_until < ? LIMIT 500", (now,)
        )
    for tenant, secret_id, version in rows:
        stream = naming.secret_stream(tenant, secret_id)
        secret, stream_version = await engine.secrets.load(stream)
        v = secret.version(version) if secret else None
        if secret is None or v is None or v.status != "retired" or secret.in_flight is not None:
            continue  # a rollback may be restoring it right now; try again next pass
        provider, creds = await open_with(engine, secret, (version,))
        try:
            cred = creds.get(version)
            if cred is not None:
                # Retire already stopped it working; this is the provider's last word (e.g. delete a key).
                await provider.discard(cred)
        except ProviderError:
            continue
        finally:
            await provider.close()
        expired = ev.SecretVersionExpired(at=engine.clock.now(), tenant=tenant, secret_id=secret_id, version=version)
        try:
            await engine.append(stream, [expired], SCHEDULER, stream_version)
        except ConcurrencyError:
            continue
        report.expired_versions.append(f"{secret_id}:v{version}")
