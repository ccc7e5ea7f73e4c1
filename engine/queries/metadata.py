"""Per-secret reads for agents: metadata and the rotation policy, from the read models."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.durations import format_duration
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.security.outbound import redact_url
from lockzero.eventstore import Dialect


class PolicyView(msgspec.Struct, frozen=True):
    max_age_days: float | None
    required_approvals: int
    allow_agent_rotation: bool
    auto_rotate: bool
    grace_period_days: float
    adoption_deadline_seconds: int
    notification_rules: list[str]


class SecretMetadata(msgspec.Struct, frozen=True):
    secret_id: str
    provider: str
    environment: str
    labels: dict[str, str]
    status: str
    current_version: str | None
    version_arn: str | None
    created_at: str
    last_rotated_at: str | None
    rotation_age_days: int
    rotation_schedule: str | None
    rotation_policy: PolicyView
    dependents_count: int
    open_incident_ids: list[str]
    in_flight_rotation_id: str | None
    #: Versions whose value was seen in a leak: rollback_secret refuses them without force.
    compromised_versions: list[str] = []


class PolicyCheck(msgspec.Struct, frozen=True):
    secret_id: str
    max_age_days: float | None
    required_approvals: int
    notification_rules: list[str]
    allow_agent_rotation: bool
    auto_rotate: bool
    rotation_age_days: int
    overdue: bool
    next_due_at: str | None


_decode_policy = msgspec.json.Decoder(ev.Policy).decode


def _days(seconds: int | None) -> float | None:
    return None if seconds is None else round(seconds / 86400, 4)


def policy_view(policy: ev.Policy) -> PolicyView:
    return PolicyView(
        max_age_days=_days(policy.max_age_s),
        required_approvals=policy.required_approvals,
        allow_agent_rotation=policy.allow_agent_rotation,
        auto_rotate=policy.auto_rotate,
        grace_period_days=_days(policy.grace_s) or 0.0,
        adoption_deadline_seconds=policy.adoption_deadline_s,
        notification_rules=[redact_url(u) for u in policy.notify],
    )


_COLUMNS = (
    "secret_id, provider, environment, labels, status, current_version, created_at, last_rotated_at, due_at, policy,"
    " dependents_count"
)
_WHERE_ONE = "WHERE tenant = ? AND secret_id = ?"
_METADATA_QUERY = f"SELECT {_COLUMNS} FROM rm_secrets {_WHERE_ONE}"
# A secret's links, each read as a JSON array: (column, table, further condition, order).
_LINKS = (
    ("incident_id", "rm_incidents", " AND status <> 'resolved'", "opened_at"),
    ("rotation_id", "rm_rotations", " AND finished_at IS NULL", "requested_at"),
    ("version", "rm_compromised_versions", "", "version"),
)


def _json_list(dialect: Dialect, column: str, table: str, condition: str, order: str) -> str:
    # Each dialect spells the ordered JSON aggregate its own way.
    rows = f"FROM {table} {_WHERE_ONE}{condition}"
    if dialect == "postgresql":
        return f"(SELECT json_agg({column} ORDER BY {order})::text {rows})"
    return f"(SELECT json_group_array({column}) FROM (SELECT {column} {rows} ORDER BY {order}))"


# get_secret_metadata in one round trip: the secret's row with its links.
def _with_links(dialect: Dialect) -> str:
    links = ", ".join(_json_list(dialect, *link) for link in _LINKS)
    return f"SELECT {_COLUMNS}, {links} FROM rm_secrets {_WHERE_ONE}"


_WITH_LINKS: dict[Dialect, str] = {dialect: _with_links(dialect) for dialect in ("postgresql", "sqlite")}
_decode_ids = msgspec.json.Decoder(list[str]).decode
_decode_versions = msgspec.json.Decoder(list[int]).decode


def _not_found(secret_id: str) -> NotFound:
    # Same words whether the id is unknown or another tenant's.
    return NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")


async def _row(engine: Engine, tenant: str, secret_id: str) -> tuple[Any, ...]:
    naming.secret_id(secret_id)
    async with engine.store.reader() as tx:
        row = await tx.fetchone(_METADATA_QUERY, (tenant, secret_id))
    if row is None:
        raise _not_found(secret_id)
    return row


def _age_days(now: datetime, created: str, rotated: str | None) -> int:
    return max(0, (now - parse_iso(rotated or created)).days)


async def secret_metadata(engine: Engine, tenant: str, secret_id: str) -> SecretMetadata:
    naming.secret_id(secret_id)
    async with engine.store.reader() as tx:
        row = await tx.fetchone(_WITH_LINKS[tx.dialect], (tenant, secret_id) * (len(_LINKS) + 1))
    if row is None:
        raise _not_found(secret_id)
    sid, provider, env, labels, status, current, created, rotated, _due, policy_json, deps = row[:11]
    incidents, in_flight = (_decode_ids(v) if v else [] for v in row[11:13])
    compromised = _decode_versions(row[13]) if row[13] else []
    policy = _decode_policy(policy_json)
    now = engine.clock.now()
    return SecretMetadata(
        secret_id=sid,
        provider=provider,
        environment=env,
        labels=msgspec.json.decode(labels),
        status=status,
        current_version=f"v{current}" if current else None,
        version_arn=naming.version_arn(tenant, sid, current) if current else None,
        created_at=parse_iso(created).isoformat(),
        last_rotated_at=parse_iso(rotated).isoformat() if rotated else None,
        rotation_age_days=_age_days(now, created, rotated),
        rotation_schedule=f"every {format_duration(policy.max_age_s)}" if policy.max_age_s else None,
        rotation_policy=policy_view(policy),
        dependents_count=int(deps),
        open_incident_ids=incidents,
        in_flight_rotation_id=in_flight[-1] if in_flight else None,
        compromised_versions=[f"v{n}" for n in compromised],
    )


async def check_policy(engine: Engine, tenant: str, secret_id: str) -> PolicyCheck:
    sid, _, _, _, _, _, created, rotated, due, policy_json, _ = await _row(engine, tenant, secret_id)
    policy = _decode_policy(policy_json)
    now = engine.clock.now()
    if policy.max_age_s is not None:
        due_at = parse_iso(due) if due else parse_iso(rotated or created) + timedelta(seconds=policy.max_age_s)
    else:
        due_at = None
    return PolicyCheck(
        secret_id=sid,
        max_age_days=_days(policy.max_age_s),
        required_approvals=policy.required_approvals,
        notification_rules=[redact_url(u) for u in policy.notify],
        allow_agent_rotation=policy.allow_agent_rotation,
        auto_rotate=policy.auto_rotate,
        rotation_age_days=_age_days(now, created, rotated),
        overdue=due_at is not None and iso(due_at) < iso(now),
        next_due_at=due_at.isoformat() if due_at else None,
    )
