"""The audit log for people: search by actor, method, outcome, secret and time, page by page (the audit index's
own cursors), and export what the search selects as JSON lines or CSV. Exports are audited themselves."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import urlencode

import msgspec
from litestar import get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Response, Stream

from lockzero.api.console.kit import SECURITY_HEADERS, AnyRequest, Kit, error_page, error_status, person
from lockzero.api.console.sessions import ConsoleSession
from lockzero.engine.audit.log import OUTCOMES, AuditEntry, audit_log
from lockzero.engine.audit.records import record
from lockzero.engine.domain.errors import InvalidInput, LockzeroError

PAGE = 50
EXPORT_BATCH = 200
#: Filters in the query string; empty values mean "any".
FILTERS = ("actor", "method", "outcome", "secret", "since", "until")
#: An export holds at most this many records; narrow the search for more.
EXPORT_MAX = 100_000
CSV_COLUMNS = ("at", "actor_id", "actor_type", "method", "secret_id", "outcome", "detail", "event_id")


def _when(value: str, what: str) -> str | None:
    """A time from the form: an <input type=datetime-local> value is taken as UTC; ISO-8601 with a zone as is."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{what} must be a time like 2026-11-27T10:00 (UTC)") from None
    return value if parsed.tzinfo is not None else value + "Z"


def _filters(request: AnyRequest) -> dict[str, str]:
    return {name: request.query_params.get(name, "")[:256].strip() for name in FILTERS}


class Search(msgspec.Struct, frozen=True):
    actor_id: str | None
    method: str | None
    outcome: str | None
    secret_id: str | None
    since: str | None
    until: str | None


def _search(f: dict[str, str]) -> Search:
    if f["outcome"] and f["outcome"] not in OUTCOMES:
        raise InvalidInput(f"outcome must be one of: {', '.join(OUTCOMES)}")
    return Search(
        f["actor"] or None,
        f["method"] or None,
        f["outcome"] or None,
        f["secret"] or None,
        _when(f["since"], "from"),
        _when(f["until"], "until"),
    )


def _csv_line(values: list[str]) -> str:
    out = io.StringIO()
    # Spreadsheets run cells that start with = + - @ as formulas: a leading quote keeps them text.
    csv.writer(out).writerow([f"'{v}" if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in values])
    return out.getvalue()


def routes(kit: Kit) -> list[HTTPRouteHandler]:
    engine, handlers = kit.engine, kit.handlers

    async def entries(
        session: ConsoleSession, s: Search, cursor: str | None, limit: int
    ) -> tuple[list[AuditEntry], str | None]:
        page = await audit_log(
            engine,
            session.operator.tenant,
            secret_id=s.secret_id,
            actor_id=s.actor_id,
            method=s.method,
            outcome=s.outcome,
            since=s.since,
            until=s.until,
            cursor=cursor,
            limit=limit,
        )
        return page.events, page.next_cursor

    @get("/audit", exception_handlers=handlers)
    async def audit_page(request: AnyRequest) -> Response[str]:
        session = await kit.signed_in(request)
        f = _filters(request)
        cursor = request.query_params.get("cursor") or None
        try:
            found, following = await entries(session, _search(f), cursor, PAGE)
        except LockzeroError as exc:
            return kit.page("audit.html", session, f=f, entries=[], more=None, outcomes=OUTCOMES, query="", first=True,
                            message=exc.message, message_kind="error", status=error_status(exc))  # fmt: skip
        query = urlencode({k: v for k, v in f.items() if v})
        more = urlencode({**{k: v for k, v in f.items() if v}, "cursor": following}) if following else None
        return kit.page("audit.html", session, title="Audit log", f=f, entries=found, more=more,
                        outcomes=OUTCOMES, query=query, first=cursor is None)  # fmt: skip

    async def export(request: AnyRequest, kind: str) -> Response[str] | Stream:
        session = await kit.signed_in(request)
        f = _filters(request)
        try:
            search = _search(f)
            first, following = await entries(session, search, None, EXPORT_BATCH)
        except LockzeroError as exc:
            return error_page(error_status(exc), exc.message, session)
        detail = " ".join(f"{k}={v}" for k, v in f.items() if v)
        await record(engine, session.operator.tenant, person(session), f"audit.export_{kind}", "ok", detail=detail)

        async def lines() -> AsyncIterator[str]:
            batch, cursor, sent = first, following, 0
            if kind == "csv":
                yield _csv_line(list(CSV_COLUMNS))
            while True:
                for e in batch:
                    if kind == "csv":
                        yield _csv_line([e.at, e.actor_id, e.actor_type, e.method, e.secret_id or "", e.outcome,
                                         e.detail, e.event_id])  # fmt: skip
                    else:
                        yield msgspec.json.encode(e).decode() + "\n"
                    sent += 1
                if cursor is None or sent >= EXPORT_MAX:
                    return
                batch, cursor = await entries(session, search, cursor, EXPORT_BATCH)

        media = "text/csv" if kind == "csv" else "application/x-ndjson"
        name = f"lockzero-audit-{session.operator.tenant}.{'csv' if kind == 'csv' else 'jsonl'}"
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        return Stream(lines(), media_type=media, headers=headers)

    @get("/audit/export.jsonl", exception_handlers=handlers)
    async def export_jsonl(request: AnyRequest) -> Response[str] | Stream:
        return await export(request, "jsonl")

    @get("/audit/export.csv", exception_handlers=handlers)
    async def export_csv(request: AnyRequest) -> Response[str] | Stream:
        return await export(request, "csv")

    return [audit_page, export_jsonl, export_csv]
