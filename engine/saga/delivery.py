"""Delivering a version to the dependents that do not pull, and recording who adopted what."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.dependents import signing_ref, webhook_url
from lockzero.engine.commands.secrets import read_version_value
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Dependent, Secret
from lockzero.engine.security.crypto import CryptoError
from lockzero.providers.deliveries import DeliveryError, post_webhook, write_file

EventName = str  # secret.rotated | secret.rolled_back | secret.revoked


class DeliveryReport(msgspec.Struct, frozen=True):
    delivered: int
    failed: int


def payload(secret: Secret, version: int, value: str | None, event: EventName) -> dict[str, Any]:
    body: dict[str, Any] = {
        "secret_id": secret.secret_id,
        "version": f"v{version}",
        "version_arn": naming.version_arn(secret.tenant, secret.secret_id, version),
    }
    if value is not None:
        body["value"] = value
        v = secret.version(version)
        if v is not None and v.username:
            body["username"] = v.username
    body["event"] = event
    return body


async def record_adoption(
    engine: Engine, tenant: str, secret_id: str, dependent_id: str, version: int, via: ev.DeliveryKind
) -> None:
    event = ev.DependentAdopted(
        at=engine.clock.now(), tenant=tenant, secret_id=secret_id, dependent_id=dependent_id, version=version, via=via
    )
    await engine.append(naming.adoption_stream(tenant, secret_id), [event], SYSTEM)


async def adopted_versions(engine: Engine, tenant: str, secret_id: str) -> dict[str, int | None]:
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT dependent_id, adopted_version FROM rm_dependents WHERE tenant = ? AND secret_id = ?",
            (tenant, secret_id),
        )
    return {r[0]: r[1] for r in rows}


async def _signing_secret(engine: Engine, tenant: str, dependent_id: str) -> str:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT ciphertext FROM lz_sealed WHERE tenant = ? AND ref = ?", (tenant, signing_ref(dependent_id))
        )
    if row is None:
        raise DeliveryError(f"dependent {dependent_id} has no signing secret")
    keys = await engine.tenant_keys(tenant)
    return keys.open(bytes(row[0]), ref=signing_ref(dependent_id), version=0, purpose="signing").decode()


async def _deliver_one(engine: Engine, secret: Secret, dep: Dependent, version: int, body: bytes, adopt: bool) -> bool:
    try:
        if dep.delivery == "webhook":
            keys = await engine.tenant_keys(secret.tenant)
            try:
                url = webhook_url(keys, dep.dependent_id, dep.target, dep.target_sealed)
            except CryptoError:
                raise DeliveryError(f"the webhook URL of {dep.dependent_id} cannot be decrypted") from None
            assert url is not None
            signing = await _signing_secret(engine, secret.tenant, dep.dependent_id)
            await post_webhook(url, signing, body, outbound=engine.outbound)
        elif dep.delivery == "file" and adopt:
            assert dep.target is not None
            value = msgspec.json.decode(body).get("value")
            await asyncio.to_thread(write_file, dep.target, (value or "").encode())
        else:
            return False
    except DeliveryError as exc:
        failed = ev.DeliveryFailed(
            at=engine.clock.now(),
            tenant=secret.tenant,
            secret_id=secret.secret_id,
            dependent_id=dep.dependent_id,
            version=version,
            error=str(exc)[:300],
        )
        await engine.append(naming.adoption_stream(secret.tenant, secret.secret_id), [failed], SYSTEM)
        return False
    if adopt:
        await record_adoption(engine, secret.tenant, secret.secret_id, dep.dependent_id, version, dep.delivery)
    return True


async def deliver(engine: Engine, secret: Secret, version: int, event: EventName) -> DeliveryReport:
    """Push ``version`` to every webhook and file dependent (pull dependents fetch it themselves)."""
    revoked = event == "secret.revoked"
    # A revocation is an alert: webhooks hear of it; nothing is written to files and nothing is "adopted".
    pushed = [d for d in secret.dependents if d.delivery == "webhook" or (d.delivery == "file" and not revoked)]
    if not pushed:
        return DeliveryReport(0, 0)
    value: str | None = None
    if not revoked:
        raw = await read_version_value(engine, secret.tenant, secret.secret_id, version)
        value = raw.decode() if raw is not None else None
    body = msgspec.json.encode(payload(secret, version, value, event))
    results = await asyncio.gather(*(_deliver_one(engine, secret, d, version, body, not revoked) for d in pushed))
    ok = sum(results)
    return DeliveryReport(ok, len(results) - ok)
