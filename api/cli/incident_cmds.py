"""`lockzero incident list|show|resolve|timeline`: the get_active_incidents tool's listing, the console's
incident views, and resolving by hand with a note."""

from __future__ import annotations

import argparse

from lockzero.api.cli.context import operator, tenant_engine
from lockzero.api.cli.output import emit_json, table
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import incidents
from lockzero.engine.queries import console_queries, timeline


async def cmd_incident_list(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "incident.list", secret_id=args.secret_id),
    ):
        if args.all:
            rows = [
                r
                for r in await console_queries.incidents(engine, args.tenant)
                if (args.kind is None or r.kind == args.kind)
                and (args.severity is None or r.severity == args.severity)
                and (args.secret_id is None or r.secret_id == args.secret_id)
            ]
            found = [(r.incident_id, r.kind, r.severity, r.secret_id, r.status, r.opened_at, r.summary) for r in rows]
            cursor = None
            document: object = {"incidents": rows, "next_cursor": None}
        else:
            page = await incidents.active_incidents(
                engine,
                args.tenant,
                kind=args.kind,
                severity=args.severity,
                secret_id=args.secret_id,
                cursor=args.cursor,
                limit=args.limit,
            )
            found = [
                (i.incident_id, i.kind, i.severity, i.secret_id, i.status, i.opened_at, i.summary)
                for i in page.incidents
            ]
            cursor, document = page.next_cursor, page
    if args.json:
        emit_json(document)
        return
    table(
        [(i, k, sev, sid or "-", st, at[:19], summary) for i, k, sev, sid, st, at, summary in found],
        ("INCIDENT", "KIND", "SEVERITY", "SECRET", "STATUS", "OPENED", "SUMMARY"),
    )
    if cursor:
        print(f"more: --cursor {cursor}")


async def cmd_incident_show(args: argparse.Namespace) -> None:
    async with tenant_engine(args.tenant) as engine, audited(engine, args.tenant, operator(), "incident.show"):
        d = await incidents.incident_detail(engine, args.tenant, args.incident_id)
    if args.json:
        emit_json(d)
        return
    rows = [
        ("incident", d.incident_id),
        ("kind", d.kind),
        ("severity", d.severity),
        ("secret", d.secret_id or "-"),
        ("status", d.status),
        ("summary", d.summary),
        ("opened", d.opened_at),
        ("progress", d.progress or "-"),
        ("resolved", f"{d.resolved_at} by {d.resolved_by}" if d.resolved_at else "no"),
        ("resolution", d.resolution or "-"),
        ("links", ", ".join(f"{kind} {ref}" for kind, ref in d.links) or "none"),
    ]
    table(rows, ("FIELD", "VALUE"))
    print(f"`lockzero incident timeline {d.incident_id}` replays it")


async def cmd_incident_resolve(args: argparse.Namespace) -> None:
    async with tenant_engine(args.tenant) as engine, audited(engine, args.tenant, operator(), "incident.resolve"):
        d = await incidents.resolve_incident(engine, args.tenant, args.incident_id, operator(), args.note)
    if args.json:
        emit_json(d)
        return
    print(f"resolved {d.incident_id} ({d.kind} on {d.secret_id or '-'}) as {d.resolved_by}: {d.resolution}")


async def cmd_incident_timeline(args: argparse.Namespace) -> None:
    async with tenant_engine(args.tenant) as engine:
        tl = await timeline.incident_timeline(engine, args.tenant, args.incident_id)
    if args.json or args.format == "json":
        emit_json(tl)
        return
    took = f", resolved after {tl.duration_ms / 1000:.3f} s" if tl.duration_ms is not None else ""
    print(f"incident {tl.incident_id} ({tl.kind}, {tl.severity}) on {tl.secret_id or '-'}: {tl.status}{took}")
    for e in tl.entries:
        print(f"  {e.at[11:23]}  +{e.offset_ms / 1000:8.3f}s  {e.actor_type}:{e.actor_id:<24} {e.summary}")
