"""POST /api/v1/alerts: alerts from outside (Alertmanager webhooks, the generic form), Bearer lz_int_….

Parse, authorize, call the engine, encode: the rules live in engine/commands/intake.py. The payload is never logged
(it is the sender's text); the audit keeps counts and outcomes only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.response import Response

from lockzero.api.auth import bearer_token, unauthorized
from lockzero.engine.app import Engine
from lockzero.engine.audit.batcher import AuditBatcher
from lockzero.engine.audit.flood import AuditFloodGuard
from lockzero.engine.audit.records import make_record
from lockzero.engine.commands.intake import authenticate_intake, ingest, parse_alerts
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import InvalidInput
from lockzero.eventstore import StoreUnavailable

log = logging.getLogger("lockzero.api")

METHOD = "alert_intake"
#: Alerts (not requests) per intake token: a steady 2 a second, bursts of up to 200.
ALERTS_PER_S = 2.0
ALERT_BURST = 200.0
MAX_BODY_BYTES = 512 * 1024


@dataclass
class _Bucket:
    tokens: float
    updated: float


class AlertBudget:
    """Token buckets per intake token that charge one token per alert, so one request of 100 alerts costs
    what 100 requests of one do. A refused request takes nothing and opens nothing."""

    def __init__(self, rate_per_s: float = ALERTS_PER_S, burst: float = ALERT_BURST) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: int) -> int | None:
        """None when allowed (and charged), else milliseconds until ``cost`` alerts would be."""
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if cost > self.burst:
            return int(cost / self.rate * 1000)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return None
        return max(1, int((cost - bucket.tokens) / self.rate * 1000))


async def alerts_endpoint(
    engine: Engine,
    request: Request[Any, Any, Any],
    queue: SagaQueue,
    audit: AuditBatcher,
    guard: AuditFloodGuard,
    budget: AlertBudget,
) -> Response[Any]:
    source = request.client.host if request.client and request.client.host else "unknown"
    token = bearer_token(request)
    try:
        intake = await authenticate_intake(engine, token) if token is not None else None
    except StoreUnavailable:
        return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
    if intake is None:
        await _refused(guard, None, None, "denied", "invalid_token", source)
        return unauthorized("send Authorization: Bearer lz_int_… (create one with `lockzero intake create`)")
    actor = ev.EventMeta(actor_id=intake.intake_id, actor_type="service")
    wait = budget.take(intake.intake_id, 1)  # before any parsing: a flood costs no store reads
    if wait is None:
        try:
            alerts = await parse_alerts(engine, intake.tenant, await request.body())
        except InvalidInput as exc:
            await _refused(guard, intake.tenant, actor, "invalid", "invalid_alert", source)
            return Response({"error": "invalid_alert", "error_description": exc.message}, status_code=422)
        except StoreUnavailable:
            return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
        wait = budget.take(intake.intake_id, len(alerts) - 1) if len(alerts) > 1 else None
    if wait is not None:
        await _refused(guard, intake.tenant, actor, "denied", "rate_limited", source)
        return Response(
            {
                "error": "rate_limited",
                "error_description": f"too many alerts from this intake token; retry in {wait} ms",
                "retry_after_ms": wait,
            },
            status_code=429,
            headers={"Retry-After": str(max(1, (wait + 999) // 1000))},
        )
    try:
        result = await ingest(engine, intake, alerts, queue)
    except StoreUnavailable:
        return Response({"error": "unavailable", "error_description": "retry later"}, status_code=503)
    detail = (
        f"{result.accepted} alert(s) from {source}: {result.opened} opened, {result.joined} joined,"
        f" {result.duplicates} duplicate, {result.ignored} ignored"
    )
    try:
        await audit.record(make_record(engine, intake.tenant, actor, METHOD, "ok", detail=detail), actor)
    except Exception as exc:  # the alerts are in; the log says the audit missed the call
        log.error("audit of an alert intake failed (%s)", type(exc).__name__)
    return Response(result, status_code=202)


async def _refused(
    guard: AuditFloodGuard, tenant: str | None, actor: ev.EventMeta | None, outcome: str, reason: str, source: str
) -> None:
    try:
        await guard.refused(tenant, actor, METHOD, outcome, reason=reason, source=source)
    except Exception as exc:
        log.error("audit of a refused alert intake failed (%s)", type(exc).__name__)
