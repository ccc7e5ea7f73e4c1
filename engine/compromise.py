"""Marking versions compromised: their value was seen where it must not be."""

from __future__ import annotations

from collections.abc import Iterable

from engine import events as ev
from engine import naming
from engine.aggregates.secret import fold_secret
from engine.app import Engine
from engine.errors import Conflict
from eventstore import ConcurrencyError


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
    """Record each version not already marked; returns the ones newly marked. A saga may append to the same
    stream meanwhile: the mark is simply folded again and retried (it commutes with every saga event)."""
    wanted = sorted(set(versions))
    stream = naming.secret_stream(tenant, secret_id)
    for _ in range(20):
        events, metas, version = await engine.load_with_meta(stream)
        secret = fold_secret(events, metas)
        if secret is None:
            return []
        fresh = [n for n in wanted if (v := secret.version(n)) is not None and not v.compromised]
        if not fresh:
            return []
        marks: list[ev.Event] = [
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
        try:
            await engine.append(stream, marks, actor, version)
        except ConcurrencyError:
            continue
        return fresh
    raise Conflict(f"secret {secret_id!r} is changing too fast to mark versions compromised; retry")
