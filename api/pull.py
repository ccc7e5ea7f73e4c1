"""GET /api/v1/secrets/{secret_id}/current for pull dependents (Bearer lz_svc_…).

Every plaintext read is audited in the tenant's log (actor: the dependent), durably before the value
leaves; refused reads too, bounded under a flood by the audit flood guard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from litestar import Request
from litestar.response import Response

from lockzero.api.auth import bearer_token, unauthorized
from lockzero.engine.app import Engine
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.flood import AuditFloodGuard
from lockzero.engine.audit.records import make_record
from lockzero.engine.commands.pull import current_for_dependent, identify, mark_seen
from lockzero.engine.detection.anomalies import PullWatch
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import NotFound
from lockzero.eventstore import StoreUnavailable

log = logging.getLogger("lockzero.api")

_SUFFIX = "/current"
METHOD = "pull_current"


async def pull_endpoint(
    engine: Engine,
    request: Request[Any, Any, Any],
    rest: str,
    audit: AuditBatcher,
    guard: AuditFloodGuard,
    watch: PullWatch | None = None,
) -> Response[Any]:
    path = rest.lstrip("/")
    if not path.endswith(_SUFFIX):
        return Response({"error": "not_found"}, status_code=404)
    secret_id = path[: -len(_SUFFIX)]
    source = request.client.host if request.client and request.client.host else "unknown"
    token = bearer_token(request)
    try:
        who = await identify(engine, token, with_current=True) if token is not None else None
    except StoreUnavailable:
        return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
    if token is None or who is None:
        await _refused(guard, None, None, "denied", "invalid_token", source)
        if token is not None and watch is not None:
            await _watch(watch.refused(token, source))
        if token is None:
            return unauthorized("send Authorization: Bearer lz_svc_… (printed by `lockzero dependent add`)")
        return unauthorized("the dependent token is unknown or was removed")
    tenant, dependent_id = who.tenant, who.dependent_id
    actor = ev.EventMeta(actor_id=dependent_id, actor_type="service")
    try:
        body = await current_for_dependent(engine, who, secret_id)
    except NotFound as exc:
        # The requested path is the caller's; the audit keeps the reason only.
        await _refused(guard, tenant, actor, "invalid", "not_found", source)
        return Response({"error": "not_found", "error_description": exc.message}, status_code=404)
    except StoreUnavailable:
        return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
    record = make_record(
        engine, tenant, actor, METHOD, "ok", secret_id=secret_id, detail=f"value of {body['version']} read"
    )
    # Two commits, at once rather than one after the other: the durable audit record and last_seen_at.
    audited, seen = await asyncio.gather(audit.record(record, actor), mark_seen(engine, who), return_exceptions=True)
    if isinstance(audited, BaseException):
        # Fail closed: a value read that cannot be audited is not handed out.
        log.error("audit write failed (%s); refusing the read", type(audited).__name__)
        return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
    if isinstance(seen, BaseException):
        # last_seen_at is telemetry: the read is audited, so it goes out; the log says the telemetry missed it.
        log.error("last-seen write failed (%s)", type(seen).__name__)
    if watch is not None:
        await _watch(watch.pulled(tenant, secret_id, dependent_id, source))
    # The value must not linger in caches between the service and us.
    return Response(body, headers={"Cache-Control": "no-store"})


async def _watch(step: Awaitable[None]) -> None:
    # Anomaly bookkeeping never changes the answer to a pull: a failure there is logged and the pull goes on.
    try:
        await step
    except Exception as exc:
        log.error("usage-anomaly check of a pull failed (%s)", type(exc).__name__)


async def _refused(
    guard: AuditFloodGuard, tenant: str | None, actor: ev.EventMeta | None, outcome: str, reason: str, source: str
) -> None:
    try:
        await guard.refused(tenant, actor, METHOD, outcome, reason=reason, source=source)
    except Exception as exc:  # refused either way; the log says the audit missed it
        log.error("audit of a refused read failed (%s)", type(exc).__name__)
