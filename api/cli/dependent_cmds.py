"""`lockzero dependent add|list|remove`: the services that consume a secret."""

from __future__ import annotations

import argparse
import sys

from lockzero.api.cli.context import operator, tenant_engine
from lockzero.api.cli.output import emit_json, table
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import dependents


async def cmd_dependent_add(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "dependent.add", secret_id=args.secret_id),
    ):
        created = await dependents.add_dependent(
            engine,
            args.tenant,
            operator(),
            secret_id=args.secret_id,
            service=args.service,
            environment=args.environment,
            delivery=args.delivery,
        )
    if args.json:
        emit_json(created)
        return
    print(f"dependent {created.dependent_id}: {created.service} ({created.environment}) via {created.delivery}")
    if created.token:
        print(f"token:          {created.token}")
        print("The token is shown once; the service sends it as `Authorization: Bearer …`.", file=sys.stderr)
    if created.signing_secret:
        print(f"signing secret: {created.signing_secret}")
        print("Shown once; verify X-Lockzero-Signature (HMAC-SHA256 of the body) with it.", file=sys.stderr)


async def cmd_dependent_list(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "dependent.list", secret_id=args.secret_id),
    ):
        found = await dependents.list_dependents(engine, args.tenant, args.secret_id)
    if args.json:
        emit_json({"secret_id": args.secret_id, "dependents": found})
        return
    table(
        [
            (
                d.dependent_id,
                d.service,
                d.environment,
                d.delivery,
                d.target or "",
                d.adopted_version or "-",
                (d.last_seen_at or "-")[:19],
            )
            for d in found
        ],
        ("DEPENDENT", "SERVICE", "ENV", "DELIVERY", "TARGET", "HOLDS", "LAST SEEN"),
    )


async def cmd_dependent_remove(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "dependent.remove", secret_id=args.secret_id),
    ):
        removed = await dependents.remove_dependent(
            engine, args.tenant, operator(), secret_id=args.secret_id, dependent=args.dependent
        )
    if args.json:
        emit_json(removed)
        return
    print(
        f"removed {removed.dependent_id}: {removed.service} ({removed.environment}, {removed.delivery}) no longer"
        f" depends on {removed.secret_id}"
    )
