"""Dependents: the services that consume a secret, and how each receives new versions."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.security.crypto import SERVICE_TOKEN_PREFIX, TenantKeys, new_id, new_token, random_secret
from lockzero.engine.security.outbound import OutboundRefused, redact_url
from lockzero.eventstore import ConcurrencyError, Transaction

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


class Delivery(msgspec.Struct, frozen=True):
    kind: Literal["pull", "file", "webhook"]
    target: str | None = None


class CreatedDependent(msgspec.Struct, frozen=True, omit_defaults=True):
    dependent_id: str
    secret_id: str
    service: str
    environment: str
    delivery: str
    #: File path, or the webhook URL redacted (it is stored sealed and never shown again).
    target: str | None = None
    #: lz_svc_ token for pull dependents; shown once.
    token: str | None = None
    #: HMAC signing secret for webhook dependents; shown once.
    signing_secret: str | None = None


def parse_delivery(spec: str) -> Delivery:
    """`pull`, `file:/abs/path` or `webhook:https://…`."""
    if spec == "pull":
        return Delivery("pull")
    kind, sep, target = spec.partition(":")
    if kind == "file" and sep:
        if not os.path.isabs(target) or "\x00" in target:
            raise InvalidInput("file delivery needs an absolute path: file:/etc/app/secret")
        return Delivery("file", target)
    if kind == "webhook" and sep:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput("webhook delivery needs an http(s) URL: webhook:https://svc.example/hooks/lockzero")
        return Delivery("webhook", target)
    raise InvalidInput("delivery must be pull, file:PATH or webhook:URL")


def signing_ref(dependent_id: str) -> str:
    return f"dependent/{dependent_id}/signing"


def _url_ref(dependent_id: str) -> str:
    return f"dependent/{dependent_id}/url"


_URL_PURPOSE = "webhook-url"


def webhook_url(keys: TenantKeys, dependent_id: str, target: str | None, target_sealed: str | None) -> str | None:
    """The URL to deliver to: sealed since URLs are, or ``target`` itself in events from before."""
    if target_sealed is not None:
        return keys.open_text(target_sealed, ref=_url_ref(dependent_id), purpose=_URL_PURPOSE)
    return target


async def add_dependent(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    *,
    secret_id: str,
    service: str,
    environment: str,
    delivery: str,
) -> CreatedDependent:
    naming.secret_id(secret_id)
    naming.service_name(service)
    naming.environment(environment)
    how = parse_delivery(delivery)
    if how.kind == "webhook" and how.target is not None:
        try:
            await engine.outbound.check_url(how.target, "webhook URL")
        except OutboundRefused as exc:
            raise InvalidInput(str(exc)) from None
    stream = naming.secret_stream(tenant, secret_id)
    events, version = await engine.load(stream)
    secret = fold_secret(events)
    if secret is None:
        raise NotFound(f"no secret {secret_id!r} in tenant {tenant!r}")
    if secret.status == "revoked":
        raise Conflict(f"secret {secret_id!r} is revoked; register a new one")
    if any(d.service == service and d.environment == environment for d in secret.dependents):
        raise Conflict(f"service {service!r} in {environment!r} already depends on {secret_id!r}")

    dependent_id = new_id("dep")
    token = new_token(SERVICE_TOKEN_PREFIX) if how.kind == "pull" else None
    signing = WEBHOOK_SECRET_PREFIX + random_secret(40) if how.kind == "webhook" else None
    now = engine.clock.now()
    side = None
    target, target_sealed = how.target, None
    if signing is not None:
        keys = await engine.tenant_keys(tenant)
        assert how.target is not None
        target = redact_url(how.target)
        target_sealed = keys.seal_text(how.target, ref=_url_ref(dependent_id), purpose=_URL_PURPOSE)
        sealed = keys.seal(signing.encode(), ref=signing_ref(dependent_id), version=0, purpose="signing")

        async def store_signing_secret(tx: Transaction) -> None:
            await tx.write(
                "INSERT INTO lz_sealed (tenant, ref, ciphertext, created_at) VALUES (?, ?, ?, ?)",
                (tenant, signing_ref(dependent_id), sealed, iso(now)),
            )

        side = store_signing_secret
    event = ev.DependentAdded(
        at=now,
        tenant=tenant,
        secret_id=secret_id,
        dependent_id=dependent_id,
        service=service,
        environment=environment,
        delivery=how.kind,
        target=target,
        token_hash=engine.tokens.hash(token) if token else None,
        target_sealed=target_sealed,
    )
    try:
        await engine.append(stream, [event], actor, version, side)
    except ConcurrencyError:
        raise Conflict(f"secret {secret_id!r} changed while adding the dependent; try again") from None
    return CreatedDependent(
        dependent_id, secret_id, service, environment, how.kind, target, token=token, signing_secret=signing
    )


class RemovedDependent(msgspec.Struct, frozen=True):
    dependent_id: str
    secret_id: str
    service: str
    environment: str
    delivery: str


async def remove_dependent(
    engine: Engine, tenant: str, actor: ev.EventMeta, *, secret_id: str, dependent: str
) -> RemovedDependent:
    """Detach a service by its dependent id or ``service@environment``. Its pull token stops working (a later
    pull with it is a usage anomaly) and its webhook signing secret is destroyed in the same transaction."""
    naming.secret_id(secret_id)
    stream = naming.secret_stream(tenant, secret_id)
    events, version = await engine.load(stream)
    secret = fold_secret(events)
    if secret is None:
        raise NotFound(f"no secret {secret_id!r} in tenant {tenant!r}")
    service, at, environment = dependent.partition("@")
    found = next(
        (
            d
            for d in secret.dependents
            if d.dependent_id == dependent or (at and d.service == service and d.environment == environment)
        ),
        None,
    )
    if found is None:
        raise NotFound(f"{secret_id!r} has no dependent {dependent!r} (`lockzero dependent list` shows them)")

    async def shred_signing_secret(tx: Transaction) -> None:
        await tx.write("DELETE FROM lz_sealed WHERE tenant = ? AND ref = ?", (tenant, signing_ref(found.dependent_id)))

    event = ev.DependentRemoved(
        at=engine.clock.now(), tenant=tenant, secret_id=secret_id, dependent_id=found.dependent_id
    )
    try:
        await engine.append(stream, [event], actor, version, shred_signing_secret)
    except ConcurrencyError:
        raise Conflict(f"secret {secret_id!r} changed while removing the dependent; try again") from None
    return RemovedDependent(found.dependent_id, secret_id, found.service, found.environment, found.delivery)


class DependentView(msgspec.Struct, frozen=True):
    dependent_id: str
    service: str
    environment: str
    delivery: str
    #: File path, or the webhook URL redacted; None for pull.
    target: str | None
    added_at: str
    #: The version it last took (pulled, received or confirmed); None until it adopts one.
    adopted_version: str | None
    last_seen_at: str | None


async def list_dependents(engine: Engine, tenant: str, secret_id: str) -> list[DependentView]:
    naming.secret_id(secret_id)
    async with engine.store.reader() as tx:
        if (
            await tx.fetchone("SELECT 1 FROM rm_secrets WHERE tenant = ? AND secret_id = ?", (tenant, secret_id))
            is None
        ):
            raise NotFound(f"no secret {secret_id!r} in tenant {tenant!r}")
        rows = await tx.fetchall(
            "SELECT dependent_id, service, environment, delivery, target, added_at, adopted_version, last_seen_at"
            " FROM rm_dependents WHERE tenant = ? AND secret_id = ? ORDER BY service, environment, dependent_id",
            (tenant, secret_id),
        )
    return [
        DependentView(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            None if r[4] is None else str(r[4]),
            str(r[5]),
            None if r[6] is None else f"v{r[6]}",
            None if r[7] is None else str(r[7]),
        )
        for r in rows
    ]
