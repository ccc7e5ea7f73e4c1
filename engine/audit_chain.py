"""Tamper evidence for events and audit records: verify each tenant's hash chain (eventstore/chain.py).

Verification reads only; it never repairs. A failure names the first bad position of each broken chain.
"""

from __future__ import annotations

import msgspec

from engine import naming
from engine.app import Engine
from eventstore.chain import SYSTEM_CHAIN, VerifyReport, verify_chain


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


async def verify(engine: Engine, tenant: str | None = None, since: int = 0) -> Verdict:
    """Walk the chain of ``tenant`` (every chain when None) from position ``since``."""
    tenant = _check_tenant(tenant)
    if since < 0:
        from engine.errors import InvalidInput

        raise InvalidInput("--since must be a position >= 0")
    async with engine.store.reader() as tx:
        report = await verify_chain(tx, tenant=tenant, since=since)
    return verdict(report)
