"""Inline projections: read-model rows updated in the same transaction as the append.

Each handler is a pure function of the recorded event onto SQL rows, so replaying every event in
order onto empty tables gives exactly the rows that incremental updates gave.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import msgspec

from lockzero.engine.domain import events as ev
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.rotation_status import status_after
from lockzero.engine.readmodels.console_projections import CONSOLE_HANDLERS
from lockzero.engine.readmodels.schema import PROJECTION_TABLES
from lockzero.engine.security.outbound import redact_url
from lockzero.eventstore import RecordedEvent, Transaction

_json = msgspec.json.Encoder()


def _dumps(value: Any) -> str:
    return _json.encode(value).decode()


Handler = Callable[[Transaction, Any, RecordedEvent], Awaitable[None]]
E = TypeVar("E", bound=ev.Event)


#: The projections that are one statement each, its values taken from the event alone (registered below).
_STATEMENTS: dict[type[ev.Event], Handler] = {}


def _statement(event: type[E], sql: str, values: Callable[[E], tuple[Any, ...]]) -> None:
    async def handle(tx: Transaction, e: E, _: RecordedEvent) -> None:
        await tx.write(sql, values(e))

    _STATEMENTS[event] = handle


async def _tenant_created(tx: Transaction, e: ev.TenantCreated, _: RecordedEvent) -> None:
    await tx.write("INSERT INTO rm_tenants (tenant, created_at) VALUES (?, ?)", (e.tenant, iso(e.at)))


async def _key_created(tx: Transaction, e: ev.ApiKeyCreated, _: RecordedEvent) -> None:
    await tx.write(
        "INSERT INTO rm_api_keys (key_id, tenant, name, token_hash, read_only, scopes, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.key_id,
            e.tenant,
            e.name,
            e.token_hash,
            int(e.read_only),
            _dumps(e.scopes),
            iso(e.at),
            iso(e.expires_at) if e.expires_at else None,
        ),
    )


async def _secret_registered(tx: Transaction, e: ev.SecretRegistered, _: RecordedEvent) -> None:
    await tx.write(
        "INSERT INTO rm_secrets (tenant, secret_id, provider, environment, labels, status, current_version,"
        " latest_version, created_at, last_rotated_at, max_age_s, policy, dependents_count)"
        " VALUES (?, ?, ?, ?, ?, 'active', NULL, 0, ?, NULL, ?, ?, 0)",
        (
            e.tenant,
            e.secret_id,
            e.provider,
            e.environment,
            _dumps(e.labels),
            iso(e.at),
            e.policy.max_age_s,
            _dumps(e.policy),
        ),
    )
    await _write_labels(tx, e.tenant, e.secret_id, e.labels)
    await _refresh_due(tx, e.tenant, e.secret_id)


async def _refresh_due(tx: Transaction, tenant: str, secret_id: str) -> None:
    """due_at = (last rotation, else registration) + max age; stored so overdue filters stay in SQL."""
    row = await tx.fetchone(
        "SELECT max_age_s, COALESCE(last_rotated_at, created_at) FROM rm_secrets WHERE tenant = ? AND secret_id = ?",
        (tenant, secret_id),
    )
    if row is None:
        return
    max_age_s, since = row
    due = iso(parse_iso(since) + timedelta(seconds=max_age_s)) if max_age_s is not None else None
    await tx.write("UPDATE rm_secrets SET due_at = ? WHERE tenant = ? AND secret_id = ?", (due, tenant, secret_id))


async def _write_labels(tx: Transaction, tenant: str, secret_id: str, labels: dict[str, str]) -> None:
    await tx.write("DELETE FROM rm_secret_labels WHERE tenant = ? AND secret_id = ?", (tenant, secret_id))
    if labels:
        await tx.executemany(
            "INSERT INTO rm_secret_labels (tenant, secret_id, label_key, label_value) VALUES (?, ?, ?, ?)",
            [(tenant, secret_id, k, v) for k, v in sorted(labels.items())],
        )


async def _version_activated(tx: Transaction, e: ev.SecretVersionActivated, _: RecordedEvent) -> None:
    if e.previous_version is None:
        await tx.write(
            "UPDATE rm_secrets SET current_version = ? WHERE tenant = ? AND secret_id = ?",
            (e.version, e.tenant, e.secret_id),
        )
    else:
        await tx.write(
            "UPDATE rm_secrets SET current_version = ?, last_rotated_at = ? WHERE tenant = ? AND secret_id = ?",
            (e.version, iso(e.at), e.tenant, e.secret_id),
        )
        await _refresh_due(tx, e.tenant, e.secret_id)


async def _labels_changed(tx: Transaction, e: ev.SecretLabelsChanged, _: RecordedEvent) -> None:
    await tx.write(
        "UPDATE rm_secrets SET labels = ? WHERE tenant = ? AND secret_id = ?", (_dumps(e.labels), e.tenant, e.secret_id)
    )
    await _write_labels(tx, e.tenant, e.secret_id, e.labels)


async def _policy_changed(tx: Transaction, e: ev.SecretPolicyChanged, _: RecordedEvent) -> None:
    await tx.write(
        "UPDATE rm_secrets SET policy = ?, max_age_s = ? WHERE tenant = ? AND secret_id = ?",
        (_dumps(e.policy), e.policy.max_age_s, e.tenant, e.secret_id),
    )
    await _refresh_due(tx, e.tenant, e.secret_id)


async def _dependent_added(tx: Transaction, e: ev.DependentAdded, _: RecordedEvent) -> None:
    await tx.write(
        "INSERT INTO rm_dependents (tenant, dependent_id, secret_id, service, environment, delivery, target,"
        " token_hash, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.tenant,
            e.dependent_id,
            e.secret_id,
            e.service,
            e.environment,
            e.delivery,
            # A webhook URL may carry a token: the read model keeps only its redacted form (old events too).
            redact_url(e.target) if e.delivery == "webhook" and e.target else e.target,
            e.token_hash,
            iso(e.at),
        ),
    )
    await _count_dependents(tx, e.tenant, e.secret_id, 1)


async def _dependent_removed(tx: Transaction, e: ev.DependentRemoved, _: RecordedEvent) -> None:
    # A pull with a removed dependent's token is a usage anomaly: keep its hash (not the token) to know it again.
    await tx.write(
        "INSERT INTO rm_removed_tokens (token_hash, tenant, secret_id, dependent_id, removed_at)"
        " SELECT token_hash, tenant, secret_id, dependent_id, ? FROM rm_dependents"
        " WHERE tenant = ? AND dependent_id = ? AND token_hash IS NOT NULL ON CONFLICT (token_hash) DO NOTHING",
        (iso(e.at), e.tenant, e.dependent_id),
    )
    removed = await tx.execute(
        "DELETE FROM rm_dependents WHERE tenant = ? AND dependent_id = ?", (e.tenant, e.dependent_id)
    )
    if removed:
        await _count_dependents(tx, e.tenant, e.secret_id, -1)


async def _count_dependents(tx: Transaction, tenant: str, secret_id: str, change: int) -> None:
    await tx.write(
        "UPDATE rm_secrets SET dependents_count = dependents_count + ? WHERE tenant = ? AND secret_id = ?",
        (change, tenant, secret_id),
    )


async def _incident_opened(tx: Transaction, e: ev.IncidentOpened, _: RecordedEvent) -> None:
    await tx.write(
        "INSERT INTO rm_incidents (tenant, incident_id, kind, severity, secret_id, status, opened_at, updated_at,"
        " summary) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?)",
        (e.tenant, e.incident_id, e.kind, e.severity, e.secret_id, iso(e.at), iso(e.at), e.summary),
    )


async def _secret_deleted(tx: Transaction, e: ev.SecretDeleted, _: RecordedEvent) -> None:
    # The tombstone frees the id; rotations and incidents stay, they are history.
    for table in ("rm_secrets", "rm_secret_labels", "rm_dependents", "rm_retired_versions", "rm_compromised_versions"):
        await tx.write(f"DELETE FROM {table} WHERE tenant = ? AND secret_id = ?", (e.tenant, e.secret_id))


async def _rotation_requested(tx: Transaction, e: ev.RotationRequested, r: RecordedEvent) -> None:
    meta = ev.decode_meta(r.metadata)
    await tx.write(
        "INSERT INTO rm_rotations (tenant, rotation_id, secret_id, kind, status, requested_at, updated_at,"
        " from_version, to_version, actor_id, actor_type, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.tenant,
            e.rotation_id,
            e.secret_id,
            e.kind,
            status_after(e),
            iso(e.at),
            iso(e.at),
            e.from_version,
            e.to_version,
            meta.actor_id,
            meta.actor_type,
            e.reason,
        ),
    )


_STEP_EVENTS = (ev.SagaStepStarted, ev.SagaStepCompleted, ev.SagaStepFailed)


class _StepUpdate(msgspec.Struct):
    """The rm_rotations row update of a run of step events of one rotation: the last one's time, and the last
    status any of them set (None: unchanged). Applying it once leaves the row as applying each event did."""

    tenant: str
    rotation_id: str
    at: str
    status: str | None


async def _apply_step_update(tx: Transaction, u: _StepUpdate | None) -> None:
    if u is not None:
        await tx.write(
            "UPDATE rm_rotations SET updated_at = ?, status = COALESCE(?, status) WHERE tenant = ? AND rotation_id = ?",
            (u.at, u.status, u.tenant, u.rotation_id),
        )


async def _secret_revoked(tx: Transaction, e: ev.SecretRevoked, _: RecordedEvent) -> None:
    await tx.write(
        "UPDATE rm_secrets SET status = 'revoked' WHERE tenant = ? AND secret_id = ?", (e.tenant, e.secret_id)
    )
    await tx.write("DELETE FROM rm_retired_versions WHERE tenant = ? AND secret_id = ?", (e.tenant, e.secret_id))


_statement(
    ev.ApiKeyRevoked,
    "UPDATE rm_api_keys SET revoked_at = ? WHERE key_id = ? AND tenant = ? AND revoked_at IS NULL",
    lambda e: (iso(e.at), e.key_id, e.tenant),
)
_statement(
    ev.SecretVersionCreated,
    "UPDATE rm_secrets SET latest_version = ? WHERE tenant = ? AND secret_id = ? AND latest_version < ?",
    lambda e: (e.version, e.tenant, e.secret_id, e.version),
)
_statement(
    ev.IncidentAcknowledged,
    "UPDATE rm_incidents SET status = 'acknowledged', updated_at = ?"
    " WHERE tenant = ? AND incident_id = ? AND status = 'open'",
    lambda e: (iso(e.at), e.tenant, e.incident_id),
)
_statement(
    ev.IncidentResolved,
    "UPDATE rm_incidents SET status = 'resolved', updated_at = ? WHERE tenant = ? AND incident_id = ?",
    lambda e: (iso(e.at), e.tenant, e.incident_id),
)
_statement(
    ev.IncidentMitigated,
    "UPDATE rm_incidents SET status = 'mitigated', progress = ?, updated_at = ?"
    " WHERE tenant = ? AND incident_id = ? AND status <> 'resolved'",
    lambda e: (e.progress, iso(e.at), e.tenant, e.incident_id),
)
_statement(
    ev.SecretVersionCompromised,
    "INSERT INTO rm_compromised_versions (tenant, secret_id, version, incident_id, at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, secret_id, version) DO NOTHING",
    lambda e: (e.tenant, e.secret_id, e.version, e.incident_id, iso(e.at)),
)
_statement(
    ev.SecretVersionRetired,
    "INSERT INTO rm_retired_versions (tenant, secret_id, version, restorable_until) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (tenant, secret_id, version) DO UPDATE SET restorable_until = excluded.restorable_until",
    lambda e: (e.tenant, e.secret_id, e.version, iso(e.restorable_until)),
)
_statement(
    ev.SecretVersionRestored,
    "DELETE FROM rm_retired_versions WHERE tenant = ? AND secret_id = ? AND version = ?",
    lambda e: (e.tenant, e.secret_id, e.version),
)
_statement(
    ev.SecretVersionExpired,
    "DELETE FROM rm_retired_versions WHERE tenant = ? AND secret_id = ? AND version = ?",
    lambda e: (e.tenant, e.secret_id, e.version),
)
_statement(
    ev.RotationApprovalsMet,
    "UPDATE rm_rotations SET status = ?, updated_at = ? WHERE tenant = ? AND rotation_id = ?",
    lambda e: (status_after(e), iso(e.at), e.tenant, e.rotation_id),
)
_statement(
    ev.RotationFinished,
    "UPDATE rm_rotations SET status = ?, updated_at = ?, finished_at = ? WHERE tenant = ? AND rotation_id = ?",
    lambda e: (status_after(e), iso(e.at), iso(e.at), e.tenant, e.rotation_id),
)
_statement(
    ev.DependentAdopted,
    "UPDATE rm_dependents SET adopted_version = ?, last_seen_at = ? WHERE tenant = ? AND dependent_id = ?",
    lambda e: (e.version, iso(e.at), e.tenant, e.dependent_id),
)
_statement(
    ev.UsageAnomalyObserved,
    "INSERT INTO rm_anomaly_evidence (tenant, secret_id, fingerprint, status, incident_id, signal, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, secret_id, fingerprint, status) DO NOTHING",
    lambda e: (e.tenant, e.secret_id, e.fingerprint, e.status, e.incident_id, e.signal, iso(e.at)),
)
_statement(
    ev.IntakeTokenCreated,
    "INSERT INTO rm_intake_tokens (intake_id, tenant, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
    lambda e: (e.intake_id, e.tenant, e.name, e.token_hash, iso(e.at)),
)
_statement(
    ev.IntakeTokenRevoked,
    "UPDATE rm_intake_tokens SET revoked_at = ? WHERE intake_id = ? AND tenant = ? AND revoked_at IS NULL",
    lambda e: (iso(e.at), e.intake_id, e.tenant),
)

_HANDLERS: dict[type[ev.Event], Handler] = {
    ev.TenantCreated: _tenant_created,
    ev.ApiKeyCreated: _key_created,
    ev.SecretRegistered: _secret_registered,
    ev.SecretVersionActivated: _version_activated,
    ev.SecretLabelsChanged: _labels_changed,
    ev.SecretPolicyChanged: _policy_changed,
    ev.DependentAdded: _dependent_added,
    ev.DependentRemoved: _dependent_removed,
    ev.IncidentOpened: _incident_opened,
    ev.SecretDeleted: _secret_deleted,
    ev.RotationRequested: _rotation_requested,
    ev.SecretRevoked: _secret_revoked,
}
_HANDLERS.update(_STATEMENTS)
_HANDLERS.update(CONSOLE_HANDLERS)


_AUDIT_INSERT = (
    "INSERT INTO rm_audit (tenant, position, audit_id, at, actor_id, actor_type, method, secret_id, outcome,"
    " detail, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _audit_row(e: ev.AuditRecorded, r: RecordedEvent) -> tuple[Any, ...]:
    return (
        e.tenant,
        r.position,
        e.audit_id,
        iso(e.at),
        e.actor_id,
        e.actor_type,
        e.method,
        e.secret_id,
        e.outcome,
        e.detail,
        e.duration_ms,
    )


async def project(tx: Transaction, recorded: Sequence[RecordedEvent]) -> None:
    """The ``on_append`` hook for every engine append, and the body of a replay."""
    audit_rows: list[tuple[Any, ...]] = []
    # A saga appends a step's outcome with the next step's intent: consecutive step events of one rotation are
    # one update of its row, not one each.
    step: _StepUpdate | None = None
    for r in recorded:
        event = ev.decode(r.data)
        if isinstance(event, ev.AuditRecorded):
            # Group-committed audit records arrive many at a time: one executemany, not N round trips.
            audit_rows.append(_audit_row(event, r))
            continue
        if audit_rows:
            await tx.executemany(_AUDIT_INSERT, audit_rows)
            audit_rows = []
        if isinstance(event, _STEP_EVENTS):
            if step is not None and (step.tenant, step.rotation_id) != (event.tenant, event.rotation_id):
                await _apply_step_update(tx, step)
                step = None
            status = status_after(event) or (step.status if step is not None else None)
            step = _StepUpdate(event.tenant, event.rotation_id, iso(event.at), status)
            continue
        await _apply_step_update(tx, step)
        step = None
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            await handler(tx, event, r)
    await _apply_step_update(tx, step)
    if audit_rows:
        await tx.executemany(_AUDIT_INSERT, audit_rows)


async def reset(tx: Transaction) -> None:
    for table in PROJECTION_TABLES:
        await tx.write(f"DELETE FROM {table}")
