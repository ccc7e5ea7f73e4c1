"""Read-model handlers of the console's operator events (kept apart so projections.py gains one line)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lockzero.engine.domain import events as ev
from lockzero.engine.domain.clock import iso
from lockzero.eventstore import RecordedEvent, Transaction


async def _operator_added(tx: Transaction, e: ev.OperatorAdded, _: RecordedEvent) -> None:
    await tx.write(
        "INSERT INTO rm_operators (operator_id, tenant, name, role, status, totp_required, totp_enrolled,"
        " setup_hash, setup_expires_at, created_at) VALUES (?, ?, ?, ?, 'invited', ?, 0, ?, ?, ?)",
        (
            e.operator_id,
            e.tenant,
            e.name,
            e.role,
            int(e.totp_required),
            e.setup_hash,
            iso(e.setup_expires_at),
            iso(e.at),
        ),
    )


async def _operator_activated(tx: Transaction, e: ev.OperatorActivated, _: RecordedEvent) -> None:
    # The set-up token is spent: clearing its hash makes the link useless even before it expires.
    await tx.write(
        "UPDATE rm_operators SET status = 'active', totp_enrolled = ?, setup_hash = NULL, setup_expires_at = NULL"
        " WHERE operator_id = ? AND tenant = ?",
        (int(e.totp_enrolled), e.operator_id, e.tenant),
    )


async def _operator_totp_required(tx: Transaction, e: ev.OperatorTotpRequired, _: RecordedEvent) -> None:
    await tx.write(
        "UPDATE rm_operators SET totp_required = 1 WHERE operator_id = ? AND tenant = ?", (e.operator_id, e.tenant)
    )


async def _operator_removed(tx: Transaction, e: ev.OperatorRemoved, _: RecordedEvent) -> None:
    await tx.write(
        "UPDATE rm_operators SET status = 'removed', setup_hash = NULL, setup_expires_at = NULL"
        " WHERE operator_id = ? AND tenant = ?",
        (e.operator_id, e.tenant),
    )


CONSOLE_HANDLERS: dict[type[ev.Event], Callable[[Transaction, Any, RecordedEvent], Awaitable[None]]] = {
    ev.OperatorAdded: _operator_added,
    ev.OperatorActivated: _operator_activated,
    ev.OperatorTotpRequired: _operator_totp_required,
    ev.OperatorRemoved: _operator_removed,
}
