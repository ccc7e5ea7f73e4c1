"""The tools that change credentials (rotate, roll back, revoke) and the live proof (verify)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import msgspec

from lockzero.api.tools.read_tools import SecretId, in_scope
from lockzero.api.tools.registry import IN_BATCH, Annotations, CallContext, Handler, Tool
from lockzero.engine.commands import rotations
from lockzero.engine.domain.errors import Unavailable
from lockzero.engine.saga import verification

Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=500, description="Why: shown in history, audit and incidents")
]


class RotateArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_id: SecretId
    reason: Reason
    idempotency_key: (
        Annotated[str, msgspec.Meta(max_length=128, description="Same key, same rotation (safe retries)")] | None
    ) = None


IdempotencyKey = Annotated[str, msgspec.Meta(max_length=128, description="Same key, same rotation (safe retries)")]


class RollbackArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_id: SecretId
    reason: Reason
    to_version: (
        Annotated[str, msgspec.Meta(pattern=r"^v[0-9]+$", description="e.g. v3; default: the previous")] | None
    ) = None
    force: Annotated[
        bool, msgspec.Meta(description="Restore a version even though it is compromised (seen in a leak)")
    ] = False
    idempotency_key: IdempotencyKey | None = None


class RevokeArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_id: SecretId
    reason: Reason
    idempotency_key: IdempotencyKey | None = None


#: The longest verify_remediation may hold its answer while the rotation runs (wait_seconds).
MAX_VERIFY_WAIT_S = 20
#: Long polls one key, and this process, may hold open at once; a call beyond either answers at once, as with
#: wait_seconds 0. Each open one re-reads its rotation whenever anything is appended.
MAX_WAITS_PER_KEY = 8
MAX_WAITS = 256
_waits: Counter[str] = Counter()


class VerifyArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_id: SecretId
    rotation_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_VERIFY_WAIT_S)] = 0


def _queue(ctx: CallContext) -> rotations.SagaQueue:
    if ctx.queue is None:
        raise Unavailable("no saga worker is configured; retry later")
    return ctx.queue


async def rotate_secret(ctx: CallContext, a: RotateArgs) -> rotations.RotationStarted:
    in_scope(ctx, a.secret_id)
    return await rotations.rotate(
        ctx.engine, _queue(ctx), ctx.key.tenant, a.secret_id, ctx.actor, a.reason, a.idempotency_key
    )


async def rollback_secret(ctx: CallContext, a: RollbackArgs) -> rotations.RollbackStarted:
    in_scope(ctx, a.secret_id)
    to = int(a.to_version[1:]) if a.to_version else None
    return await rotations.rollback(
        ctx.engine, _queue(ctx), ctx.key.tenant, a.secret_id, ctx.actor, a.reason, to, a.force, a.idempotency_key
    )


async def revoke_secret(ctx: CallContext, a: RevokeArgs) -> rotations.RevokeResult:
    in_scope(ctx, a.secret_id)
    return await rotations.revoke(ctx.engine, ctx.key.tenant, a.secret_id, ctx.actor, a.reason, a.idempotency_key)


async def verify_remediation(ctx: CallContext, a: VerifyArgs) -> verification.Verification:
    in_scope(ctx, a.secret_id)
    with _wait_slot(ctx.key.key_id, a.wait_seconds) as wait_s:
        return await verification.verify(ctx.engine, ctx.key.tenant, a.secret_id, a.rotation_id, wait_s)


@contextmanager
def _wait_slot(key: str, wait_s: float) -> Iterator[float]:
    """The wait this call may have: ``wait_s``, holding one of the key's slots meanwhile, or 0 (answer at once)."""
    if not wait_s or IN_BATCH.get() or _waits[key] >= MAX_WAITS_PER_KEY or _waits.total() >= MAX_WAITS:
        yield 0.0
        return
    _waits[key] += 1
    try:
        yield wait_s
    finally:
        _waits[key] -= 1
        if not _waits[key]:
            del _waits[key]


def _changes(
    name: str,
    title: str,
    description: str,
    arguments: type[msgspec.Struct],
    result: type[msgspec.Struct],
    handler: Handler,
    *,
    idempotent: bool,
) -> Tool:
    """A tool that changes the credential at its provider: destructive, open-world, for read-write keys only."""
    annotations = Annotations(read_only=False, destructive=True, idempotent=idempotent, open_world=True)
    return Tool(name, title, description, arguments, result, annotations, handler, writes=True)


SAGA_TOOLS = [
    _changes(
        "rotate_secret",
        "Rotate a secret",
        "Replace a secret's credential for real: create a new one at the provider, check it works, move every "
        "dependent service to it, retire the old one and prove the old one is refused. Returns at once with a "
        "rotation_id and status in_progress; then call verify_remediation (with wait_seconds to long-poll, or every "
        "1-2 s) until verified is true. "
        "Calling again while a rotation is in flight returns that rotation; pass idempotency_key to make retries "
        "safe. Use after a leak (detect_exposure) or when check_rotation_policy says it is overdue.",
        RotateArgs,
        rotations.RotationStarted,
        rotate_secret,
        idempotent=False,
    ),
    _changes(
        "rollback_secret",
        "Roll a secret back",
        "Make the previous working credential current again (within its grace period), deliver it to every "
        "dependent and retire the newer one. Use when a rotation broke something. Fails with conflict when "
        "there is no restorable previous version, and when that version is compromised (its value was seen in a "
        "leak): restoring it would bring the leaked credential back, so fix forward with rotate_secret instead; "
        "force: true overrides this and is audited. Honours the secret's approval policy (status "
        "pending_approval until people approve). Returns at once; poll verify_remediation.",
        RollbackArgs,
        rotations.RollbackStarted,
        rollback_secret,
        idempotent=False,
    ),
    _changes(
        "revoke_secret",
        "Revoke a secret now",
        "Emergency stop: make every version of the credential stop working at the provider immediately, mark the "
        "secret revoked (final: it cannot be rotated or rolled back afterwards), open an incident and alert "
        "dependents. Dependents will break: prefer rotate_secret unless the credential is being abused right now. "
        "Pass idempotency_key to make retries safe: a retry returns the first call's result and opens no second "
        "incident.",
        RevokeArgs,
        rotations.RevokeResult,
        revoke_secret,
        idempotent=True,
    ),
    Tool(
        "verify_remediation",
        "Verify a remediation",
        "Check, live against the provider, that a rotation worked. Each check is 'passed', 'failed' or 'unknown' "
        "(unknown = the provider gave no answer, e.g. unreachable or a permission error: never success), with "
        "checks.reasons saying why for each one that did not pass: new_credential_valid (the new credential "
        "authenticates), old_credential_rejected (the provider refuses the old one at authentication), "
        "dependents_adopted (pending lists each service not yet on the new version, what it waits for and since "
        "when; adoption_deadline_at says when the old one is retired anyway). verified is true only when the saga "
        "completed and every check passed. Without rotation_id it checks the latest rotation. wait_seconds (0-20) "
        "long-polls: while the rotation is still running the answer waits up to that long for it to finish, so "
        "one call replaces many polls (not inside a JSON-RPC batch, and at most 8 at once per key: beyond that "
        "it answers at once). Follow next_action.",
        VerifyArgs,
        verification.Verification,
        Annotations(read_only=True, destructive=False, idempotent=True, open_world=True),
        verify_remediation,
    ),
]
