"""`lockzero audit list|export|verify|…`: the audit trail and its tamper-evident chain from the command line.

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from lockzero.api.cli.choices import AUDIT_OUTCOMES
from lockzero.api.cli.output import emit_json

EXIT_OK, EXIT_FAILURE = 0, 1

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    from lockzero.api.cli.parser import tenant_parent

    audit = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )
    ls = audit.add_parser(
        "list", parents=[common, tenant_parent()], help="audit records, newest first, filtered (get_audit_log)"
    )
    ls.add_argument("--secret", dest="secret_id", metavar="SECRET_ID")
    ls.add_argument("--actor", dest="actor_id", metavar="ACTOR_ID", help="e.g. cli:alice or a key id")
    ls.add_argument("--method", help="e.g. rotate_secret, secret.rotate")
    ls.add_argument("--outcome", choices=AUDIT_OUTCOMES, metavar="O", help="one of: %(choices)s")
    ls.add_argument("--since", metavar="TIME", help="ISO-8601 time, inclusive")
    ls.add_argument("--until", metavar="TIME", help="ISO-8601 time, exclusive")
    ls.add_argument("--limit", type=int, default=50, help="page size (at most 200)")
    ls.add_argument("--cursor", help="next page: the cursor the previous page printed")
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
    st = audit.add_parser(
        "stream",
        parents=[common],
        help="send the records after the sink's cursor to a SIEM (at-least-once; run it again to resume)",
        epilog="An https:// sink gets signed NDJSON batches (HMAC key: LOCKZERO_AUDIT_SINK_SECRET); syslog sinks get"
        " RFC 5424 messages, octet-counted (RFC 6587), over TCP or TLS (RFC 5425).",
    )
    st.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), required="LOCKZERO_TENANT" not in os.environ)
    st.add_argument("--sink", required=True, metavar="syslog+tcp://H:P|syslog+tls://H:P|https://URL")
    st.add_argument("--format", choices=("jsonl", "ocsf"), default="jsonl", help="each record's body")
    st.add_argument("--batch", type=int, default=200, metavar="N", help="records per delivery (cursor step)")
    st.add_argument("--ca-file", metavar="PEM", help="syslog+tls: trust this CA for the receiver (default: system)")
    st.add_argument("--client-cert", metavar="PEM", help="syslog+tls: present this certificate to the receiver")
    st.add_argument("--client-key", metavar="PEM", help="syslog+tls: the client certificate's key")
    cp = audit.add_parser(
        "checkpoint", parents=[common], help="sign the chain head now and push it to LOCKZERO_AUDIT_WITNESS"
    )
    cp.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), help="one tenant (default: all)")
    pk = audit.add_parser("public-key", parents=[common], help="the tenant's checkpoint verification key (PEM)")
    pk.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), required="LOCKZERO_TENANT" not in os.environ)


async def cmd_audit_verify(args: argparse.Namespace) -> int:
    from lockzero.api.cli.context import open_engine
    from lockzero.engine.audit import chain as audit_chain

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
    from lockzero.api.cli.context import open_engine
    from lockzero.engine.audit import chain as audit_chain

    witness = audit_chain.witness_from_url(os.environ.get("LOCKZERO_AUDIT_WITNESS"))
    async with open_engine() as engine:
        if args.tenant:
            results = [await audit_chain.checkpoint(engine, args.tenant, witness)]
        else:
            results = await audit_chain.checkpoint_all(engine, witness)
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
    from lockzero.api.cli.context import open_engine
    from lockzero.engine.audit import chain as audit_chain

    async with open_engine() as engine:
        pem = await audit_chain.public_key_pem(engine, args.tenant)
    if args.json:
        emit_json({"tenant": args.tenant, "algorithm": "Ed25519", "public_key_pem": pem})
    else:
        print(pem, end="")


async def cmd_audit_export(args: argparse.Namespace) -> None:
    from datetime import datetime

    from lockzero.api.cli.context import open_engine
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


async def cmd_audit_stream(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import open_engine
    from lockzero.engine.audit import export as audit_export
    from lockzero.engine.audit import syslog_sink
    from lockzero.engine.domain.errors import InvalidInput
    from lockzero.engine.security.outbound import redact_url

    sink: str = args.sink
    if sink.startswith("syslog+"):
        target = syslog_sink.parse_target(sink)
        tls = syslog_sink.TlsFiles(args.ca_file, args.client_cert, args.client_key)
        if target.transport == "tls":
            syslog_sink.tls_context(tls)  # a bad file is a usage error before anything is opened
        shown = str(target)
    elif sink.startswith(("https://", "http://")):
        secret = os.environ.get("LOCKZERO_AUDIT_SINK_SECRET", "")
        if len(secret) < 16:
            raise InvalidInput("an HTTP sink needs LOCKZERO_AUDIT_SINK_SECRET (16+ characters) to sign its batches")
        shown = redact_url(sink)
    else:
        raise InvalidInput("--sink must be syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT or an https:// URL")
    async with open_engine() as engine:
        if sink.startswith("syslog+"):
            result = await syslog_sink.stream_to_syslog(
                engine, args.tenant, sink, fmt=args.format, batch=args.batch, tls=tls
            )
        else:
            result = await audit_export.stream_to_webhook(
                engine, args.tenant, sink, secret.encode(), fmt=args.format, batch=args.batch
            )
    if args.json:
        emit_json({"sink": shown, "delivered": result.delivered, "cursor": result.cursor})
    else:
        print(f"delivered {result.delivered} record(s) to {shown}; confirmed up to position {result.cursor}")


async def cmd_audit_list(args: argparse.Namespace) -> None:
    from lockzero.api.cli.context import operator, tenant_engine
    from lockzero.api.cli.output import table
    from lockzero.engine.audit import log as audit_log
    from lockzero.engine.audit.records import audited

    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "audit.list", secret_id=args.secret_id),
    ):
        page = await audit_log.audit_log(
            engine,
            args.tenant,
            secret_id=args.secret_id,
            actor_id=args.actor_id,
            method=args.method,
            outcome=args.outcome,
            since=args.since,
            until=args.until,
            cursor=args.cursor,
            limit=args.limit,
        )
    if args.json:
        emit_json(page)
        return
    table(
        [
            (e.at[:23], f"{e.actor_type}:{e.actor_id}", e.method, e.secret_id or "-", e.outcome, e.detail)
            for e in page.events
        ],
        ("AT", "ACTOR", "METHOD", "SECRET", "OUTCOME", "DETAIL"),
    )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("audit", "list"): cmd_audit_list,
    ("audit", "verify"): cmd_audit_verify,
    ("audit", "checkpoint"): cmd_audit_checkpoint,
    ("audit", "export"): cmd_audit_export,
    ("audit", "stream"): cmd_audit_stream,
    ("audit", "public-key"): cmd_audit_public_key,
}
