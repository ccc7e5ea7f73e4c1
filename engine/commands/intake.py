"""Alert intake: per-tenant intake tokens (`lockzero intake create|list|revoke`) and the alerts they bring in.

Two payloads are understood (POST /api/v1/alerts): a Prometheus Alertmanager webhook (``{"version": "4",
"alerts": [{status, labels, annotations, fingerprint, …}], …}``) and a small generic form (``{secret_id?,
labels?, severity, summary, source, fingerprint?, status?}``). Each alert selects secrets either by id
(``secret_id``, or the Alertmanager label ``lockzero_secret_id``) or by labels (the generic ``labels`` object,
or Alertmanager labels ``lockzero_<key>=<value>`` selecting secrets labelled ``<key>=<value>``).

The whole payload is checked first: any alert that is malformed or selects no secret refuses the payload and
opens nothing. Error messages name the alert's index and what is wrong, never a value from the payload, and
the summary that reaches an incident is cut short and has credential-like strings redacted.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.commands.tenants import get_tenant
from lockzero.engine.detection.anomalies import Evidence, Recorded, record_anomaly
from lockzero.engine.detection.scanner import resolve, scan_formats
from lockzero.engine.detection.validators import redact
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.security.keys import mint_token
from lockzero.eventstore import NO_STREAM

INTAKE_TOKEN_PREFIX = "lz_int_"  # noqa: S105 - a prefix, not a token
#: Alerts in one request; Alertmanager groups far fewer than this, and a bigger one is a mistake or a flood.
MAX_ALERTS = 100
#: Secrets one alert may select by labels: wider than this is almost surely a selector mistake.
MAX_SELECTED = 20
_SUMMARY_MAX = 300
_SOURCE_MAX = 100
_SEVERITIES: dict[str, ev.Severity] = {
    "critical": "critical",
    "page": "critical",
    "high": "high",
    "error": "high",
    "warning": "medium",
    "warn": "medium",
    "medium": "medium",
    "info": "low",
    "low": "low",
    "none": "low",
}
_LABEL_PREFIX = "lockzero_"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def intake_stream(tenant: str, intake_id: str) -> str:
    return f"intake-{tenant}/{intake_id}"


# --- tokens -------------------------------------------------------------------------------------------


class CreatedIntake(msgspec.Struct, frozen=True):
    intake_id: str
    #: Shown exactly once, at creation.
    token: str
    tenant: str
    name: str


class IntakeView(msgspec.Struct, frozen=True):
    intake_id: str
    tenant: str
    name: str
    created_at: str
    revoked_at: str | None
    status: str


class Intake(msgspec.Struct, frozen=True):
    tenant: str
    intake_id: str


async def create_intake(engine: Engine, tenant: str, actor: ev.EventMeta, *, name: str = "") -> CreatedIntake:
    await get_tenant(engine, tenant)
    intake_id, token, token_hash = mint_token(engine, name, "intake", INTAKE_TOKEN_PREFIX)
    event = ev.IntakeTokenCreated(
        at=engine.clock.now(), tenant=tenant, intake_id=intake_id, name=name or intake_id, token_hash=token_hash
    )
    await engine.append(intake_stream(tenant, intake_id), [event], actor, NO_STREAM)
    return CreatedIntake(intake_id, token, tenant, event.name)


def _view(row: tuple[Any, ...]) -> IntakeView:
    intake_id, tenant, name, created, revoked = row
    return IntakeView(
        str(intake_id),
        str(tenant),
        str(name),
        parse_iso(str(created)).isoformat(),
        parse_iso(str(revoked)).isoformat() if revoked else None,
        "revoked" if revoked else "active",
    )


async def list_intakes(engine: Engine, tenant: str) -> list[IntakeView]:
    await get_tenant(engine, tenant)
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT intake_id, tenant, name, created_at, revoked_at FROM rm_intake_tokens WHERE tenant = ?"
            " ORDER BY created_at, intake_id",
            (tenant,),
        )
    return [_view(r) for r in rows]


async def revoke_intake(engine: Engine, tenant: str, intake_id: str, actor: ev.EventMeta) -> IntakeView:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT intake_id, tenant, name, created_at, revoked_at FROM rm_intake_tokens"
            " WHERE tenant = ? AND intake_id = ?",
            (tenant, intake_id),
        )
    if row is None:
        raise NotFound(f"no intake token {intake_id!r} in tenant {tenant!r}; `lockzero intake list` shows the ids")
    if row[4] is not None:
        raise Conflict(f"intake token {intake_id} is already revoked")
    event = ev.IntakeTokenRevoked(at=engine.clock.now(), tenant=tenant, intake_id=intake_id)
    await engine.append(intake_stream(tenant, intake_id), [event], actor)
    return _view((*row[:4], iso(event.at)))


async def authenticate_intake(engine: Engine, token: str) -> Intake | None:
    """The intake behind a bearer token, or None (unknown and revoked look the same)."""
    if not token.startswith(INTAKE_TOKEN_PREFIX) or len(token) > 200:
        return None
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT tenant, intake_id, token_hash, revoked_at FROM rm_intake_tokens WHERE token_hash = ?",
            (engine.tokens.hash(token),),
        )
    if row is None or row[3] is not None or not engine.tokens.matches(token, str(row[2])):
        return None
    return Intake(str(row[0]), str(row[1]))


# --- payloads -----------------------------------------------------------------------------------------


class Alert(msgspec.Struct, frozen=True):
    """One alert, checked and resolved to the secrets it selects."""

    secret_ids: tuple[str, ...]
    status: str  # "firing" | "resolved"
    severity: ev.Severity
    summary: str
    source: str
    #: A digest of the sender's fingerprint (or of the alert's identity): never the sender's text.
    fingerprint: str


def clean_text(text: str, limit: int) -> str:
    """What may reach an incident from outside text: one line, cut short, credential-like strings redacted."""
    text = _CONTROL.sub(" ", text)[: limit * 4]
    data = text.encode()
    spans = sorted(((c.start, c.end) for c in resolve(scan_formats(data))), reverse=True)
    for start, end in spans:
        data = data[:start] + redact(data[start:end].decode(errors="replace")).encode() + data[end:]
    out = data.decode(errors="replace")
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _severity(value: object, where: str, *, required: bool) -> ev.Severity:
    if value is None and not required:
        return "medium"
    if not isinstance(value, str) or value.lower() not in _SEVERITIES:
        raise InvalidInput(f"{where}: severity must be one of low, medium, high, critical (or warning, info, error)")
    return _SEVERITIES[value.lower()]


def _str_map(value: object, where: str, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput(f"{where}: {what} must be an object of string values")
    if len(value) > 64:
        raise InvalidInput(f"{where}: {what} has more than 64 entries")
    return value


async def _select(engine: Engine, tenant: str, secret_id: str | None, labels: dict[str, str], where: str) -> list[str]:
    if secret_id is not None:
        try:
            naming.secret_id(secret_id)
        except InvalidInput:
            raise InvalidInput(f"{where}: secret_id is not a valid secret id") from None
        async with engine.store.reader() as tx:
            row = await tx.fetchone("SELECT 1 FROM rm_secrets WHERE tenant = ? AND secret_id = ?", (tenant, secret_id))
        if row is None:
            raise InvalidInput(f"{where}: secret_id names no secret of this tenant")
        return [secret_id]
    if not labels:
        raise InvalidInput(f"{where}: name the secret (secret_id, or Alertmanager label lockzero_secret_id) or labels")
    clauses = " AND ".join(
        [
            "EXISTS (SELECT 1 FROM rm_secret_labels l WHERE l.tenant = s.tenant AND l.secret_id = s.secret_id"
            " AND l.label_key = ? AND l.label_value = ?)"
        ]
        * len(labels)
    )
    params: list[object] = [tenant]
    for key, value in sorted(labels.items()):
        params += [key, value]
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT s.secret_id FROM rm_secrets s WHERE s.tenant = ? AND {clauses} ORDER BY s.secret_id LIMIT ?",
            (*params, MAX_SELECTED + 1),
        )
    if not rows:
        raise InvalidInput(f"{where}: the labels select no secret of this tenant")
    if len(rows) > MAX_SELECTED:
        raise InvalidInput(f"{where}: the labels select more than {MAX_SELECTED} secrets; narrow them")
    return [str(r[0]) for r in rows]


async def parse_alerts(engine: Engine, tenant: str, body: bytes) -> list[Alert]:
    """Every alert of the payload, checked and resolved to secrets; InvalidInput (naming the alert) otherwise."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the body must be a JSON object (an Alertmanager webhook or the generic alert form)")
    if "alerts" in doc:
        raw = doc["alerts"]
        if not isinstance(raw, list) or not raw:
            raise InvalidInput("alerts must be a non-empty array")
        if len(raw) > MAX_ALERTS:
            raise InvalidInput(f"at most {MAX_ALERTS} alerts per request (got {len(raw)}); send them in batches")
        receiver = doc.get("receiver")
        origin = f"alertmanager:{receiver}" if isinstance(receiver, str) and receiver else "alertmanager"
        return [await _alertmanager(engine, tenant, a, f"alerts[{i}]", origin) for i, a in enumerate(raw)]
    return [await _generic(engine, tenant, doc, "alert")]


async def _alertmanager(engine: Engine, tenant: str, alert: object, where: str, origin: str) -> Alert:
    if not isinstance(alert, dict):
        raise InvalidInput(f"{where}: must be an object")
    labels = _str_map(alert.get("labels"), where, "labels")
    annotations = _str_map(alert.get("annotations"), where, "annotations")
    status = alert.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise InvalidInput(f"{where}: status must be firing or resolved")
    secret_id = labels.get(f"{_LABEL_PREFIX}secret_id")
    selector = {k[len(_LABEL_PREFIX) :]: v for k, v in labels.items() if k.startswith(_LABEL_PREFIX)}
    selector.pop("secret_id", None)
    secrets = await _select(engine, tenant, secret_id, selector, where)
    name = labels.get("alertname", "alert")
    summary = annotations.get("summary") or annotations.get("description") or name
    fingerprint = alert.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        fingerprint = _digest(*(f"{k}={v}" for k, v in sorted(labels.items())))
    return Alert(
        tuple(secrets),
        str(status),
        _severity(labels.get("severity"), where, required=False),
        clean_text(f"{name}: {summary}" if summary != name else name, _SUMMARY_MAX),
        clean_text(origin, _SOURCE_MAX),
        _digest("alertmanager", fingerprint[:200]),
    )


async def _generic(engine: Engine, tenant: str, doc: dict[str, Any], where: str) -> Alert:
    unknown = sorted(set(doc) - {"secret_id", "labels", "severity", "summary", "source", "fingerprint", "status"})
    if unknown:
        raise InvalidInput(
            f"{where}: unknown field(s) {', '.join(k[:40] for k in unknown[:5])}; the generic form is"
            " {secret_id?, labels?, severity, summary, source, fingerprint?, status?}"
        )
    summary, source = doc.get("summary"), doc.get("source")
    if not isinstance(summary, str) or not summary.strip():
        raise InvalidInput(f"{where}: summary is required (a string)")
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput(f"{where}: source is required (a string naming the system that raised it)")
    secret_id = doc.get("secret_id")
    if secret_id is not None and not isinstance(secret_id, str):
        raise InvalidInput(f"{where}: secret_id must be a string")
    labels = _str_map(doc.get("labels"), where, "labels")
    status = doc.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise InvalidInput(f"{where}: status must be firing or resolved")
    severity = _severity(doc.get("severity"), where, required=True)
    secrets = await _select(engine, tenant, secret_id, labels, where)
    fingerprint = doc.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise InvalidInput(f"{where}: fingerprint must be a string")
    identity = fingerprint or _digest(
        source, summary, secret_id or "", *(f"{k}={v}" for k, v in sorted(labels.items()))
    )
    return Alert(
        tuple(secrets),
        str(status),
        severity,
        clean_text(summary, _SUMMARY_MAX),
        clean_text(source, _SOURCE_MAX),
        _digest("generic", identity[:200]),
    )


class IntakeResult(msgspec.Struct, frozen=True):
    accepted: int
    incidents: list[str]
    opened: int
    joined: int
    duplicates: int
    #: Resolved alerts with no open incident to annotate.
    ignored: int


async def ingest(engine: Engine, intake: Intake, alerts: list[Alert], queue: SagaQueue | None = None) -> IntakeResult:
    actor = ev.EventMeta(actor_id=intake.intake_id, actor_type="service")
    results: list[Recorded] = []
    for alert in alerts:
        for secret_id in alert.secret_ids:
            async with engine.store.reader() as tx:
                row = await tx.fetchone(
                    "SELECT current_version FROM rm_secrets WHERE tenant = ? AND secret_id = ?",
                    (intake.tenant, secret_id),
                )
            current = int(row[0]) if row and row[0] is not None else None
            evidence = Evidence(
                "alert",
                alert.source,
                alert.summary,
                f"alert:{alert.fingerprint}:v{current or 0}",
                current,
                alert.status,
            )
            results.append(
                await record_anomaly(
                    engine,
                    intake.tenant,
                    secret_id,
                    evidence,
                    actor=actor,
                    severity=alert.severity,
                    summary=f"alert from {alert.source}: {alert.summary}",
                    queue=queue,
                )
            )
    return IntakeResult(
        accepted=len(alerts),
        incidents=sorted({r.incident_id for r in results if r.incident_id}),
        opened=sum(1 for r in results if r.opened),
        joined=sum(1 for r in results if r.incident_id and not r.opened and not r.duplicate),
        duplicates=sum(1 for r in results if r.duplicate),
        ignored=sum(1 for r in results if r.incident_id is None),
    )
