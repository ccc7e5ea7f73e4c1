"""Notifications to the policy's `notify` URLs: signed JSON (or Slack-style `{"text": …}` for Slack
incoming webhooks), sent in the background with retries, recorded as events. A failing receiver
never blocks a rotation."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.policies import notify_urls
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.security.crypto import random_secret
from lockzero.engine.security.outbound import redact_url
from lockzero.eventstore import Transaction
from lockzero.providers.deliveries import DeliveryError, post_webhook

log = logging.getLogger("lockzero.notify")
_inflight: set[asyncio.Task[None]] = set()


def notify_ref(secret_id: str, url: str) -> str:
    return f"notify/{secret_id}/{hashlib.sha256(url.encode()).hexdigest()[:16]}"


async def ensure_signing_secrets(engine: Engine, tenant: str, secret_id: str, urls: tuple[str, ...]) -> dict[str, str]:
    """A signing secret per notify URL (in clear); returns the ones created now (to print once), keyed by the
    redacted URL."""
    keys = await engine.tenant_keys(tenant)
    created: dict[str, str] = {}
    async with engine.store.transaction() as tx:
        for url in urls:
            ref = notify_ref(secret_id, url)
            if await tx.fetchone("SELECT 1 FROM lz_sealed WHERE tenant = ? AND ref = ?", (tenant, ref)):
                continue
            value = "whsec_" + random_secret(40)
            await _store(tx, tenant, ref, keys.seal(value.encode(), ref=ref, version=0, purpose="signing"), engine)
            created[redact_url(url)] = value
    return created


async def _store(tx: Transaction, tenant: str, ref: str, sealed: bytes, engine: Engine) -> None:
    await tx.write(
        "INSERT INTO lz_sealed (tenant, ref, ciphertext, created_at) VALUES (?, ?, ?, ?)",
        (tenant, ref, sealed, iso(engine.clock.now())),
    )


async def _signing_secret(engine: Engine, tenant: str, secret_id: str, url: str) -> str:
    ref = notify_ref(secret_id, url)
    async with engine.store.reader() as tx:
        row = await tx.fetchone("SELECT ciphertext FROM lz_sealed WHERE tenant = ? AND ref = ?", (tenant, ref))
    if row is None:
        raise NotFound("no signing secret for this notify URL")
    keys = await engine.tenant_keys(tenant)
    return keys.open(bytes(row[0]), ref=ref, version=0, purpose="signing").decode()


def _body(url: str, topic: str, summary: str, data: dict[str, Any]) -> bytes:
    if urlsplit(url).hostname == "hooks.slack.com":
        return msgspec.json.encode({"text": f"[lockzero] {summary}"})
    return msgspec.json.encode({"topic": topic, "summary": summary, **data})


async def notify(engine: Engine, tenant: str, secret_id: str, topic: str, summary: str, data: dict[str, Any]) -> None:
    """Start sending; returns at once. Nothing secret goes in ``data``."""
    async with engine.store.reader() as tx:
        row = await tx.fetchone("SELECT policy FROM rm_secrets WHERE tenant = ? AND secret_id = ?", (tenant, secret_id))
    if row is None:
        return
    policy = msgspec.json.decode(row[0], type=ev.Policy)
    urls = notify_urls(await engine.tenant_keys(tenant), secret_id, policy) if policy.notify else ()
    for url in urls:
        task = asyncio.create_task(_send(engine, tenant, secret_id, url, topic, _body(url, topic, summary, data)))
        _inflight.add(task)
        task.add_done_callback(_inflight.discard)


async def _send(engine: Engine, tenant: str, secret_id: str, url: str, topic: str, body: bytes) -> None:
    record: ev.Event
    try:
        signing = await _signing_secret(engine, tenant, secret_id, url)
        status = await post_webhook(url, signing, body, outbound=engine.outbound, attempts=4)
        record = ev.NotificationSent(
            at=engine.clock.now(), tenant=tenant, secret_id=secret_id, url=redact_url(url), topic=topic, status=status
        )
    except (DeliveryError, NotFound) as exc:
        record = ev.NotificationFailed(
            at=engine.clock.now(),
            tenant=tenant,
            secret_id=secret_id,
            url=redact_url(url),
            topic=topic,
            error=str(exc)[:300],
        )
    try:
        await engine.append(naming.adoption_stream(tenant, secret_id), [record], SYSTEM)
    except Exception as exc:  # recording must not crash a background task silently
        log.error("could not record a notification: %s", type(exc).__name__)


async def drain() -> None:
    """Wait for notifications in flight (shutdown, tests)."""
    while _inflight:
        await asyncio.gather(*list(_inflight), return_exceptions=True)
