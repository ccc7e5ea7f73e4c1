"""The detect_exposure command: scan text for credentials, attribute managed values to their secrets,
and open (or join) a leaked_credential incident for each managed secret found.

The text is never stored or logged: it lives in this call's frames only. Findings carry a redacted
form (a few characters at each end), positions and ids, never a value; incident summaries, links and
audit details are built from ids and counts only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.compromise import mark_compromised
from lockzero.engine.detection.managed import ManagedHit, ManagedMatcher, SealedVersion, load_sealed
from lockzero.engine.detection.scanner import (
    MANAGED_DETECTOR,
    MANAGED_SPECIFICITY,
    Candidate,
    locate,
    resolve,
    scan_formats,
)
from lockzero.engine.detection.validators import redact
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import VersionStatus
from lockzero.engine.domain.errors import PayloadTooLarge
from lockzero.engine.security.crypto import TenantKeys, new_id
from lockzero.eventstore import NO_STREAM, ConcurrencyError

MAX_TEXT_BYTES = 5 * 1024 * 1024
#: A result lists at most this many findings (the first, by position); incidents still count them all.
MAX_FINDINGS = 1000
#: Findings linked to an incident per scan; a log repeating one value 10 000 times needs not 10 000 events.
MAX_LINKS_PER_INCIDENT = 50
MAX_SOURCE_CHARS = 200

Action = Literal["rotate", "revoke", "register_and_rotate", "investigate"]
_LIVE: frozenset[str] = frozenset({"live", "current"})
_SEVERITY: dict[str, ev.Severity] = {"current": "critical", "live": "critical", "retired": "medium", "revoked": "low"}


class Finding(msgspec.Struct, frozen=True):
    finding_id: str
    detector: str
    secret_id: str | None
    managed: bool
    confidence: float
    redacted: str
    line: int
    column: int
    recommended_action: Action


class ExposureReport(msgspec.Struct, frozen=True):
    findings: list[Finding]
    incident_ids: list[str]
    scanned_bytes: int


@dataclass(frozen=True)
class _Scan:
    formats: list[Candidate]
    managed: list[ManagedHit]
    source_has_credential: bool


def _scan(data: bytes, source: bytes, keys: TenantKeys, sealed: list[SealedVersion]) -> _Scan:
    """The CPU part, run in a worker thread. Plaintext values exist only inside the matcher here."""
    formats = scan_formats(data)
    matcher = ManagedMatcher(keys, sealed)
    try:
        managed = matcher.match(data)
        source_dirty = bool(source) and bool(scan_formats(source) or matcher.match(source))
    finally:
        matcher.close()
    return _Scan(formats, managed, source_dirty)


def _source_label(source: str | None, dirty: bool) -> str | None:
    if not source:
        return None
    if dirty:
        return "[source withheld: it contains a credential]"
    clean = " ".join("".join(c if c.isprintable() else " " for c in source).split())
    return clean[:MAX_SOURCE_CHARS] or None


async def _version_statuses(engine: Engine, tenant: str, secret_ids: set[str]) -> dict[str, dict[int, VersionStatus]]:
    out: dict[str, dict[int, VersionStatus]] = {}
    for secret_id in sorted(secret_ids):
        secret, _ = await engine.secrets.load(naming.secret_stream(tenant, secret_id))
        if secret is not None:
            out[secret_id] = {v.number: v.status for v in secret.versions}
    return out


def _action(c: Candidate, status: VersionStatus | None) -> Action:
    if c.secret_id is not None:
        # No policy says "revoke on leak" yet: a live managed credential is rotated.
        return "rotate" if status in _LIVE else "investigate"
    return "register_and_rotate" if c.confidence >= 0.8 else "investigate"


async def detect_exposure(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    text: str,
    *,
    source: str | None = None,
    visible: Callable[[str], bool] = lambda _: True,
) -> ExposureReport:
    """Scan ``text``; ``visible`` (the key's scope) limits which managed secrets are matched."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_TEXT_BYTES:
        raise PayloadTooLarge(
            f"text is {len(data)} bytes; detect_exposure scans at most {MAX_TEXT_BYTES} bytes (5 MiB)"
            " per call: split it and scan the parts"
        )
    keys = await engine.tenant_keys(tenant)
    sealed = await load_sealed(engine, tenant, visible)
    source_bytes = (source or "").encode("utf-8", "surrogatepass")
    scan = await asyncio.to_thread(_scan, data, source_bytes, keys, sealed)
    del sealed

    statuses = await _version_statuses(engine, tenant, {h.secret_id for h in scan.managed})
    managed: list[Candidate] = []
    for h in scan.managed:
        status = statuses.get(h.secret_id, {}).get(h.version)
        if status is None or status == "discarded":
            continue  # never went live (a compensated rotation's value), or the secret is gone
        managed.append(
            Candidate(h.start, h.end, MANAGED_DETECTOR, "managed", 1.0, MANAGED_SPECIFICITY, h.secret_id, h.version)
        )
    kept = resolve([*scan.formats, *managed])
    places = locate(data, [c.start for c in kept])

    scanned = len(data)
    findings: list[Finding] = []
    by_secret: dict[str, list[tuple[Finding, VersionStatus]]] = {}
    leaked_versions: dict[str, set[int]] = {}
    for c in kept:
        status = statuses.get(c.secret_id, {}).get(c.version or 0) if c.secret_id else None
        line, column = places[c.start]
        finding = Finding(
            finding_id=new_id("fnd"),
            detector=c.detector,
            secret_id=c.secret_id,
            managed=c.secret_id is not None,
            confidence=round(c.confidence, 2),
            redacted=redact(data[c.start : c.end].decode("utf-8", "replace")),
            line=line,
            column=column,
            recommended_action=_action(c, status),
        )
        findings.append(finding)
        if c.secret_id is not None and status is not None:
            by_secret.setdefault(c.secret_id, []).append((finding, status))
            if c.version is not None:
                leaked_versions.setdefault(c.secret_id, set()).add(c.version)
    del data

    label = _source_label(source, scan.source_has_credential)
    incident_ids = []
    for secret_id, hits in sorted(by_secret.items()):
        incident_id = await _record_leak(engine, tenant, actor, secret_id, hits, label)
        incident_ids.append(incident_id)
        await mark_compromised(
            engine,
            tenant,
            secret_id,
            leaked_versions.get(secret_id, ()),
            incident_id=incident_id,
            source=f"detect_exposure{f' in {label}' if label else ''}",
            actor=actor,
        )
    return ExposureReport(findings[:MAX_FINDINGS], list(dict.fromkeys(incident_ids)), scanned)


async def _open_leak_incident(engine: Engine, tenant: str, secret_id: str) -> tuple[str | None, int]:
    """The open leaked_credential incident of the secret (oldest first), and how many it ever had."""
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT incident_id, status FROM rm_incidents WHERE tenant = ? AND secret_id = ?"
            " AND kind = 'leaked_credential' ORDER BY opened_at, incident_id",
            (tenant, secret_id),
        )
    open_ids = [r[0] for r in rows if r[1] != "resolved"]
    return (open_ids[0] if open_ids else None), len(rows)


def _leak_incident_id(tenant: str, secret_id: str, generation: int) -> str:
    """Deterministic per (secret, generation): two scans racing to open the same leak collide on the
    stream instead of opening two incidents; the loser joins the winner's."""
    digest = hashlib.sha256(f"lockzero/leak/{tenant}/{secret_id}/{generation}".encode()).hexdigest()
    return f"inc_{digest[:16]}"


async def _record_leak(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    secret_id: str,
    hits: list[tuple[Finding, VersionStatus]],
    source: str | None,
) -> str:
    now = engine.clock.now()
    statuses = {s for _, s in hits}
    severity = next(_SEVERITY[s] for s in ("current", "live", "retired", "revoked") if s in statuses)

    def links(incident_id: str) -> list[ev.Event]:
        out: list[ev.Event] = [
            ev.IncidentLinked(at=now, tenant=tenant, incident_id=incident_id, ref_kind="finding", ref_id=f.finding_id)
            for f, _ in hits[:MAX_LINKS_PER_INCIDENT]
        ]
        if source is not None:
            out.append(
                ev.IncidentLinked(at=now, tenant=tenant, incident_id=incident_id, ref_kind="source", ref_id=source)
            )
        return out

    def opened(incident_id: str) -> ev.IncidentOpened:
        versions = ", ".join(sorted(statuses))
        where = f" in {source}" if source else ""
        count = f"{len(hits)} occurrence{'s' if len(hits) != 1 else ''}"
        todo = "rotate it" if statuses & _LIVE else "no live version leaked; check where it was exposed"
        summary = f"{secret_id} leaked: {count} found by detect_exposure{where} (versions: {versions}); {todo}"
        return ev.IncidentOpened(
            at=now,
            tenant=tenant,
            incident_id=incident_id,
            kind="leaked_credential",
            severity=severity,
            secret_id=secret_id,
            summary=summary[:500],
        )

    for _ in range(10):
        existing, generation = await _open_leak_incident(engine, tenant, secret_id)
        if existing is not None:
            await engine.append(naming.incident_stream(tenant, existing), links(existing), actor)
            return existing
        incident_id = _leak_incident_id(tenant, secret_id, generation)
        stream = naming.incident_stream(tenant, incident_id)
        try:
            await engine.append(stream, [opened(incident_id), *links(incident_id)], actor, NO_STREAM)
        except ConcurrencyError:
            continue  # another scan opened it first: look again, and join it
        return incident_id
    # Pathological churn (incidents opened and resolved under our feet): a fresh id rather than no incident.
    incident_id = new_id("inc")
    await engine.append(naming.incident_stream(tenant, incident_id), [opened(incident_id), *links(incident_id)], actor)
    return incident_id
