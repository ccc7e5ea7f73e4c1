"""`lockzero report compliance`: the tenant's compliance report as JSON or a self-contained HTML page.

Kept apart from parser.py/handlers.py so those shared files only gain one registration line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="reports for auditors").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )
    c = report.add_parser(
        "compliance",
        parents=[common],
        help="rotation age against policy, overdue secrets, coverage, rotations, time to remediation, incidents,"
        " approvals",
    )
    c.add_argument("--tenant", default=os.environ.get("LOCKZERO_TENANT"), required="LOCKZERO_TENANT" not in os.environ)
    c.add_argument("--format", choices=("html", "json"), default="json")
    c.add_argument("--days", type=int, default=30, metavar="N", help="the window: the last N days (default 30)")
    c.add_argument("--out", metavar="FILE", help="write the report here (default: standard output)")


async def cmd_report_compliance(args: argparse.Namespace) -> None:
    import msgspec

    from lockzero.api.cli.handlers import open_engine
    from lockzero.engine.domain.errors import InvalidInput
    from lockzero.engine.queries.compliance import compliance_report
    from lockzero.engine.queries.compliance_html import render_html

    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise InvalidInput(f"--out: the folder {str(out.parent)!r} does not exist")
    async with open_engine() as engine:
        report = await compliance_report(engine, args.tenant, args.days)
    if args.format == "html":
        body = render_html(report).encode()
    else:
        body = msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"
    if out is None:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    try:
        out.write_bytes(body)
    except OSError as exc:
        raise InvalidInput(f"--out: cannot write {str(out)!r} ({exc.strerror})") from None
    print(f"wrote the {args.format.upper()} compliance report of {args.tenant!r} to {out}", file=sys.stderr)


HANDLERS: dict[tuple[str, str | None], Handler] = {("report", "compliance"): cmd_report_compliance}
