"""`lockzero audit verify|…`: the tamper-evident audit chain from the command line.

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from lockzero.api.cli.output import emit_json
from lockzero.api.errors import EXIT_FAILURE, EXIT_OK
from lockzero.engine.audit import chain as audit_chain

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
    ex = audit.add_parser("export", parents=[common], help="audit records as JSON lines or OCSF, oldest first")
    ex.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), required="LOCKZERO_TENANT" not in os.environ)
    ex.add_argument("--since", default="0", metavar="POS|TIME", help="a position, or an ISO-8601 time with zone")
    ex.add_argument("--format", choices=("jsonl", "ocsf"), default="jsonl")
    cp = audit.add_parser(
        "checkpoint", parents=[common], help="sign the chain head now and push it to LOCKZERO_AUDIT_WITNESS"
    )
    cp.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), help="one tenant (default: all)")
    pk = audit.add_parser("public-key", parents=[common], help="the tenant's checkpoint verification key (PEM)")
    pk.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), required="LOCKZERO_TENANT" not in os.environ)


async def cmd_audit_verify(args: argparse.Namespace) -> int:
    from lockzero.api.cli.handlers import open_engine

    witness = audit_chain.witness_from_url(os.environ.get("LOCKZERO_AUDIT_WITNESS"))
    async with open_engine() as engine:
        result = await audit_chain.verify(engine, args.tenant, args.since, witness)
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


async def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from lockzero.api.cli.handlers import open_engine

    witness = audit_chain.witness_from_url(os.environ.get("LOCKZERO_AUDIT_WITNESS"))
    async with open_engine() as engine:
        if args.tenant:
            results = [await audit_chain.checkpoint(engine, args.tenant, witness)]
        else:
            results, _ = await audit_chain.audit_pass(engine, witness)
    if args.json:
        emit_json(results)
    else:
        for r in results:
            print(f"{r.tenant}: signed {len(r.created)} new checkpoint(s), pushed {r.witnessed} to the witness")
    failed = [r for r in results if r.witness_error]
    for r in failed:
        print(f"lockzero: error: {r.tenant}: {r.witness_error}", file=sys.stderr)
    return EXIT_FAILURE if failed else EXIT_OK


async def cmd_audit_public_key(args: argparse.Namespace) -> None:
    from lockzero.api.cli.handlers import open_engine

    async with open_engine() as engine:
        pem = await audit_chain.public_key_pem(engine, args.tenant)
    if args.json:
        emit_json({"tenant": args.tenant, "algorithm": "Ed25519", "public_key_pem": pem})
    else:
        print(pem, end="")


async def cmd_audit_export(args: argparse.Namespace) -> None:
    from datetime import datetime

    from lockzero.api.cli.handlers import open_engine
    from lockzero.engine.audit import export as audit_export
    from lockzero.engine.domain.errors import InvalidInput

    after, since_time = 0, None
    if args.since.isdigit():
        after = int(args.since)
    else:
        try:
            since_time = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput("--since must be a position or an ISO-8601 time, e.g. 2030-01-01T00:00:00Z") from None
        if since_time.tzinfo is None:
            raise InvalidInput("--since needs a time zone, e.g. 2030-01-01T00:00:00Z")
    out = sys.stdout.buffer
    async with open_engine() as engine:
        async for r in audit_export.records(engine, args.tenant, after):
            if since_time is not None and datetime.fromisoformat(r.at.replace("Z", "+00:00")) < since_time:
                continue
            out.write(audit_export.encode(r, args.format) + b"\n")
    out.flush()


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("audit", "verify"): cmd_audit_verify,
    ("audit", "checkpoint"): cmd_audit_checkpoint,
    ("audit", "export"): cmd_audit_export,
    ("audit", "public-key"): cmd_audit_public_key,
}
