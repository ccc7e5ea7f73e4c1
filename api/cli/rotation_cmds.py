"""`lockzero rotation list|show` and `lockzero approve`: rotations across a tenant, and approving one."""

from __future__ import annotations

import argparse
import getpass
import sys

from lockzero.api.cli.context import operator, settings_with_key, tenant_engine
from lockzero.api.cli.output import emit_json, table
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import approvals
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.queries import rotations
from lockzero.engine.security import operators as operator_accounts


async def cmd_rotation_list(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "rotation.list", secret_id=args.secret_id),
    ):
        page = await rotations.list_rotations(
            engine, args.tenant, secret_id=args.secret_id, status=args.status, limit=args.limit, cursor=args.cursor
        )
    if args.json:
        emit_json(page)
        return
    table(
        [
            (
                r.rotation_id,
                r.secret_id,
                r.kind,
                r.status,
                f"{r.from_version or '-'}->{r.to_version or '-'}",
                r.requested_at[:19],
                f"{r.actor_type}:{r.actor_id}",
                r.reason,
            )
            for r in page.rotations
        ],
        ("ROTATION", "SECRET", "KIND", "STATUS", "VERSIONS", "REQUESTED", "BY", "REASON"),
    )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


async def cmd_rotation_show(args: argparse.Namespace) -> None:
    async with tenant_engine(args.tenant) as engine, audited(engine, args.tenant, operator(), "rotation.show"):
        d = await rotations.rotation_detail(engine, args.tenant, args.rotation_id)
    if args.json:
        emit_json(d)
        return
    approvals_note = f", approvals {len(d.approvers)}/{d.required_approvals}" if d.required_approvals else ""
    print(
        f"{d.rotation_id}: {d.kind} of {d.secret_id} {d.from_version or '-'} -> {d.to_version or '-'}, {d.status}"
        f"{approvals_note}"
    )
    print(f"requested {d.requested_at} by {d.actor_type}:{d.actor_id}: {d.reason}")
    table(
        [
            (
                s.step,
                s.status,
                s.started_at[11:23],
                "-" if s.duration_ms is None else f"{s.duration_ms / 1000:.3f}",
                s.detail or "",
            )
            for s in d.steps
        ],
        ("STEP", "STATUS", "STARTED", "SECONDS", "DETAIL"),
    )


def _operator_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if sys.stdin is None or not sys.stdin.isatty():
        raise InvalidInput("approve: give the operator's password on a terminal, or pipe it with --password-stdin")
    return getpass.getpass(f"password of operator {args.person}: ")


async def cmd_approve(args: argparse.Namespace) -> None:
    """An approval is a person's: the operator signs in (password, and TOTP when enrolled) like on the console."""
    settings = settings_with_key()
    async with tenant_engine(args.tenant) as engine:
        password = _operator_password(args)
        queue = None
        if settings.redis_url:
            from lockzero.workers.arq_worker import ArqQueue

            queue = await ArqQueue.connect(settings.redis_url)
        person = ev.EventMeta(actor_id=args.person, actor_type="person")
        try:
            async with audited(engine, args.tenant, person, "rotation.approve"):
                who = await operator_accounts.sign_in(
                    engine, args.tenant, args.person, password, args.totp, f"cli:{getpass.getuser()}"
                )
                operator_accounts.require_role(who, "operator", "approving a rotation")
                result = await approvals.approve(engine, args.tenant, args.rotation_id, who.name, queue)
        finally:
            if queue is not None:
                await queue.close()
    if args.json:
        emit_json(result)
        return
    print(
        f"{args.person} approved {result.rotation_id} ({result.secret_id}):"
        f" {len(result.approvers)}/{result.required} approvals, {result.status.replace('_', ' ')}"
    )
