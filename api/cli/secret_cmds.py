"""`lockzero secret add|show|list|history|policy|delete`: registering secrets and reading their state."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from lockzero.api.cli.context import operator, tenant_engine
from lockzero.api.cli.output import emit_json, table
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import policies, secrets, tombstone
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.durations import format_duration, parse_duration
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.queries import history, metadata
from lockzero.engine.saga import notify


def _read_config(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidInput(f"--config: cannot read {text[1:]} ({exc.strerror})") from None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        raise InvalidInput("--config is not valid JSON (pass a JSON object or @file)") from None
    if not isinstance(value, dict):
        raise InvalidInput("--config must be a JSON object")
    return value


def _labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise InvalidInput(f"--label {item!r} must look like key=value")
        labels[k] = v
    return labels


def _read_value_stdin() -> bytes:
    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidInput('--value-stdin: pipe the value in, e.g. `printf %s "$VALUE" | lockzero secret add …`')
    data = sys.stdin.buffer.read()
    # `echo value |` adds one newline that is not part of the credential.
    return data[:-1] if data.endswith(b"\n") else data


async def cmd_secret_add(args: argparse.Namespace) -> None:
    policy = policies.checked_policy(
        ev.Policy(
            max_age_s=parse_duration(args.max_age, what="--max-age") if args.max_age else None,
            required_approvals=args.approvals or 0,
            allow_agent_rotation=not args.no_agent_rotation,
            auto_rotate=args.auto_rotate,
        )
    )
    config, labels = _read_config(args.config), _labels(args.label)
    value = _read_value_stdin() if args.value_stdin else None
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.add", secret_id=args.secret_id),
    ):
        summary = await secrets.register_secret(
            engine,
            args.tenant,
            operator(),
            secret_id=args.secret_id,
            provider=args.provider,
            environment=args.environment,
            config=config,
            value=value,
            labels=labels,
            policy=policy,
            validate_value=not args.no_validate,
            allow_shared=args.allow_shared,
        )
    if args.json:
        emit_json(summary)
    else:
        print(
            f"registered {summary.secret_id} ({summary.provider}, {summary.environment}) at {summary.current_version}"
        )


async def cmd_secret_show(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.show", secret_id=args.secret_id),
    ):
        m = await metadata.secret_metadata(engine, args.tenant, args.secret_id)
    if args.json:
        emit_json(m)
        return
    p = m.rotation_policy
    rows = [
        ("secret", m.secret_id),
        ("provider", m.provider),
        ("environment", m.environment),
        ("status", m.status),
        ("current version", m.current_version or "none"),
        ("version arn", m.version_arn or ""),
        ("labels", ", ".join(f"{k}={v}" for k, v in m.labels.items()) or "none"),
        ("created", m.created_at),
        ("last rotated", m.last_rotated_at or "never"),
        ("rotation age", f"{m.rotation_age_days} d"),
        ("schedule", m.rotation_schedule or "none"),
        ("approvals", str(p.required_approvals) if p.required_approvals else "none"),
        ("agent rotation", "allowed" if p.allow_agent_rotation else "refused (people only)"),
        ("auto-rotate", "on" if p.auto_rotate else "off"),
        ("dependents", str(m.dependents_count)),
        ("open incidents", ", ".join(m.open_incident_ids) or "none"),
        ("in flight", m.in_flight_rotation_id or "none"),
        ("compromised", ", ".join(m.compromised_versions) or "none"),
    ]
    table(rows, ("FIELD", "VALUE"))


async def cmd_secret_history(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.history", secret_id=args.secret_id),
    ):
        h = await history.rotation_history(engine, args.tenant, args.secret_id, limit=args.limit, cursor=args.cursor)
    if args.json:
        emit_json(h)
        return
    print("versions: " + (", ".join(f"{v.version} {v.state}" for v in h.versions) or "none"))
    table(
        [
            (
                r.rotation_id,
                r.kind,
                r.outcome,
                f"{r.from_version or '-'}->{r.to_version or '-'}",
                r.requested_at[:19],
                f"{r.actor_type}:{r.actor_id}",
                r.reason,
            )
            for r in h.rotations
        ],
        ("ROTATION", "KIND", "OUTCOME", "VERSIONS", "REQUESTED", "BY", "REASON"),
    )
    if h.next_cursor:
        print(f"more: --cursor {h.next_cursor}")


async def cmd_secret_delete(args: argparse.Namespace) -> None:
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.delete", secret_id=args.secret_id),
    ):
        shredded = await tombstone.delete_secret(engine, args.tenant, args.secret_id, operator(), args.reason)
    if args.json:
        emit_json({"secret_id": args.secret_id, "status": "deleted", "shredded_versions": [f"v{n}" for n in shredded]})
        return
    print(
        f"deleted {args.secret_id}: {len(shredded)} version value(s) destroyed, history kept; the credential still"
        " works at the provider unless it was revoked. `lockzero secret add` may register the id again"
    )


async def cmd_secret_list(args: argparse.Namespace) -> None:
    f = secrets.SecretFilter(
        environment=args.environment,
        provider=args.provider,
        status=args.status,
        label=args.label,
        overdue_only=args.overdue_only,
        limit=args.limit,
        cursor=args.cursor,
    )
    async with tenant_engine(args.tenant) as engine:
        page = await secrets.list_secrets(engine, args.tenant, f)
    if args.json:
        emit_json(page)
        return
    table(
        [
            (
                s.secret_id,
                s.provider,
                s.environment,
                s.status,
                s.current_version,
                s.rotation_age_days,
                "yes" if s.overdue else "",
                ",".join(f"{k}={v}" for k, v in s.labels.items()),
            )
            for s in page.secrets
        ],
        ("SECRET", "PROVIDER", "ENV", "STATUS", "VERSION", "AGE(d)", "OVERDUE", "LABELS"),
    )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


async def cmd_secret_policy(args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {}
    if args.max_age:
        changes["max_age_s"] = parse_duration(args.max_age, what="--max-age")
    if args.approvals is not None:
        changes["required_approvals"] = args.approvals
    if args.grace:
        changes["grace_s"] = parse_duration(args.grace, what="--grace")
    if args.adoption_deadline:
        changes["adoption_deadline_s"] = parse_duration(
            args.adoption_deadline, default_unit="s", what="--adoption-deadline"
        )
    if args.notify:
        changes["notify"] = tuple(args.notify)
    if args.agent_rotation is not None:
        changes["allow_agent_rotation"] = args.agent_rotation
    if args.auto_rotate is not None:
        changes["auto_rotate"] = args.auto_rotate
    if args.on_anomaly is not None:
        changes["on_anomaly"] = args.on_anomaly
    async with (
        tenant_engine(args.tenant) as engine,
        audited(engine, args.tenant, operator(), "secret.policy", secret_id=args.secret_id),
    ):
        policy = await policies.update_policy(engine, args.tenant, args.secret_id, operator(), **changes)
        urls = policies.notify_urls(await engine.tenant_keys(args.tenant), args.secret_id, policy)
        created = await notify.ensure_signing_secrets(engine, args.tenant, args.secret_id, urls)
    # Notify URLs are shown redacted (they often carry tokens); their sealed form is nobody's business.
    policy = msgspec.structs.replace(policy, notify_sealed=())
    if args.json:
        # Every field, defaults too: a script should not need to know them.
        fields = {k: v for k, v in msgspec.structs.asdict(policy).items() if k != "notify_sealed"}
        emit_json({"secret_id": args.secret_id, "policy": fields, "notify_signing_secrets": created})
    else:
        for url, value in created.items():
            print(f"notify {url}: signing secret {value} (shown once; verify X-Lockzero-Signature with it)")
        print(f"policy of {args.secret_id}:")
        table(policy_rows(policy), ("SETTING", "VALUE"))


def _days_first(seconds: int) -> str:
    # "7d" rather than "1w": the unit people type in --grace / --max-age.
    return f"{seconds // 86400}d" if seconds and seconds % 86400 == 0 else format_duration(seconds)


def policy_rows(policy: ev.Policy) -> list[tuple[str, str]]:
    """A policy for people: durations as 30d / 5m, notify URLs as stored (redacted), words for flags."""
    return [
        ("max age", _days_first(policy.max_age_s) if policy.max_age_s else "none (never overdue)"),
        ("auto-rotate", "on (rotates when due)" if policy.auto_rotate else "off (overdue opens an incident)"),
        ("on anomaly", "rotate (and notify)" if policy.on_anomaly == "rotate" else "notify"),
        ("approvals", str(policy.required_approvals) if policy.required_approvals else "none"),
        ("agent rotation", "allowed" if policy.allow_agent_rotation else "refused (people only)"),
        ("grace", _days_first(policy.grace_s)),
        ("adoption deadline", _days_first(policy.adoption_deadline_s)),
        ("notify", ", ".join(policy.notify) or "none"),
    ]
