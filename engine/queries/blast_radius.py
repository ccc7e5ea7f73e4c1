"""What a rotation of one secret will touch: dependents and what they hold, live usage, incidents, risk."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.clock import parse_iso
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.saga.provider_access import open_provider, provider_config
from lockzero.providers.base import ProviderError


class ServiceExposure(msgspec.Struct, frozen=True):
    name: str
    environment: str
    delivery: str
    adopted_version: str | None
    last_seen_at: str | None


class ObservedUsage(msgspec.Struct, frozen=True):
    source: str
    detail: str
    at: str | None


class IncidentRef(msgspec.Struct, frozen=True):
    incident_id: str
    kind: str
    severity: str


class BlastRadius(msgspec.Struct, frozen=True):
    secret_id: str
    services: list[ServiceExposure]
    environments: list[str]
    downstream_systems: list[str]
    observed_usage: list[ObservedUsage]
    open_incidents: list[IncidentRef]
    risk: str
    recommended_action: str


def _system(secret: Secret, config: dict[str, object]) -> str:
    """Where the credential works, without any credential in it."""
    for key in ("url", "dsn", "endpoint_url", "create_url"):
        value = config.get(key)
        if isinstance(value, str) and value:
            parts = urlsplit(value)
            host = parts.hostname or "?"
            port = f":{parts.port}" if parts.port else ""
            return f"{secret.provider} at {parts.scheme}://{host}{port}"
    return secret.provider


def _risk(secret: Secret, incidents: list[IncidentRef], pending: int) -> tuple[str, str]:
    kinds = {i.kind for i in incidents}
    if secret.status == "revoked":
        return "low", "none: the secret is revoked; register a replacement if services still need one"
    if "leaked_credential" in kinds:
        return "critical", "rotate_secret now, then poll verify_remediation"
    if "usage_anomaly" in kinds or "rotation_failed" in kinds:
        return "high", "investigate the open incidents, then rotate_secret"
    if "overdue_rotation" in kinds:
        return "medium", "rotate_secret (overdue under its policy)"
    if pending:
        return "medium", "some dependents do not hold the current version; check them before rotating"
    if secret.environment.lower() in ("prod", "production") and secret.dependents:
        return "medium", "none needed; a rotation would touch the services listed"
    return "low", "none needed"


async def assess(engine: Engine, tenant: str, secret_id: str) -> BlastRadius:
    secret, _ = await engine.secrets.load(naming.secret_stream(tenant, naming.secret_id(secret_id)))
    if secret is None:
        raise NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")
    async with engine.store.reader() as tx:
        deps = await tx.fetchall(
            "SELECT d.service, d.environment, d.delivery, d.adopted_version,"
            " COALESCE(s.last_seen_at, d.last_seen_at) FROM rm_dependents d"
            " LEFT JOIN lz_dependent_seen s ON s.tenant = d.tenant AND s.dependent_id = d.dependent_id"
            " WHERE d.tenant = ? AND d.secret_id = ? ORDER BY d.service, d.environment",
            (tenant, secret_id),
        )
        incs = await tx.fetchall(
            "SELECT incident_id, kind, severity FROM rm_incidents"
            " WHERE tenant = ? AND secret_id = ? AND status <> 'resolved' ORDER BY opened_at",
            (tenant, secret_id),
        )
    services = [
        ServiceExposure(
            name, env, delivery, f"v{adopted}" if adopted else None, parse_iso(seen).isoformat() if seen else None
        )
        for name, env, delivery, adopted, seen in deps
    ]
    incidents = [IncidentRef(*row) for row in incs]
    usage: list[ObservedUsage] = []
    provider = await open_provider(engine, secret)
    # A live listing (CLIENT LIST, pg_stat_activity, PROCESSLIST) is an observation made now; a provider that
    # knows when the use happened (an access key's last use) says so itself.
    observed_at = engine.clock.now()
    try:
        for u in await provider.observed_usage():
            usage.append(ObservedUsage(u.source, u.detail, _iso(u.at or observed_at)))
    except ProviderError as exc:
        usage.append(ObservedUsage(secret.provider, f"usage unavailable: {exc}", _iso(observed_at)))
    finally:
        await provider.close()
    # The evidence of open usage anomalies: what was seen using a credential it should not have.
    for ref in incidents:
        if ref.kind == "usage_anomaly":
            for e in (await engine.load(naming.incident_stream(tenant, ref.incident_id)))[0]:
                if isinstance(e, ev.UsageAnomalyObserved):
                    version = f" v{e.version}" if e.version is not None else ""
                    what = f"{e.signal}{version} via {e.source}: {e.detail}"
                    usage.append(ObservedUsage("usage_anomaly", what, e.at.isoformat()))
    current = f"v{secret.current_version}" if secret.current_version else None
    pending = sum(1 for s in services if s.adopted_version != current)
    risk, action = _risk(secret, incidents, pending)
    return BlastRadius(
        secret_id=secret_id,
        services=services,
        environments=sorted({secret.environment, *(s.environment for s in services)}),
        downstream_systems=[_system(secret, await provider_config(engine, secret))],
        observed_usage=usage,
        open_incidents=incidents,
        risk=risk,
        recommended_action=action,
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
