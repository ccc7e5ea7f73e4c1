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
from collections.abc import Callable
from datetime import datetime

import msgspec

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.incidents import open_incident
from lockzero.engine.commands.rotations import SagaQueue, rotate
from lockzero.engine.detection.baselines import Baselines, Deviation
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.errors import LockzeroError
from lockzero.engine.saga.provider_access import open_provider
from lockzero.engine.security.crypto import SERVICE_TOKEN_PREFIX
from lockzero.providers.base import ProviderError, SignalSource
from lockzero.providers.registry import PROVIDERS

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
    account means an old credential (the current version's activation or the last retirement, whichever is later,
    once there was a rotation)."""
    current = secret.version(secret.current_version)
    if secret.status == "revoked" or current is None:
        return {v.username: v.number for v in secret.versions if v.username}, None
    retired: dict[str, int] = {}
    for v in secret.versions:
        gone = v.status in ("retired", "expired", "revoked") or v.compromised
        if gone and v.username and v.username != current.username:
            retired[v.username] = v.number
    rotated = any(v.number < current.number and v.status != "discarded" for v in secret.versions)
    if not rotated or current.activated_at is None:
        return retired, None
    # Until the old credential was retired it still worked (the shift lets dependents adopt at their pace):
    # only what happens after both the activation and the last retirement says an old credential is in use.
    return retired, max([current.activated_at, *(v.retired_at for v in secret.versions if v.retired_at)])


async def watch_secret(engine: Engine, tenant: str, secret_id: str, queue: SagaQueue | None = None) -> list[Recorded]:
    secret, _ = await engine.secrets.load(naming.secret_stream(tenant, secret_id))
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
    watched = [name for name, spec in PROVIDERS.items() if spec.usage_signals]
    marks = ", ".join("?" * len(watched))
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT tenant, secret_id FROM rm_secrets WHERE provider IN ({marks}) ORDER BY tenant, secret_id LIMIT ?",
            (*watched, limit),
        )
    out: list[Recorded] = []
    for tenant, secret_id in rows:
        try:
            out.extend(await watch_secret(engine, str(tenant), str(secret_id), queue))
        except (ProviderError, LockzeroError) as exc:
            log.warning("watcher: %s/%s skipped this pass (%s)", tenant, secret_id, type(exc).__name__)
    return out


# --- pulls: removed tokens, new source addresses, rate far above the dependent's own baseline ---------


class PullWatch:
    """Per-dependent baselines of the pull endpoint (engine/detection/baselines.py). One per API process."""

    def __init__(self, engine: Engine, queue: SagaQueue | None = None) -> None:
        self.engine = engine
        self.queue = queue
        self._baselines = Baselines(engine.store, "lz_pull_baseline", "dependent_id")
        #: Removed-token evidence already recorded by this process: a flood costs no store reads.
        self._seen: set[str] = set()

    async def pulled(self, tenant: str, secret_id: str, dependent_id: str, source: str) -> None:
        """A successful pull: a new address, or a window far above the dependent's baseline, is evidence."""

        def describe(deviation: Deviation, epoch: str) -> tuple[Evidence, str]:
            if deviation.kind == "new_source":
                detail = f"dependent {dependent_id} pulled from a new address {source}"
                fingerprint = f"new_source:{dependent_id}:{source}:{epoch}"
                summary = f"pull token of dependent {dependent_id} used from a new address {source}"
                return Evidence("new_source", "pull endpoint", detail, fingerprint), summary
            detail = (
                f"dependent {dependent_id} made over {deviation.threshold} pulls in a minute;"
                f" its baseline is {deviation.baseline:.1f} a minute"
            )
            fingerprint = f"pull_rate:{dependent_id}:{deviation.subject}:{epoch}"
            summary = f"pull token of dependent {dependent_id} used far above its own rate"
            return Evidence("pull_rate", "pull endpoint", detail, fingerprint), summary

        found = await self._baselines.observe(tenant, dependent_id, source, self.engine.clock.now())
        await record_deviations(self.engine, self.queue, tenant, secret_id, found, describe, "medium")

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
        epoch = await current_epoch(self.engine, tenant, secret_id)
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


async def current_epoch(engine: Engine, tenant: str, secret_id: str) -> str:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT current_version FROM rm_secrets WHERE tenant = ? AND secret_id = ?", (tenant, secret_id)
        )
    return f"v{row[0]}" if row and row[0] is not None else "v0"


async def record_deviations(
    engine: Engine,
    queue: SagaQueue | None,
    tenant: str,
    secret_id: str,
    deviations: list[Deviation],
    describe: Callable[[Deviation, str], tuple[Evidence, str]],
    severity: ev.Severity,
) -> None:
    """A token's deviations from its baseline as the watcher's evidence; ``describe`` words each one (with the
    secret's epoch, which its fingerprint carries)."""
    for deviation in deviations:
        evidence, summary = describe(deviation, await current_epoch(engine, tenant, secret_id))
        await record_anomaly(
            engine, tenant, secret_id, evidence, actor=WATCHER, severity=severity, summary=summary, queue=queue
        )


def evidence_of(e: ev.UsageAnomalyObserved) -> str:
    """One line for timelines and blast radius."""
    version = f" v{e.version}" if e.version is not None else ""
    status = f" [{e.status}]" if e.status != "observed" else ""
    return f"{e.signal}{version}{status} via {e.source}: {e.detail}"
