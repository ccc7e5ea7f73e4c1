"""`lockzero audit verify|…`: the tamper-evident audit chain from the command line.

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from api.cli.output import emit_json
from api.errors import EXIT_FAILURE, EXIT_OK
from engine import audit_chain

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )
    verify = audit.add_parser(
        "verify",
        parents=[common],
        help="walk the hash chain and checkpoints; exit 1 names the first bad position",
    )
    verify.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), help="one tenant (default: all)")
    verify.add_argument("--since", type=int, default=0, metavar="POS", help="start at this position")


async def cmd_audit_verify(args: argparse.Namespace) -> int:
    from api.cli.handlers import open_engine

    async with open_engine() as engine:
        result = await audit_chain.verify(engine, args.tenant, args.since)
    if args.json:
        emit_json(result)
    if result.ok:
        if not args.json:
            print(result.message())
        return EXIT_OK
    print(f"lockzero: {result.message()}", file=sys.stderr)
    for f in result.failures[1:]:
        print(f"lockzero: also position {f.position}: {f.kind} ({f.detail}) in {f.tenant!r}", file=sys.stderr)
    return EXIT_FAILURE


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("audit", "verify"): cmd_audit_verify,
}
