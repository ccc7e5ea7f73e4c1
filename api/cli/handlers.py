"""One coroutine per subcommand: open the engine, call it, print the result."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from lockzero.api.cli import audit_cmds, backup_cmds, intake_cmds, report_cmds
from lockzero.api.cli.operator_cmds import HANDLERS as OPERATOR_HANDLERS
from lockzero.api.cli.output import emit_json, table
from lockzero.engine.app import Engine
from lockzero.engine.audit import records as audit
from lockzero.engine.audit.records import audited
from lockzero.engine.commands import approvals, dependents, policies, rotations, secrets, tenants, tombstone
from lockzero.engine.config import ConfigError, Settings, check_tls, load_settings
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.durations import format_duration, parse_duration
from lockzero.engine.domain.errors import InvalidInput, Unavailable
from lockzero.engine.queries import timeline
from lockzero.engine.saga import notify, verification
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.security import keys
from lockzero.providers.catalog import PROVIDER_DOCS, PROVIDERS, describe_provider

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def operator() -> ev.EventMeta:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return ev.EventMeta(actor_id=f"cli:{user}", actor_type="operator")


def settings_with_key() -> Settings:
    settings = load_settings()
    settings.require_master_key()
    if settings.created_master_key_file is not None:
        print(
            f"lockzero: warning: created a new master key at {settings.created_master_key_file} (mode 0600)."
            " Back it up: without it the stored secrets cannot be decrypted."
            " Production: set LOCKZERO_MASTER_KEY or LOCKZERO_MASTER_KEY_FILE.",
            file=sys.stderr,
        )
    return settings


@asynccontextmanager
async def open_engine(*, migrate: bool | None = None, check_schema: bool = True) -> AsyncIterator[Engine]:
    settings = settings_with_key()
    engine = await Engine.open(settings.database_url, settings.require_master_key(), outbound=settings.outbound)
    try:
        # The embedded default sets itself up; a shared PostgreSQL is migrated deliberately.
        if migrate if migrate is not None else settings.embedded:
            await engine.migrate()
        elif check_schema and not await engine.schema_ready():
            raise Unavailable("the database schema is not migrated; run `lockzero migrate` first")
        yield engine
    finally:
        await engine.close()


async def cmd_migrate(args: argparse.Namespace) -> None:
    async with open_engine(migrate=False, check_schema=False) as engine:
        applied = await engine.migrate()
    if args.json:
        emit_json({"applied": applied})
    else:
        print("\n".join(f"applied {name}" for name in applied) or "schema is up to date")


async def cmd_replay(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        count = await engine.replay()
    if args.json:
        emit_json({"events_replayed": count})
    else:
        print(f"rebuilt read models from {count} events")


async def cmd_tenant_create(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        view = await tenants.create_tenant(engine, args.name, operator())
        await audit.record(engine, view.tenant, operator(), "tenant.create", "ok")
    if args.json:
        emit_json(view)
    else:
        print(f"created tenant {view.tenant}")


async def cmd_tenant_list(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        rows = await tenants.list_tenants(engine)
    if args.json:
        emit_json({"tenants": rows})
    else:
        table([(t.tenant, t.created_at) for t in rows], ("TENANT", "CREATED"))


async def cmd_key_create(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "key.create"):
            created = await keys.create_key(
                engine, args.tenant, operator(), name=args.name, read_only=args.read_only, scopes=tuple(args.scope)
            )
    if args.json:
        emit_json({"key_id": created.key_id, "key": created.key})
        return
    print(f"key id:     {created.key_id}")
    print(f"permission: {'read' if created.read_only else 'read-write'}")
    print(f"scopes:     {', '.join(created.scopes) or '(whole tenant)'}")
    print(f"key:        {created.key}")
    print("This key is shown once. Store it now; Lockzero keeps only a keyed hash.", file=sys.stderr)


async def cmd_key_list(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        views = await keys.list_keys(engine, args.tenant)
    if args.json:
        emit_json({"keys": views})
    else:
        table(
            [(k.key_id, k.name, k.permission, ",".join(k.scopes) or "*", k.status, k.created_at) for k in views],
            ("KEY ID", "NAME", "PERMISSION", "SCOPES", "STATUS", "CREATED"),
        )


async def cmd_key_revoke(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        view = await keys.revoke_key(engine, args.key_id, operator())
        await audit.record(engine, view.tenant, operator(), "key.revoke", "ok", detail=view.key_id)
    if args.json:
        emit_json(view)
    else:
        print(f"revoked {view.key_id} (tenant {view.tenant})")


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
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "secret.add", secret_id=args.secret_id):
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


async def cmd_secret_delete(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "secret.delete", secret_id=args.secret_id):
            shredded = await tombstone.delete_secret(engine, args.tenant, args.secret_id, operator(), args.reason)
    if args.json:
        emit_json({"secret_id": args.secret_id, "status": "deleted", "shredded_versions": [f"v{n}" for n in shredded]})
        return
    print(
        f"deleted {args.secret_id}: {len(shredded)} version value(s) destroyed, history kept; the credential still"
        " works at the provider unless it was revoked. `lockzero secret add` may register the id again"
    )


class _RunNow:
    """The CLI's saga queue without a worker: run the saga to its end before answering."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        await RotationSaga(self.engine).run(tenant, secret_id, rotation_id)


async def cmd_secret_rollback(args: argparse.Namespace) -> None:
    to = args.to_version
    if to is not None and not (to.startswith("v") and to[1:].isdigit()):
        raise InvalidInput("--to takes a version like v3")
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "secret.rollback", secret_id=args.secret_id):
            started = await rotations.rollback(
                engine,
                _RunNow(engine),
                args.tenant,
                args.secret_id,
                operator(),
                args.reason,
                int(to[1:]) if to else None,
                force=args.force,
            )
            result = await verification.verify(engine, args.tenant, args.secret_id, started.rotation_id)
    if args.json:
        emit_json(result)
        return
    print(f"{started.rotation_id}: rollback to {started.restored_version} {result.status}; {result.next_action}")
    if started.note:
        print(started.note)


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
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
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
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "secret.policy", secret_id=args.secret_id):
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


async def cmd_provider_list(args: argparse.Namespace) -> None:
    if args.json:
        emit_json([{"provider": name, "summary": doc.summary} for name, doc in PROVIDER_DOCS.items()])
        return
    table([(name, doc.summary) for name, doc in PROVIDER_DOCS.items()], ("PROVIDER", "WHAT IT ROTATES"))
    print("`lockzero provider show P` lists P's --config keys and the admin permissions it needs")


async def cmd_provider_show(args: argparse.Namespace) -> None:
    spec, doc = PROVIDERS[args.name], PROVIDER_DOCS[args.name]
    if args.json:
        emit_json(
            {
                "provider": args.name,
                "summary": doc.summary,
                "config": [{"key": k, "required": k in spec.required, "description": v} for k, v in doc.keys.items()],
                "admin_permissions": doc.permissions,
            }
        )
        return
    print(describe_provider(args.name))


async def cmd_dependent_add(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        async with audited(engine, args.tenant, operator(), "dependent.add", secret_id=args.secret_id):
            created = await dependents.add_dependent(
                engine,
                args.tenant,
                operator(),
                secret_id=args.secret_id,
                service=args.service,
                environment=args.environment,
                delivery=args.delivery,
            )
    if args.json:
        emit_json(created)
        return
    print(f"dependent {created.dependent_id}: {created.service} ({created.environment}) via {created.delivery}")
    if created.token:
        print(f"token:          {created.token}")
        print("The token is shown once; the service sends it as `Authorization: Bearer …`.", file=sys.stderr)
    if created.signing_secret:
        print(f"signing secret: {created.signing_secret}")
        print("Shown once; verify X-Lockzero-Signature (HMAC-SHA256 of the body) with it.", file=sys.stderr)


async def cmd_serve(args: argparse.Namespace) -> None:
    from lockzero.api.serve import serve

    settings = settings_with_key()
    if args.tls_cert or args.tls_key:
        # A flag overrides its environment variable; the pair is checked as the flags name it.
        cert = args.tls_cert or (str(settings.tls_cert) if settings.tls_cert else None)
        key = args.tls_key or (str(settings.tls_key) if settings.tls_key else None)
        tls_cert, tls_key = check_tls(cert, key, ("--tls-cert", "--tls-key"))
        settings = dataclasses.replace(settings, tls_cert=tls_cert, tls_key=tls_key)
    await serve(settings)


async def cmd_approve(args: argparse.Namespace) -> None:
    settings = settings_with_key()
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        queue = None
        if settings.redis_url:
            from lockzero.workers.arq_worker import ArqQueue

            queue = await ArqQueue.connect(settings.redis_url)
        person = ev.EventMeta(actor_id=args.person, actor_type="person")
        try:
            async with audited(engine, args.tenant, person, "rotation.approve"):
                result = await approvals.approve(engine, args.tenant, args.rotation_id, args.person, queue)
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


async def cmd_incident_timeline(args: argparse.Namespace) -> None:
    async with open_engine() as engine:
        await tenants.get_tenant(engine, args.tenant)
        tl = await timeline.incident_timeline(engine, args.tenant, args.incident_id)
    if args.json or args.format == "json":
        emit_json(tl)
        return
    took = f", resolved after {tl.duration_ms / 1000:.3f} s" if tl.duration_ms is not None else ""
    print(f"incident {tl.incident_id} ({tl.kind}, {tl.severity}) on {tl.secret_id or '-'}: {tl.status}{took}")
    for e in tl.entries:
        print(f"  {e.at[11:23]}  +{e.offset_ms / 1000:8.3f}s  {e.actor_type}:{e.actor_id:<24} {e.summary}")


async def cmd_worker(args: argparse.Namespace) -> None:
    settings = settings_with_key()
    if not settings.redis_url:
        raise ConfigError("LOCKZERO_REDIS_URL is required for `lockzero worker` (embedded mode runs sagas in serve)")
    from lockzero.workers.arq_worker import run_worker

    await run_worker(settings)


async def cmd_demo(args: argparse.Namespace) -> None:
    from lockzero.api.demo import run_demo

    await run_demo(as_json=args.json)


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("serve", None): cmd_serve,
    ("worker", None): cmd_worker,
    ("demo", None): cmd_demo,
    ("approve", None): cmd_approve,
    ("incident", "timeline"): cmd_incident_timeline,
    ("migrate", None): cmd_migrate,
    ("replay", None): cmd_replay,
    ("tenant", "create"): cmd_tenant_create,
    ("tenant", "list"): cmd_tenant_list,
    ("key", "create"): cmd_key_create,
    ("key", "list"): cmd_key_list,
    ("key", "revoke"): cmd_key_revoke,
    ("secret", "add"): cmd_secret_add,
    ("secret", "list"): cmd_secret_list,
    ("secret", "policy"): cmd_secret_policy,
    ("secret", "delete"): cmd_secret_delete,
    ("secret", "rollback"): cmd_secret_rollback,
    ("dependent", "add"): cmd_dependent_add,
    ("provider", "list"): cmd_provider_list,
    ("provider", "show"): cmd_provider_show,
}
HANDLERS.update(audit_cmds.HANDLERS)
HANDLERS.update(backup_cmds.HANDLERS)
HANDLERS.update(report_cmds.HANDLERS)
HANDLERS.update(intake_cmds.HANDLERS)
HANDLERS.update(OPERATOR_HANDLERS)
