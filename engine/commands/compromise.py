"""Marking versions compromised: their value was seen where it must not be."""

from __future__ import annotations

from collections.abc import Iterable

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.unit_of_work import Decision, change_secret


async def mark_compromised(
    engine: Engine,
    tenant: str,
    secret_id: str,
    versions: Iterable[int],
    *,
    incident_id: str | None,
    source: str,
    actor: ev.EventMeta,
) -> list[int]:
    """Record each version not already marked; returns the ones newly marked."""
    wanted = sorted(set(versions))

    def decide(secret: Secret | None) -> Decision[list[int]]:
        if secret is None:
            return Decision([])
        fresh = [n for n in wanted if (v := secret.version(n)) is not None and not v.compromised]
        marks = [
            ev.SecretVersionCompromised(
                at=engine.clock.now(),
                tenant=tenant,
                secret_id=secret_id,
                version=n,
                incident_id=incident_id,
                source=source[:200],
            )
            for n in fresh
        ]
        return Decision(fresh, marks)

    return await change_secret(engine, tenant, secret_id, actor, decide)
