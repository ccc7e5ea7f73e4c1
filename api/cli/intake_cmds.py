"""`lockzero intake create|list|revoke`: the per-tenant tokens that POST /api/v1/alerts accepts.

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from lockzero.api.cli.output import emit_json, table

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, tenant_opt: argparse.ArgumentParser, parser_class: type[Any]
) -> None:
    cmd = sub.add_parser("intake", help="alert intake tokens (POST /api/v1/alerts)").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )
    create = cmd.add_parser("create", parents=[common, tenant_opt], help="create an intake token (printed once)")
    create.add_argument("--name", default="", help="a label, e.g. the Alertmanager that sends with it")
    cmd.add_parser("list", parents=[common, tenant_opt], help="list intake tokens (never the tokens)")
    revoke = cmd.add_parser("revoke", parents=[common, tenant_opt], help="revoke an intake token now")
    revoke.add_argument("intake_id")


async def cmd_intake_create(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine, operator
    from lockzero.engine.audit.records import audited
    from lockzero.engine.commands import intake

    async with open_engine() as engine, audited(engine, args.tenant, operator(), "intake.create"):
        created = await intake.create_intake(engine, args.tenant, operator(), name=args.name)
    if args.json:
        emit_json({"intake_id": created.intake_id, "name": created.name, "token": created.token})
        return
    print(f"intake id: {created.intake_id}")
    print(f"token:     {created.token}")
    print("This token is shown once. Store it now; Lockzero keeps only a keyed hash.", file=sys.stderr)


async def cmd_intake_list(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine
    from lockzero.engine.commands import intake

    async with open_engine() as engine:
        views = await intake.list_intakes(engine, args.tenant)
    if args.json:
        emit_json({"intakes": views})
    else:
        table(
            [(v.intake_id, v.name, v.status, v.created_at) for v in views], ("INTAKE ID", "NAME", "STATUS", "CREATED")
        )


async def cmd_intake_revoke(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine, operator
    from lockzero.engine.audit.records import audited
    from lockzero.engine.commands import intake

    async with open_engine() as engine, audited(engine, args.tenant, operator(), "intake.revoke"):
        view = await intake.revoke_intake(engine, args.tenant, args.intake_id, operator())
    if args.json:
        emit_json(view)
    else:
        print(f"revoked {view.intake_id} (tenant {view.tenant})")


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("intake", "create"): cmd_intake_create,
    ("intake", "list"): cmd_intake_list,
    ("intake", "revoke"): cmd_intake_revoke,
}
