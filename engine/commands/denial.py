"""A person denies a rotation that waits for approvals: it ends cancelled, with who and why, and never runs."""

from __future__ import annotations

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.approvals import acting_person
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.errors import Conflict, InvalidInput
from lockzero.engine.domain.rotation_status import AWAITING_APPROVAL
from lockzero.engine.queries.rotations import rotation_of, secret_of_rotation
from lockzero.engine.unit_of_work import Decision, change_secret


class DenialResult(msgspec.Struct, frozen=True):
    rotation_id: str
    secret_id: str
    denied_by: str
    reason: str
    status: str


async def deny(engine: Engine, tenant: str, rotation_id: str, person: str, reason: str) -> DenialResult:
    """One person's no is enough: approvals need every approver, a denial needs one. Only a rotation still
    waiting for approvals can be denied; once the saga started, roll back or revoke instead."""
    person, actor = acting_person(person, "the denying person must be named (1-128 printable characters)")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("say why you deny it (the reason goes to the rotation's history and the audit log)")
    if len(reason) > 500:
        raise InvalidInput("the reason is longer than 500 characters")
    secret_id = await secret_of_rotation(engine, tenant, rotation_id)

    def decide(secret: Secret | None) -> Decision[DenialResult]:
        rotation = rotation_of(secret, tenant, rotation_id)
        if rotation.status != AWAITING_APPROVAL:
            raise Conflict(
                f"rotation {rotation_id} is {rotation.status}, not waiting for approvals; it cannot be denied"
            )
        cancelled = ev.RotationFinished(
            at=engine.clock.now(),
            tenant=tenant,
            secret_id=secret_id,
            rotation_id=rotation_id,
            outcome="cancelled",
            reason=f"denied by {person}: {reason}",
        )
        return Decision(DenialResult(rotation_id, secret_id, person, reason, "cancelled"), [cancelled])

    return await change_secret(engine, tenant, secret_id, actor, decide)
