"""Human approvals of a rotation that policy holds back: N distinct people, then the saga starts."""

from __future__ import annotations

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.errors import Conflict, InvalidInput
from lockzero.engine.domain.rotation_status import fold_status
from lockzero.engine.queries.rotations import rotation_of, secret_of_rotation
from lockzero.engine.unit_of_work import Decision, change_secret


class ApprovalResult(msgspec.Struct, frozen=True):
    rotation_id: str
    secret_id: str
    approvers: list[str]
    required: int
    status: str


def acting_person(person: str, unnamed: str) -> tuple[str, ev.EventMeta]:
    """The person who approves or denies, as named (``unnamed``: the error when the name is empty or unprintable)."""
    person = person.strip()
    if not person or len(person) > 128 or any(ord(c) < 32 for c in person):
        raise InvalidInput(unnamed)
    return person, ev.EventMeta(actor_id=person, actor_type="person")


async def approve(
    engine: Engine, tenant: str, rotation_id: str, person: str, queue: SagaQueue | None = None
) -> ApprovalResult:
    person, actor = acting_person(person, "--as must name the approving person (1-128 printable characters)")
    secret_id = await secret_of_rotation(engine, tenant, rotation_id)

    def decide(secret: Secret | None) -> Decision[ApprovalResult]:
        rotation = rotation_of(secret, tenant, rotation_id)
        # A finished rotation (denied, or cancelled by a revocation) is never approved back to life.
        if rotation.approved or rotation.finished:
            raise Conflict(f"rotation {rotation_id} needs no (more) approvals; it is {rotation.status}")
        if person in rotation.approvers:
            raise Conflict(f"{person} already approved {rotation_id}; approvals must come from distinct people")
        now = engine.clock.now()
        approvers = (*rotation.approvers, person)
        new: list[ev.Event] = [
            ev.RotationApproved(at=now, tenant=tenant, secret_id=secret_id, rotation_id=rotation_id, by=person)
        ]
        met = len(approvers) >= rotation.required_approvals
        if met:
            new.append(
                ev.RotationApprovalsMet(
                    at=now, tenant=tenant, secret_id=secret_id, rotation_id=rotation_id, approvers=approvers
                )
            )

        async def start_saga() -> None:
            if queue is not None:
                await queue.enqueue(tenant, secret_id, rotation_id)

        result = ApprovalResult(
            rotation_id,
            secret_id,
            list(approvers),
            rotation.required_approvals,
            fold_status(new, rotation.status),
        )
        return Decision(result, new, then=start_saga if met else None)

    return await change_secret(engine, tenant, secret_id, actor, decide)
