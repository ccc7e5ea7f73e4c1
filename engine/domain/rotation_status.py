"""A rotation's status, derived in one place: the aggregate, the read model and the commands all ask this module.

The status is a function of the rotation's events alone, so every reader that folds the same events agrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, get_args

from lockzero.engine.domain import events as ev

RotationStatus = Literal[
    "pending_approval", "in_progress", "compensating", "completed", "compensated", "failed", "cancelled"
]
ALL_STATUSES: Final = frozenset(get_args(RotationStatus))
#: Waiting for people: neither the saga nor the reconciler may touch it.
AWAITING_APPROVAL: Final[RotationStatus] = "pending_approval"
#: The saga is (or should be) running: what the reconciler resumes when it stalls.
RUNNING: Final = frozenset({"in_progress", "compensating"})


def status_after(event: ev.Event) -> RotationStatus | None:
    """The status a rotation has right after ``event``; None when the event does not change it."""
    match event:
        case ev.RotationRequested():
            return AWAITING_APPROVAL if event.required_approvals else "in_progress"
        case ev.RotationApprovalsMet():
            return "in_progress"
        case ev.SagaStepFailed() if not event.compensating:
            # A forward step failed: from here on the saga undoes what it did, until it finishes.
            return "compensating"
        case ev.RotationFinished():
            return event.outcome
    return None


def fold_status(events: Iterable[ev.Event], start: RotationStatus) -> RotationStatus:
    """``start`` moved through ``events`` (those of one rotation), for commands that decide on new events."""
    status = start
    for event in events:
        status = status_after(event) or status
    return status
