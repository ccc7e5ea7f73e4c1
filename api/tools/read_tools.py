"""The read tools: answered from the read models, never touching a provider."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from lockzero.api.tools.registry import Annotations, CallContext, Tool
from lockzero.engine.audit import log as audit_log
from lockzero.engine.commands import incidents, secrets
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.errors import Forbidden
from lockzero.engine.queries import blast_radius, history, metadata
from lockzero.engine.security.scopes import like_patterns

SecretId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9/_.:-]+$",
        description="Path-like secret id, e.g. prod/openai/api-key",
    ),
]
Limit = Annotated[int, msgspec.Meta(ge=1, le=200, description="Page size (default 50, at most 200)")]
Cursor = Annotated[str, msgspec.Meta(max_length=512, description="next_cursor from the previous page")]

READ = Annotations(read_only=True, destructive=False, idempotent=True, open_world=False)


def in_scope(ctx: CallContext, secret_id: str) -> None:
    ctx.secret_id = secret_id
    if not ctx.key.in_scope(secret_id):
        raise Forbidden(
            f"this key is limited to {', '.join(ctx.key.scopes)}; {secret_id!r} is outside its scope."
            " Ask an operator for a key whose --scope covers it."
        )


def visible_scopes(ctx: CallContext, secret_id: str | None) -> tuple[str, ...]:
    """The key's scopes as LIKE patterns (what a listing may show), once ``secret_id``, when the call names one,
    is checked against them."""
    if secret_id is not None:
        in_scope(ctx, secret_id)
    return like_patterns(ctx.key.scopes)


class ListSecretsArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    environment: str | None = None
    provider: str | None = None
    status: str | None = None
    label: Annotated[str, msgspec.Meta(description="key or key=value")] | None = None
    overdue_only: bool = False
    cursor: Cursor | None = None
    limit: Limit = 50


async def list_secrets(ctx: CallContext, a: ListSecretsArgs) -> secrets.SecretPage:
    # The tool's arguments are the filter's fields, one for one.
    f = secrets.SecretFilter(**msgspec.structs.asdict(a))
    return await secrets.list_secrets(ctx.engine, ctx.key.tenant, f, visible=visible_scopes(ctx, None))


class SecretArgs(msgspec.Struct, forbid_unknown_fields=True):
    secret_id: SecretId


async def get_secret_metadata(ctx: CallContext, a: SecretArgs) -> metadata.SecretMetadata:
    in_scope(ctx, a.secret_id)
    return await metadata.secret_metadata(ctx.engine, ctx.key.tenant, a.secret_id)


async def check_rotation_policy(ctx: CallContext, a: SecretArgs) -> metadata.PolicyCheck:
    in_scope(ctx, a.secret_id)
    return await metadata.check_policy(ctx.engine, ctx.key.tenant, a.secret_id)


class HistoryArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_id: SecretId
    limit: Limit = 50
    cursor: Cursor | None = None


async def get_rotation_history(ctx: CallContext, a: HistoryArgs) -> history.RotationHistory:
    in_scope(ctx, a.secret_id)
    return await history.rotation_history(ctx.engine, ctx.key.tenant, a.secret_id, limit=a.limit, cursor=a.cursor)


class IncidentArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: ev.IncidentKind | None = None
    severity: ev.Severity | None = None
    secret_id: SecretId | None = None
    cursor: Cursor | None = None
    limit: Limit = 50


async def get_active_incidents(ctx: CallContext, a: IncidentArgs) -> incidents.IncidentPage:
    # IncidentArgs and AuditArgs are the queries' keyword arguments, one for one.
    visible = visible_scopes(ctx, a.secret_id)
    return await incidents.active_incidents(ctx.engine, ctx.key.tenant, **msgspec.structs.asdict(a), visible=visible)


class AuditArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_id: SecretId | None = None
    actor_id: str | None = None
    method: str | None = None
    outcome: Literal["ok", "denied", "error", "invalid"] | None = None
    since: Annotated[str, msgspec.Meta(description="ISO-8601 time, inclusive")] | None = None
    until: Annotated[str, msgspec.Meta(description="ISO-8601 time, exclusive")] | None = None
    cursor: Cursor | None = None
    limit: Limit = 50


async def get_audit_log(ctx: CallContext, a: AuditArgs) -> audit_log.AuditPage:
    visible = visible_scopes(ctx, a.secret_id)
    return await audit_log.audit_log(ctx.engine, ctx.key.tenant, **msgspec.structs.asdict(a), visible=visible)


async def assess_blast_radius(ctx: CallContext, a: SecretArgs) -> blast_radius.BlastRadius:
    in_scope(ctx, a.secret_id)
    return await blast_radius.assess(ctx.engine, ctx.key.tenant, a.secret_id)


READ_TOOLS = [
    Tool(
        "list_secrets",
        "List managed secrets",
        "List the secrets this key can see, with status, version, rotation age and whether rotation is overdue. "
        "Filter by environment, provider, status, label (key or key=value) or overdue_only. Results are paged: "
        "pass next_cursor back as cursor until it is null. Use the secret_id values with the other tools.",
        ListSecretsArgs,
        secrets.SecretPage,
        READ,
        list_secrets,
    ),
    Tool(
        "get_secret_metadata",
        "Get a secret's metadata",
        "Describe one secret without revealing its value: provider, environment, labels, status, current version "
        "and its ARN, when it was created and last rotated, its rotation policy, how many services depend on it, "
        "open incidents and any rotation in flight. Call this before deciding to rotate.",
        SecretArgs,
        metadata.SecretMetadata,
        READ,
        get_secret_metadata,
    ),
    Tool(
        "assess_blast_radius",
        "Assess a secret's blast radius",
        "Before rotating or revoking, see what it will touch: every dependent service with the version it holds "
        "and when it last fetched it, the environments and downstream systems, who is using the credential right "
        "now as the provider sees it (e.g. Redis connections), open incidents, a risk level and a recommended "
        "action. Read-only; asks the provider live.",
        SecretArgs,
        blast_radius.BlastRadius,
        Annotations(read_only=True, destructive=False, idempotent=True, open_world=True),
        assess_blast_radius,
    ),
    Tool(
        "check_rotation_policy",
        "Check a secret's rotation policy",
        "Report the rotation policy of one secret (max age, approvals required, whether agents may rotate it, "
        "notification rules) and where the secret stands against it: rotation age, overdue, next due time. "
        "If allow_agent_rotation is false, do not call rotate_secret; tell a human instead.",
        SecretArgs,
        metadata.PolicyCheck,
        READ,
        check_rotation_policy,
    ),
    Tool(
        "get_rotation_history",
        "Get a secret's rotation history",
        "List past rotations, rollbacks and revocations of one secret, newest first, with who asked, why, the "
        "outcome, the versions involved and every saga step with its time. Paged with cursor/next_cursor.",
        HistoryArgs,
        history.RotationHistory,
        READ,
        get_rotation_history,
    ),
    Tool(
        "get_active_incidents",
        "List active incidents",
        "List incidents that are not resolved (leaked credentials, overdue rotations, policy violations, usage "
        "anomalies, failed rotations), newest first, filtered by kind, severity or secret_id. A leaked_credential "
        "incident resolves itself once a rotation of that secret is verified.",
        IncidentArgs,
        incidents.IncidentPage,
        READ,
        get_active_incidents,
    ),
    Tool(
        "get_audit_log",
        "Read the audit log",
        "Read the audit trail of every call and command in this tenant, newest first, including denied and failed "
        "ones. Filter by secret_id, actor_id, method, outcome and a time window (since inclusive, until exclusive). "
        "Paged with cursor/next_cursor.",
        AuditArgs,
        audit_log.AuditPage,
        READ,
        get_audit_log,
    ),
]
