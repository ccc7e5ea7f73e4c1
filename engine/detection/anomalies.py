"""Usage anomalies: a retired, revoked or compromised credential still presented or still connected, a pull
token used from a new address or far above its own rate, or an alert from outside.

Every piece of evidence is a ``UsageAnomalyObserved`` event that opens or joins the secret's one unresolved
``usage_anomaly`` incident. Evidence is identified by a fingerprint (with its status: an alert firing, then
resolved, is two pieces), and the same fingerprint is recorded once per secret, so a poll that sees the same
session again, or a flood of calls with one removed token, adds nothing. Fingerprints carry the secret's
current version ("epoch"): after a verified rotation resolves the incident, the same signal against the new
current version is new evidence again.

What happens next is the secret's policy (``on_anomaly``): "notify" (the signed notification of any opened
incident) or "rotate" (a rotation started as the system actor, subject to approvals like any other).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.incidents import open_incident
from lockzero.engine.commands.rotations import SagaQueue, rotate
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Secret, fold_secret
from lockzero.engine.domain.errors import LockzeroError
from lockzero.engine.saga.provider_access import open_provider
from lockzero.engine.security.crypto import SERVICE_TOKEN_PREFIX
from lockzero.providers.base import ProviderError, SignalSource

log = logging.getLogger("lockzero.anomalies")

WATCHER = ev.EventMeta(actor_id="lockzero:watcher", actor_type="system")
#: How often the watcher polls each secret's provider (the worker's cron and the embedded loop).
WATCH_EVERY_S = 15.0

_DETAIL_MAX = 300


class Evidence(msgspec.Struct, frozen=True):
    signal: str
    source: str
    detail: str
    fingerprint: str
    version: int | None = None
    status: str = "observed"


class Recorded(msgspec.Struct, frozen=True):
    incident_id: str | None
    #: A new incident was opened for this evidence (else it joined one, or was already known).
    opened: bool = False
    #: The same evidence was already recorded: nothing was appended.
    duplicate: bool = False
    rotation_id: str | None = None


def incident_id_for(tenant: str, secret_id: str, fingerprint: str, status: str) -> str:
    """Derived from the evidence that opens it, so a repeat after a crash opens nothing twice."""
    digest = hashlib.sha256(f"{tenant}\0{secret_id}\0{fingerprint}\0{status}".encode()).hexdigest()
    return f"inc_{digest[:24]}"


async def _open_anomaly(engine: Engine, tenant: str, secret_id: str) -> str | None:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT incident_id FROM rm_incidents WHERE tenant = ? AND secret_id = ? AND kind = 'usage_anomaly'"
            " AND status <> 'resolved' ORDER BY opened_at, incident_id LIMIT 1",
            (tenant, secret_id),
        )
    return str(row[0]) if row else None


async def known(engine: Engine, tenant: str, secret_id: str, fingerprint: str, status: str = "observed") -> bool:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT 1 FROM rm_anomaly_evidence WHERE tenant = ? AND secret_id = ? AND fingerprint = ? AND status = ?",
            (tenant, secret_id, fingerprint, status),
        )
    return row is not None


async def record_anomaly(
    engine: Engine,
    tenant: str,
    secret_id: str,
    evidence: Evidence,
    *,
    actor: ev.EventMeta,
    severity: ev.Severity,
    summary: str,
    queue: SagaQueue | None = None,
) -> Recorded:
    """Open or join the secret's usage_anomaly incident with ``evidence`` (once per fingerprint and status).
    A "resolved" alert only annotates an incident it fired into; it never opens one."""
    if await known(engine, tenant, secret_id, evidence.fingerprint, evidence.status):
        return Recorded(await _open_anomaly(engine, tenant, secret_id), duplicate=True)
    incident_id = await _open_anomaly(engine, tenant, secret_id)
    opened = False
    if incident_id is None:
        if evidence.status == "resolved":
            return Recorded(None)
        incident_id = incident_id_for(tenant, secret_id, evidence.fingerprint, evidence.status)
        await open_incident(
            engine,
            tenant,
            actor,
            kind="usage_anomaly",
            severity=severity,
            secret_id=secret_id,
            summary=summary[:_DETAIL_MAX],
            incident_id=incident_id,
        )
        opened = True
    event = ev.UsageAnomalyObserved(
        at=engine.clock.now(),
        tenant=tenant,
        incident_id=incident_id,
        secret_id=secret_id,
        fingerprint=evidence.fingerprint,
        signal=evidence.signal,
        source=evidence.source[:_DETAIL_MAX],
        detail=evidence.detail[:_DETAIL_MAX],
        version=evidence.version,
        status=evidence.status,
    )
    await engine.append(naming.incident_stream(tenant, incident_id), [event], actor)
    rotation_id = await _policy_action(engine, tenant, secret_id, incident_id, queue) if opened else None
    return Recorded(incident_id, opened=opened, rotation_id=rotation_id)


async def _policy_action(
    engine: Engine, tenant: str, secret_id: str, incident_id: str, queue: SagaQueue | None
) -> str | None:
    """``on_anomaly: rotate``: start a rotation as the system actor (approvals apply; one in flight is reused)."""
    if queue is None:
        return None
    async with engine.store.reader() as tx:
        row = await tx.fetchone("SELECT policy FROM rm_secrets WHERE tenant = ? AND secret_id = ?", (tenant, secret_id))
    if row is None or msgspec.json.decode(row[0], type=ev.Policy).on_anomaly != "rotate":
        return None
    try:
        started = await rotate(engine, queue, tenant, secret_id, SYSTEM, f"usage anomaly {incident_id} (policy)")
    except LockzeroError as exc:
        # e.g. revoked meanwhile: the incident stays open for a person.
        log.warning("on_anomaly rotate of %s not started: %s", secret_id, type(exc).__name__)
        return None
    return started.rotation_id


# --- the watcher: provider signals ------------------------------------------------------------------


def _watch_targets(secret: Secret) -> tuple[dict[str, int], datetime | None]:
    """Principals no longer handed out (username → the version), and since when a refused login of the managed
    account means an old credential (the current version's activation, once there was a rotation)."""
    current = secret.version(secret.current_version)
    if secret.status == "revoked" or current is None:
        return {v.username: v.number for v in secret.versions if v.username}, None
    retired: dict[str, int] = {}
    for v in secret.versions:
        gone = v.status in ("retired", "expired", "revoked") or v.compromised
        if gone and v.username and v.username != current.username:
            retired[v.username] = v.number
    rotated = any(v.number < current.number and v.status != "discarded" for v in secret.versions)
    return retired, current.activated_at if rotated else None


async def watch_secret(engine: Engine, tenant: str, secret_id: str, queue: SagaQueue | None = None) -> list[Recorded]:
    events, metas, _ = await engine.load_with_meta(naming.secret_stream(tenant, secret_id))
    secret = fold_secret(events, metas)
    if secret is None:
        return []
    retired, since = _watch_targets(secret)
    if not retired and since is None:
        return []
    provider = await open_provider(engine, secret)
    try:
        if not isinstance(provider, SignalSource):
            return []
        signals = await provider.usage_signals(sorted(retired), since)
    finally:
        await provider.close()
    epoch = f"v{secret.current_version}"
    previous = max((n for n in retired.values()), default=None)
    if previous is None and secret.current_version:
        previous = secret.current_version - 1 or None
    out = []
    for sig in signals:
        version = retired.get(sig.principal, previous if sig.kind == "auth_failure" else None)
        kind = "retired_session" if sig.kind == "session" else "auth_failure"
        evidence = Evidence(kind, secret.provider, sig.detail, f"{sig.key}:{epoch}", version)
        what = f"v{version}" if version else "an old credential"
        out.append(
            await record_anomaly(
                engine,
                tenant,
                secret_id,
                evidence,
                actor=WATCHER,
                severity="high",
                summary=f"{what} of {secret_id} is still in use: {sig.detail}",
                queue=queue,
            )
        )
    return out


async def watch_pass(engine: Engine, queue: SagaQueue | None = None, *, limit: int = 1000) -> list[Recorded]:
    """One poll of every watchable secret. A provider that cannot answer is skipped until the next pass."""
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT tenant, secret_id FROM rm_secrets WHERE provider IN ('redis_acl', 'postgres_role', 'mysql_user')"
            " ORDER BY tenant, secret_id LIMIT ?",
            (limit,),
        )
    out: list[Recorded] = []
    for tenant, secret_id in rows:
        try:
            out.extend(await watch_secret(engine, str(tenant), str(secret_id), queue))
        except (ProviderError, LockzeroError) as exc:
            log.warning("watcher: %s/%s skipped this pass (%s)", tenant, secret_id, type(exc).__name__)
    return out


# --- pulls: removed tokens, new source addresses, rate far above the dependent's own baseline ---------

#: Pull-rate windows: one minute each; the baseline is an exponentially weighted mean of past windows.
RATE_WINDOW_S = 60
RATE_ALPHA = 0.2
#: A window counts as anomalous above max(FACTOR × baseline, FLOOR) once the baseline has MIN_WINDOWS behind it.
RATE_FACTOR = 10.0
RATE_FLOOR = 30
RATE_MIN_WINDOWS = 5
_MAX_ADDRESSES = 64


@dataclass
class _Baseline:
    addresses: set[str]
    windows: int
    rate: float
    window: int = -1
    count: int = 0
    flagged: bool = False
    dirty: bool = field(default=False)


class PullWatch:
    """Per-dependent baselines of the pull endpoint, kept in memory and persisted (lz_pull_baseline) when they
    change, so a new address costs one write and ordinary pulls none. One per API process."""

    def __init__(self, engine: Engine, queue: SagaQueue | None = None) -> None:
        self.engine = engine
        self.queue = queue
        self._baselines: dict[tuple[str, str], _Baseline] = {}
        #: Removed-token evidence already recorded by this process: a flood costs no store reads.
        self._seen: set[str] = set()

    async def _baseline(self, tenant: str, dependent_id: str) -> _Baseline:
        key = (tenant, dependent_id)
        found = self._baselines.get(key)
        if found is not None:
            return found
        async with self.engine.store.reader() as tx:
            row = await tx.fetchone(
                "SELECT addresses, windows, rate_ewma FROM lz_pull_baseline WHERE tenant = ? AND dependent_id = ?",
                (tenant, dependent_id),
            )
        if row is None:
            base = _Baseline(set(), 0, 0.0)
        else:
            base = _Baseline(set(msgspec.json.decode(row[0], type=list[str])), int(row[1]), float(row[2]))
        if len(self._baselines) > 100_000:
            self._baselines.clear()
        self._baselines[key] = base
        return base

    async def _save(self, tenant: str, dependent_id: str, base: _Baseline) -> None:
        addresses = msgspec.json.encode(sorted(base.addresses)).decode()
        async with self.engine.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO lz_pull_baseline (tenant, dependent_id, addresses, windows, rate_ewma)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, dependent_id) DO UPDATE SET"
                " addresses = excluded.addresses, windows = excluded.windows, rate_ewma = excluded.rate_ewma",
                (tenant, dependent_id, addresses, base.windows, base.rate),
            )
        base.dirty = False

    async def pulled(self, tenant: str, secret_id: str, dependent_id: str, source: str) -> None:
        """A successful pull: learn the first address; a later new one, or a window far above the baseline,
        is evidence (once per address, once per window)."""
        base = await self._baseline(tenant, dependent_id)
        epoch = await _epoch(self.engine, tenant, secret_id)
        window = int(self.engine.clock.now().timestamp()) // RATE_WINDOW_S
        if window != base.window:
            if base.window >= 0:
                # Close the finished window and decay over the empty ones since (a quiet service's baseline drops).
                base.rate = base.rate * (1 - RATE_ALPHA) + RATE_ALPHA * base.count
                base.rate *= (1 - RATE_ALPHA) ** min(max(window - base.window - 1, 0), 50)
                base.windows += 1
                base.dirty = True
            base.window, base.count, base.flagged = window, 0, False
        base.count += 1
        if source not in base.addresses and len(base.addresses) < _MAX_ADDRESSES:
            first = not base.addresses
            base.addresses.add(source)
            await self._save(tenant, dependent_id, base)
            if not first:
                evidence = Evidence(
                    "new_source",
                    "pull endpoint",
                    f"dependent {dependent_id} pulled from a new address {source}",
                    f"new_source:{dependent_id}:{source}:{epoch}",
                )
                await record_anomaly(
                    self.engine,
                    tenant,
                    secret_id,
                    evidence,
                    actor=WATCHER,
                    severity="medium",
                    summary=f"pull token of dependent {dependent_id} used from a new address {source}",
                    queue=self.queue,
                )
        elif base.dirty:
            await self._save(tenant, dependent_id, base)
        threshold = max(RATE_FACTOR * base.rate, RATE_FLOOR)
        if base.windows >= RATE_MIN_WINDOWS and not base.flagged and base.count > threshold:
            base.flagged = True
            evidence = Evidence(
                "pull_rate",
                "pull endpoint",
                f"dependent {dependent_id} made over {int(threshold)} pulls in a minute;"
                f" its baseline is {base.rate:.1f} a minute",
                f"pull_rate:{dependent_id}:{window}:{epoch}",
            )
            await record_anomaly(
                self.engine,
                tenant,
                secret_id,
                evidence,
                actor=WATCHER,
                severity="medium",
                summary=f"pull token of dependent {dependent_id} used far above its own rate",
                queue=self.queue,
            )

    async def refused(self, token: str, source: str) -> None:
        """A pull refused for its token: a removed dependent's token is evidence (once per address)."""
        if not token.startswith(SERVICE_TOKEN_PREFIX) or len(token) > 200:
            return
        async with self.engine.store.reader() as tx:
            row = await tx.fetchone(
                "SELECT tenant, secret_id, dependent_id, token_hash FROM rm_removed_tokens WHERE token_hash = ?",
                (self.engine.tokens.hash(token),),
            )
        if row is None or not self.engine.tokens.matches(token, str(row[3])):
            return
        tenant, secret_id, dependent_id = str(row[0]), str(row[1]), str(row[2])
        epoch = await _epoch(self.engine, tenant, secret_id)
        fingerprint = f"removed_token:{dependent_id}:{source}:{epoch}"
        if f"{tenant}\0{fingerprint}" in self._seen:
            return
        evidence = Evidence(
            "removed_token",
            "pull endpoint",
            f"the token of removed dependent {dependent_id} was presented from {source}",
            fingerprint,
        )
        await record_anomaly(
            self.engine,
            tenant,
            secret_id,
            evidence,
            actor=WATCHER,
            severity="high",
            summary=f"a removed dependent's pull token ({dependent_id}) is still in use",
            queue=self.queue,
        )
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen.add(f"{tenant}\0{fingerprint}")


async def _epoch(engine: Engine, tenant: str, secret_id: str) -> str:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT current_version FROM rm_secrets WHERE tenant = ? AND secret_id = ?", (tenant, secret_id)
        )
    return f"v{row[0]}" if row and row[0] is not None else "v0"


def evidence_of(e: ev.UsageAnomalyObserved) -> str:
    """One line for timelines and blast radius."""
    version = f" v{e.version}" if e.version is not None else ""
    status = f" [{e.status}]" if e.status != "observed" else ""
    return f"{e.signal}{version}{status} via {e.source}: {e.detail}"
