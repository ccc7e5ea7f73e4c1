"""Registering secrets and reading the secrets list.

The value and the provider config go to side tables as AES-GCM ciphertext in the same transaction
as the events; the events only record that version N exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.commands.registration import check_imported_value, refuse_shared_account
from lockzero.engine.commands.tenants import get_tenant
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import is_deleted
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.errors import Conflict, InvalidInput, Unavailable
from lockzero.engine.queries.paging import DEFAULT_LIMIT, decode_cursor, encode_cursor, page_limit
from lockzero.engine.security.crypto import TenantKeys
from lockzero.engine.security.outbound import OutboundRefused
from lockzero.engine.security.secret_config import config_ref
from lockzero.eventstore import NO_STREAM, ConcurrencyError, Transaction
from lockzero.providers.base import Credential, ProviderError
from lockzero.providers.catalog import ProviderConfigError, issue_initial_value, username_of, validate_config
from lockzero.providers.registry import build_provider, mint_value, spec_of

MAX_VALUE_BYTES = 64 * 1024


class SecretSummary(msgspec.Struct, frozen=True):
    secret_id: str
    status: str
    provider: str
    environment: str
    labels: dict[str, str]
    current_version: str | None
    last_rotated_at: str | None
    rotation_age_days: int
    overdue: bool


class SecretPage(msgspec.Struct, frozen=True):
    secrets: list[SecretSummary]
    next_cursor: str | None


class SecretFilter(msgspec.Struct, frozen=True, kw_only=True):
    environment: str | None = None
    provider: str | None = None
    status: str | None = None
    label: str | None = None
    overdue_only: bool = False
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


async def register_secret(
    engine: Engine,
    tenant: str,
    actor: ev.EventMeta,
    *,
    secret_id: str,
    provider: str,
    environment: str,
    config: Mapping[str, Any] | None = None,
    value: bytes | None = None,
    labels: Mapping[str, str] | None = None,
    policy: ev.Policy | None = None,
    validate_value: bool = True,
    allow_shared: bool = False,
) -> SecretSummary:
    """Record v1 of a new secret. Nothing is recorded (and nothing issued) unless every check passes: the id is
    free (or its secret was deleted), no other secret manages the same account (unless ``allow_shared``), and
    an imported value authenticates at the provider (unless ``validate_value`` is off, which is recorded)."""
    naming.secret_id(secret_id)
    naming.environment(environment)
    clean_labels = dict(naming.label(k, v) for k, v in (labels or {}).items())
    try:
        cfg = validate_config(provider, config or {})
    except ProviderConfigError as exc:
        raise InvalidInput(str(exc)) from None
    spec = spec_of(provider)
    for key in spec.outbound_url_keys:
        if key in cfg:
            try:
                await engine.outbound.check_url(str(cfg[key]), f"config key {key!r}")
            except OutboundRefused as exc:
                raise InvalidInput(str(exc)) from None
    username = username_of(provider, cfg)
    expected = await _free_id(engine, tenant, secret_id)
    if not allow_shared:
        await refuse_shared_account(engine, tenant, secret_id, provider, cfg)
    check: Literal["validated", "skipped", "issued"] = "issued"
    if value is None:
        issued = issue_initial_value(provider, cfg)
        if issued is not None:
            value, origin = issued.encode(), "generated"
        elif spec.first_credential == "imported":
            raise InvalidInput(f"provider {provider} imports the credential in use: pass it with --value-stdin")
        else:
            value, username = await _issue_at_provider(engine, provider, cfg, username)
            origin = "provider"
    else:
        origin = "imported"
        if not value or len(value) > MAX_VALUE_BYTES:
            raise InvalidInput(f"secret value must be 1 to {MAX_VALUE_BYTES} bytes")
        check = "validated" if validate_value else "skipped"
        if validate_value:
            await check_imported_value(engine, provider, cfg, value, username)
    keys = await engine.tenant_keys((await get_tenant(engine, tenant)).tenant)

    ciphertext = keys.seal(value, ref=secret_id, version=1, purpose="value")
    fingerprint = keys.fingerprint(value)
    sealed_config = keys.seal(msgspec.json.encode(cfg), ref=config_ref(secret_id), version=0, purpose="config")
    now = engine.clock.now()

    async def store_ciphertext(tx: Transaction) -> None:
        await tx.write(
            "INSERT INTO lz_secret_versions (tenant, secret_id, version, ciphertext, fingerprint, created_at)"
            " VALUES (?, ?, 1, ?, ?, ?)",
            (tenant, secret_id, ciphertext, fingerprint, iso(now)),
        )
        await tx.write(
            "INSERT INTO lz_sealed (tenant, ref, ciphertext, created_at) VALUES (?, ?, ?, ?)",
            (tenant, config_ref(secret_id), sealed_config, iso(now)),
        )

    events: list[ev.Event] = [
        ev.SecretRegistered(
            at=now,
            tenant=tenant,
            secret_id=secret_id,
            provider=provider,
            environment=environment,
            labels=clean_labels,
            policy=policy or ev.Policy(),
            has_config=True,
            value_check=check,
            shared_account=allow_shared,
        ),
        ev.SecretVersionCreated(
            at=now,
            tenant=tenant,
            secret_id=secret_id,
            version=1,
            origin=origin,  # type: ignore[arg-type]
            username=username,
        ),
        ev.SecretVersionActivated(at=now, tenant=tenant, secret_id=secret_id, version=1, previous_version=None),
    ]
    try:
        await engine.append(naming.secret_stream(tenant, secret_id), events, actor, expected, store_ciphertext)
    except ConcurrencyError:
        raise Conflict(f"secret {secret_id!r} already exists; rotate it or pick another id") from None
    page = await list_secrets(engine, tenant, SecretFilter(), only=secret_id)
    return page.secrets[0]


async def _free_id(engine: Engine, tenant: str, secret_id: str) -> int:
    """The stream version to append at: none yet, or the tombstone of a deleted secret. Checked before the
    provider issues anything, so a duplicate id leaves no orphan credential behind."""
    events, version = await engine.load(naming.secret_stream(tenant, secret_id))
    if version and not is_deleted(events):
        raise Conflict(f"secret {secret_id!r} already exists; rotate it or pick another id")
    return version or NO_STREAM


async def _issue_at_provider(
    engine: Engine, provider: str, cfg: Mapping[str, Any], username: str | None
) -> tuple[bytes, str | None]:
    """Have the provider create v1 (a new password beside any the user has, or a new access key)."""
    live = build_provider(provider, cfg, outbound=engine.outbound)
    try:
        cred = await live.create(Credential(mint_value(provider, cfg), username), None)
    except ProviderError as exc:
        error = Unavailable if exc.retryable else InvalidInput
        raise error(f"could not issue a first credential with {provider}: {exc}; nothing was registered") from None
    finally:
        await live.close()
    return cred.value.encode(), cred.username


async def read_version_value(engine: Engine, tenant: str, secret_id: str, version: int) -> bytes | None:
    """Decrypt one version's value (None when it was destroyed)."""
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT ciphertext FROM lz_secret_versions WHERE tenant = ? AND secret_id = ? AND version = ?",
            (tenant, secret_id, version),
        )
    if row is None or row[0] is None:
        return None
    return open_value(await engine.tenant_keys(tenant), secret_id, version, bytes(row[0]))


def open_value(keys: TenantKeys, secret_id: str, version: int, ciphertext: bytes) -> bytes:
    """Decrypt one version's sealed value."""
    return keys.open(ciphertext, ref=secret_id, version=version, purpose="value")


def _summary(row: tuple[Any, ...], now: datetime) -> SecretSummary:
    secret_id, status, provider, environment, labels, current, created, rotated, due = row
    since = parse_iso(rotated or created)
    return SecretSummary(
        secret_id=secret_id,
        status=status,
        provider=provider,
        environment=environment,
        labels=msgspec.json.decode(labels),
        current_version=f"v{current}" if current else None,
        last_rotated_at=parse_iso(rotated).isoformat() if rotated else None,
        rotation_age_days=max(0, (now - since).days),
        overdue=due is not None and due < iso(now),
    )


async def list_secrets(
    engine: Engine, tenant: str, f: SecretFilter, *, only: str | None = None, visible: tuple[str, ...] = ()
) -> SecretPage:
    """Secrets in id order. ``visible`` (LIKE patterns from a key's scopes) hides the others."""
    limit = page_limit(f.limit)
    now = engine.clock.now()
    where: list[str] = ["s.tenant = ?"]
    params: list[object] = [tenant]
    for column, value in (("environment", f.environment), ("provider", f.provider), ("status", f.status)):
        if value is not None:
            where.append(f"s.{column} = ?")
            params.append(value)
    if only is not None:
        where.append("s.secret_id = ?")
        params.append(only)
    if f.label is not None:
        key, _, value = f.label.partition("=")
        where.append(
            "EXISTS (SELECT 1 FROM rm_secret_labels l WHERE l.tenant = s.tenant AND l.secret_id = s.secret_id"
            " AND l.label_key = ?" + (" AND l.label_value = ?)" if "=" in f.label else ")")
        )
        params.extend([key, value] if "=" in f.label else [key])
    if f.overdue_only:
        where.append("s.due_at IS NOT NULL AND s.due_at < ?")
        params.append(iso(now))
    if visible:
        where.append("(" + " OR ".join(["s.secret_id LIKE ? ESCAPE '\\'"] * len(visible)) + ")")
        params.extend(visible)
    if f.cursor is not None:
        (after,) = decode_cursor(f.cursor, 1)
        where.append("s.secret_id > ?")
        params.append(str(after))
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT s.secret_id, s.status, s.provider, s.environment, s.labels, s.current_version, s.created_at,"
            f" s.last_rotated_at, s.due_at FROM rm_secrets s WHERE {' AND '.join(where)}"
            " ORDER BY s.secret_id LIMIT ?",
            (*params, limit + 1),
        )
    page = [_summary(r, now) for r in rows[:limit]]
    return SecretPage(page, encode_cursor([page[-1].secret_id]) if len(rows) > limit else None)
