"""Reading the audit index (rm_audit) with filters and stable cursors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.queries.paging import decode_cursor, encode_cursor, page_limit

OUTCOMES = ("ok", "denied", "error", "invalid")


class AuditEntry(msgspec.Struct, frozen=True):
    event_id: str
    at: str
    actor_id: str
    actor_type: str
    method: str
    secret_id: str | None
    outcome: str
    detail: str


class AuditPage(msgspec.Struct, frozen=True):
    events: list[AuditEntry]
    next_cursor: str | None


def _time(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{what} must be an ISO-8601 time, e.g. 2026-11-27T10:00:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{what} needs a time zone, e.g. 2026-11-27T10:00:00Z")
    return iso(parsed)


async def audit_log(
    engine: Engine,
    tenant: str,
    *,
    secret_id: str | None = None,
    actor_id: str | None = None,
    method: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
    visible: tuple[str, ...] = (),
) -> AuditPage:
    """Newest first. ``visible`` (LIKE patterns from a key's scopes) hides other secrets' entries."""
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidInput(f"outcome must be one of: {', '.join(OUTCOMES)}")
    n = page_limit(limit)
    where: list[str] = ["tenant = ?"]
    params: list[object] = [tenant]
    for column, value in (("secret_id", secret_id), ("actor_id", actor_id), ("method", method), ("outcome", outcome)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if (t := _time(since, "since")) is not None:
        where.append("at >= ?")
        params.append(t)
    if (t := _time(until, "until")) is not None:
        where.append("at < ?")
        params.append(t)
    if visible:
        where.append("(" + " OR ".join(["secret_id LIKE ? ESCAPE '\\'"] * len(visible)) + ")")
        params.extend(visible)
    if cursor is not None:
        (position,) = decode_cursor(cursor, 1)
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < 2**62:
            raise InvalidInput("cursor is not one this server returned; start again without a cursor")
        where.append("position < ?")
        params.append(position)
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT position, audit_id, at, actor_id, actor_type, method, secret_id, outcome, detail FROM rm_audit"
            f" WHERE {' AND '.join(where)} ORDER BY position DESC LIMIT ?",
            (*params, n + 1),
        )
    entries = [_entry(r) for r in rows[:n]]
    return AuditPage(entries, encode_cursor([rows[n - 1][0]]) if len(rows) > n else None)


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    _, audit_id, at, actor_id, actor_type, method, secret_id, outcome, detail = row
    return AuditEntry(audit_id, parse_iso(at).isoformat(), actor_id, actor_type, method, secret_id, outcome, detail)
