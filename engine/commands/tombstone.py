"""Deleting a secret: a tombstone, not an erasure.

Every stored value and the sealed provider config (and the dependents' sealed signing secrets and URLs) are
destroyed in the transaction that records ``SecretDeleted``, so nothing can decrypt them again
(crypto-shredding); the events stay, so history, incidents and the audit trail still tell what happened. The
id is free again: ``secret add`` with the same id starts a new life on the same stream. Nothing is done at
the provider: deleting forgets a credential, it does not stop it working (revoke first if it leaked).
"""

from __future__ import annotations

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.errors import Conflict, NotFound
from lockzero.engine.security.secret_config import config_ref
from lockzero.eventstore import ConcurrencyError, Transaction


async def delete_secret(engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta, reason: str) -> list[int]:
    """Returns the version numbers whose values were destroyed."""
    stream = naming.secret_stream(tenant, naming.secret_id(secret_id))
    secret, version = await engine.secrets.load(stream)
    if secret is None:
        raise NotFound(f"no secret {secret_id!r}")
    if secret.in_flight is not None:
        raise Conflict(
            f"rotation {secret.in_flight.rotation_id} of {secret_id!r} is {secret.in_flight.status}; wait for it"
            " to end (or revoke the secret) before deleting"
        )
    dependent_ids = [d.dependent_id for d in secret.dependents]

    async def shred(tx: Transaction) -> None:
        await tx.write("DELETE FROM lz_secret_versions WHERE tenant = ? AND secret_id = ?", (tenant, secret_id))
        await tx.write("DELETE FROM lz_sealed WHERE tenant = ? AND ref = ?", (tenant, config_ref(secret_id)))
        for dependent_id in dependent_ids:
            prefix = f"dependent/{dependent_id}/"
            await tx.write(
                "DELETE FROM lz_sealed WHERE tenant = ? AND substr(ref, 1, ?) = ?", (tenant, len(prefix), prefix)
            )

    tombstone = ev.SecretDeleted(at=engine.clock.now(), tenant=tenant, secret_id=secret_id, reason=reason[:500])
    try:
        await engine.append(stream, [tombstone], actor, version, shred)
    except ConcurrencyError:
        raise Conflict(f"secret {secret_id!r} changed while deleting it; retry") from None
    return [v.number for v in secret.versions]
