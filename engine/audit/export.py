"""Audit export for SIEMs: JSON lines or OCSF (API Activity, class 6003), and streaming sinks (a signed
webhook here, syslog in syslog_sink.py) with at-least-once delivery and a resumable cursor
(lz_audit_export_cursors).

Audit records never hold secret values (only ids, methods, outcomes and errors' safe messages), so an
export cannot leak one; each record carries its chain position and hash so the SIEM copy can be checked
against `lockzero audit verify`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import httpx
import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import InvalidInput, Unavailable
from lockzero.engine.security.outbound import redact_url

Format = Literal["jsonl", "ocsf"]
_OUTCOME_STATUS = {"ok": (1, "Success"), "denied": (2, "Failure"), "error": (2, "Failure"), "invalid": (2, "Failure")}


class ExportRecord(msgspec.Struct, frozen=True):
    position: int
    event_id: str
    at: str
    tenant: str
    actor_id: str
    actor_type: str
    method: str
    secret_id: str | None
    outcome: str
    detail: str
    chain_seq: int | None
    chain_hash: str | None


async def records(
    engine: Engine, tenant: str, after_position: int = 0, batch: int = 500
) -> AsyncIterator[ExportRecord]:
    """The tenant's audit records after ``after_position``, in position order."""
    naming.tenant_name(tenant)
    stream = naming.audit_stream(tenant)
    while True:
        async with engine.store.reader() as tx:
            rows = await tx.fetchall(
                "SELECT position, event_id, data, chain_seq, chain_hash FROM lz_events"
                " WHERE stream = ? AND position > ? ORDER BY position LIMIT ?",
                (stream, after_position, batch),
            )
        if not rows:
            return
        for position, event_id, data, seq, h in rows:
            e = ev.decode(bytes(data))
            if isinstance(e, ev.AuditRecorded):
                yield ExportRecord(
                    int(position),
                    str(event_id),
                    iso(e.at),
                    e.tenant,
                    e.actor_id,
                    e.actor_type,
                    e.method,
                    e.secret_id,
                    e.outcome,
                    e.detail,
                    None if seq is None else int(seq),
                    None if h is None else bytes(h).hex(),
                )
        after_position = int(rows[-1][0])


def to_ocsf(r: ExportRecord) -> dict[str, Any]:
    """OCSF 1.x API Activity (category 6 Application Activity, class 6003)."""
    status_id, status = _OUTCOME_STATUS.get(r.outcome, (0, "Unknown"))
    at_ms = _ms(r.at)
    return {
        "category_uid": 6,
        "class_uid": 6003,
        "activity_id": 99,
        "type_uid": 600399,
        "severity_id": 1 if status_id == 1 else 3,
        "time": at_ms,
        "status_id": status_id,
        "status": status,
        "status_detail": r.detail or None,
        "actor": {"user": {"uid": r.actor_id, "type": r.actor_type}},
        "api": {"operation": r.method, "service": {"name": "lockzero"}},
        "resources": [{"uid": r.secret_id, "type": "secret"}] if r.secret_id else [],
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "Lockzero", "vendor_name": "Lockzero"},
            "uid": r.event_id,
            "tenant_uid": r.tenant,
            "sequence": r.position,
        },
        "unmapped": {"chain_seq": r.chain_seq, "chain_hash": r.chain_hash, "outcome": r.outcome},
    }


def _ms(at: str) -> int:
    return int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000)


def encode(r: ExportRecord, fmt: Format) -> bytes:
    if fmt == "jsonl":
        return msgspec.json.encode(r)
    if fmt == "ocsf":
        return msgspec.json.encode(to_ocsf(r))
    raise InvalidInput("format must be jsonl or ocsf")


async def cursor(engine: Engine, sink: str) -> int:
    async with engine.store.reader() as tx:
        row = await tx.fetchone("SELECT position FROM lz_audit_export_cursors WHERE sink = ?", (sink,))
    return int(row[0]) if row else 0


async def _advance(engine: Engine, sink: str, position: int) -> None:
    async with engine.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO lz_audit_export_cursors (sink, position, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (sink) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            (sink, position, iso(engine.clock.now())),
        )


class SinkResult(msgspec.Struct, frozen=True):
    delivered: int
    cursor: int


Deliver = Callable[[list[ExportRecord]], Awaitable[None]]


async def stream(engine: Engine, tenant: str, sink: str, deliver: Deliver, *, batch: int = 200) -> SinkResult:
    """Hand the records after the sink's cursor to ``deliver`` in batches; the cursor moves past a batch only
    after ``deliver`` returned (the sink confirmed it), so a sink that was down gets everything again from its
    last confirmed batch: at-least-once, duplicates bounded by one batch."""
    if batch < 1:
        raise InvalidInput("batch must be at least 1")
    after = await cursor(engine, sink)
    delivered = 0
    pending: list[ExportRecord] = []

    async def flush() -> None:
        nonlocal delivered, after
        await deliver(pending)
        after = pending[-1].position
        await _advance(engine, sink, after)
        delivered += len(pending)
        pending.clear()

    async for r in records(engine, tenant, after):
        pending.append(r)
        if len(pending) >= batch:
            await flush()
    if pending:
        await flush()
    return SinkResult(delivered, after)


async def stream_to_webhook(
    engine: Engine,
    tenant: str,
    url: str,
    signing_secret: bytes,
    *,
    fmt: Format = "jsonl",
    batch: int = 200,
    sink: str | None = None,
) -> SinkResult:
    """POST the records after the sink's cursor in batches (newline-delimited JSON, header
    ``X-Lockzero-Signature: sha256=<hex HMAC of the body>``); a batch counts as delivered on a 2xx answer."""
    name = sink or f"webhook:{tenant}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(pending: list[ExportRecord]) -> None:
            body = b"\n".join(encode(r, fmt) for r in pending) + b"\n"
            signature = hmac.new(signing_secret, body, hashlib.sha256).hexdigest()
            try:
                resp = await client.post(
                    url,
                    content=body,
                    headers={"content-type": "application/x-ndjson", "x-lockzero-signature": f"sha256={signature}"},
                )
            except httpx.HTTPError as exc:
                raise Unavailable(f"audit sink {redact_url(url)} unreachable ({type(exc).__name__})") from None
            if resp.status_code // 100 != 2:
                raise Unavailable(f"audit sink {redact_url(url)} answered HTTP {resp.status_code}")

        return await stream(engine, tenant, name, post, batch=batch)
