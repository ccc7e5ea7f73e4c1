"""Rotation policy per secret: max age, approvals, agent permission, grace and adoption deadline."""

from __future__ import annotations

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.security.crypto import TenantKeys
from lockzero.engine.security.outbound import OutboundRefused, redact_url
from lockzero.eventstore import ConcurrencyError

_UNSET = object()


MAX_AGE_LIMIT_S = 3650 * 86400
GRACE_LIMIT_S = 365 * 86400
ADOPTION_LIMIT_S = 86400


def checked_policy(policy: ev.Policy) -> ev.Policy:
    if policy.max_age_s is not None and not 60 <= policy.max_age_s <= MAX_AGE_LIMIT_S:
        raise InvalidInput("max age must be from 1m to 3650d")
    if policy.grace_s > GRACE_LIMIT_S:
        raise InvalidInput("grace must be at most 365d")
    if policy.adoption_deadline_s > ADOPTION_LIMIT_S:
        raise InvalidInput("adoption deadline must be at most 24h")
    if not 0 <= policy.required_approvals <= 10:
        raise InvalidInput("approvals must be from 0 to 10")
    if policy.adoption_deadline_s < 1 or policy.grace_s < 0:
        raise InvalidInput("adoption deadline must be positive and grace must not be negative")
    for url in policy.notify if not policy.notify_sealed else ():
        if not url.startswith(("http://", "https://")):
            raise InvalidInput("notify targets must be http(s) URLs")
    return policy


def _notify_ref(secret_id: str) -> str:
    return f"secret/{secret_id}/notify"


_NOTIFY_PURPOSE = "notify-url"


def notify_urls(keys: TenantKeys, secret_id: str, policy: ev.Policy) -> tuple[str, ...]:
    """The policy's notify URLs in clear: sealed since URLs are, as they were stored in older events."""
    if not policy.notify_sealed:
        return policy.notify
    return tuple(keys.open_text(s, ref=_notify_ref(secret_id), purpose=_NOTIFY_PURPOSE) for s in policy.notify_sealed)


def _sealed(keys: TenantKeys, secret_id: str, policy: ev.Policy) -> ev.Policy:
    """The stored form: URLs sealed, and only their redacted form readable."""
    if not policy.notify:
        return msgspec.structs.replace(policy, notify_sealed=())
    return msgspec.structs.replace(
        policy,
        notify=tuple(redact_url(u) for u in policy.notify),
        notify_sealed=tuple(
            keys.seal_text(u, ref=_notify_ref(secret_id), purpose=_NOTIFY_PURPOSE) for u in policy.notify
        ),
    )


async def update_policy(
    engine: Engine, tenant: str, secret_id: str, actor: ev.EventMeta, **changes: object
) -> ev.Policy:
    """Apply the given Policy fields (others unchanged) and return the new policy as stored (notify URLs
    redacted). ``notify`` takes the URLs in clear; each is checked as an outbound target."""
    stream = naming.secret_stream(tenant, naming.secret_id(secret_id))
    events, version = await engine.load(stream)
    secret = fold_secret(events)
    if secret is None:
        raise NotFound(f"no secret {secret_id!r} in tenant {tenant!r}")
    keys = await engine.tenant_keys(tenant)
    current = msgspec.structs.replace(
        secret.policy, notify=notify_urls(keys, secret_id, secret.policy), notify_sealed=()
    )
    changes.pop("notify_sealed", None)
    policy = checked_policy(msgspec.structs.replace(current, **changes))
    if policy.notify != current.notify:
        for url in policy.notify:
            try:
                await engine.outbound.check_url(url, "notify URL")
            except OutboundRefused as exc:
                raise InvalidInput(str(exc)) from None
    if policy == current:
        return _sealed(keys, secret_id, current) if not secret.policy.notify_sealed else secret.policy
    policy = _sealed(keys, secret_id, policy)
    event = ev.SecretPolicyChanged(at=engine.clock.now(), tenant=tenant, secret_id=secret_id, policy=policy)
    try:
        await engine.append(stream, [event], actor, version)
    except ConcurrencyError:
        raise Conflict(f"secret {secret_id!r} changed meanwhile; try again") from None
    return policy
