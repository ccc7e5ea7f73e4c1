"""`lockzero operator add|list|remove`: the people who sign in to the console (engine/security/operators.py).

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lockzero.api.cli.choices import OPERATOR_ROLES
from lockzero.api.cli.output import emit_json, table

if TYPE_CHECKING:
    from lockzero.engine.config import Settings

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, tenant_opt: argparse.ArgumentParser, parser_class: type[Any]
) -> None:
    cmd = sub.add_parser("operator", help="people who sign in to the console").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )
    add = cmd.add_parser("add", parents=[common, tenant_opt], help="invite an operator (prints a one-time set-up link)")
    add.add_argument("name", help="the sign-in name: [a-z0-9._-], e.g. alice")
    add.add_argument(
        "--role",
        required=True,
        choices=OPERATOR_ROLES,
        metavar="ROLE",
        help="%(choices)s: viewer reads; operator also approves and rotates; admin also manages keys",
    )
    add.add_argument("--require-totp", action="store_true", help="the operator must enrol a TOTP second factor")
    cmd.add_parser("list", parents=[common, tenant_opt], help="list a tenant's operators (never their credentials)")
    remove = cmd.add_parser("remove", parents=[common, tenant_opt], help="remove an operator and end their sessions")
    remove.add_argument("name")
    totp = cmd.add_parser("require-totp", parents=[common, tenant_opt], help="require TOTP from an operator")
    totp.add_argument("name")


def console_base(settings: Settings) -> str:
    """Where people reach the console: LOCKZERO_PUBLIC_URL behind a proxy, else this server's own address."""
    public = os.environ.get("LOCKZERO_PUBLIC_URL", "").rstrip("/")
    if public:
        return public
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}"


async def cmd_operator_add(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine, operator, settings_with_key
    from lockzero.engine.audit.records import audited
    from lockzero.engine.security import operators

    settings = settings_with_key()
    async with open_engine() as engine, audited(engine, args.tenant, operator(), "operator.add"):
        added = await operators.add_operator(
            engine, args.tenant, args.name, args.role, operator(), require_totp=args.require_totp
        )
    link = f"{console_base(settings)}/setup?token={quote(added.setup_token)}"
    if args.json:
        emit_json({"operator": added.operator, "setup_link": link, "expires_at": added.setup_expires_at})
        return
    print(f"operator {added.operator.name} ({added.operator.role}) invited to tenant {args.tenant}")
    print(link)
    print(
        f"Shown once, valid until {added.setup_expires_at}: give it to {added.operator.name} only;"
        " it sets their password" + (" and TOTP." if args.require_totp else "."),
        file=sys.stderr,
    )


async def cmd_operator_list(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine
    from lockzero.engine.security import operators

    async with open_engine() as engine:
        found = await operators.list_operators(engine, args.tenant)
    if args.json:
        emit_json({"operators": found})
        return
    table(
        [
            [
                o.name,
                o.role,
                o.status,
                "enrolled" if o.totp_enrolled else ("required" if o.totp_required else "off"),
                o.created_at[:19],
            ]
            for o in found
        ],
        ["NAME", "ROLE", "STATUS", "TOTP", "CREATED"],
    )


async def cmd_operator_remove(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine, operator
    from lockzero.engine.audit.records import audited
    from lockzero.engine.security import operators

    async with open_engine() as engine, audited(engine, args.tenant, operator(), "operator.remove"):
        removed = await operators.remove_operator(engine, args.tenant, args.name, operator())
    if args.json:
        emit_json({"operator": removed})
        return
    print(f"operator {removed.name} removed from tenant {args.tenant}; their sessions ended")


async def cmd_operator_require_totp(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine, operator
    from lockzero.engine.audit.records import audited
    from lockzero.engine.security import operators

    async with open_engine() as engine, audited(engine, args.tenant, operator(), "operator.require_totp"):
        changed = await operators.require_totp(engine, args.tenant, args.name, operator())
    if args.json:
        emit_json({"operator": changed})
        return
    print(f"operator {changed.name} now needs a TOTP code to sign in")


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("operator", "add"): cmd_operator_add,
    ("operator", "list"): cmd_operator_list,
    ("operator", "remove"): cmd_operator_remove,
    ("operator", "require-totp"): cmd_operator_require_totp,
}
