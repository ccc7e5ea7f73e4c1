"""Master key rotation: rewrap every tenant's root key from the previous master key to the new one, online.

Only the wrapping changes: tenant root keys, and so every ciphertext under them, stay as they are. Token hashes
(MCP keys, dependent and intake tokens, in events) are HMACs under a key derived from the master key that made
the store; the first rotation stores that key in lz_store_keys, wrapped under the new master key, and the
engine prefers it from then on, so every issued token keeps working.

Each tenant is rewrapped in its own short transaction with the row locked, deciding by which key opens it:
running the rotation again, after a crash or after a tenant was created by a server still on the previous key,
finishes what is left and changes nothing else. Servers already running keep their unwrapped tenant keys in
memory and go on serving; restart them with the new key only once the rotation reports every tenant done.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lockzero.engine.config import ConfigError
from lockzero.engine.domain.errors import InvalidInput
from lockzero.engine.security.crypto import CryptoError, MasterKey, TokenHasher
from lockzero.eventstore import EventStore, Transaction

TOKEN_KEY = "token-hash"  # noqa: S105 - the name of a row, not a key
_MAX_PASSES = 5


@dataclass
class RotationReport:
    rewrapped: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    #: What happened to the token-hash key: stored (first rotation), rewrapped, or already under the new key.
    token_key: str = ""


def previous_master_key(env: Mapping[str, str] | None = None) -> MasterKey:
    """The key being rotated away from: LOCKZERO_MASTER_KEY_PREVIOUS or LOCKZERO_MASTER_KEY_PREVIOUS_FILE."""
    env = os.environ if env is None else env
    if value := env.get("LOCKZERO_MASTER_KEY_PREVIOUS"):
        name, text = "LOCKZERO_MASTER_KEY_PREVIOUS", value
    elif file_name := env.get("LOCKZERO_MASTER_KEY_PREVIOUS_FILE"):
        name = "LOCKZERO_MASTER_KEY_PREVIOUS_FILE"
        try:
            text = Path(file_name).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"{name}: cannot read {file_name} as a base64 key file") from None
    else:
        raise ConfigError(
            "LOCKZERO_MASTER_KEY_PREVIOUS (or LOCKZERO_MASTER_KEY_PREVIOUS_FILE) must hold the master key being"
            " replaced; LOCKZERO_MASTER_KEY (or LOCKZERO_MASTER_KEY_FILE) the new one"
        )
    try:
        return MasterKey.from_base64(text)
    except CryptoError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _opens(key: MasterKey, tenant: str, wrapped: bytes) -> bool:
    try:
        key.unwrap_tenant_key(tenant, wrapped)
    except CryptoError:
        return False
    return True


def _for_update(tx: Transaction) -> str:
    # SQLite's write transaction (BEGIN IMMEDIATE) already excludes every other writer.
    return " FOR UPDATE" if tx.dialect == "postgresql" else ""


async def _rotate_token_key(store: EventStore, old: MasterKey, new: MasterKey, now: str) -> str:
    async with store.transaction() as tx:
        row = await tx.fetchone(f"SELECT wrapped_key FROM lz_store_keys WHERE name = ?{_for_update(tx)}", (TOKEN_KEY,))
        if row is None:
            # No rotation yet: tokens are hashed under the key derived from the previous master key.
            wrapped = new.wrap_store_key(TOKEN_KEY, old.token_key())
            await tx.execute(
                "INSERT INTO lz_store_keys (name, wrapped_key, created_at) VALUES (?, ?, ?)", (TOKEN_KEY, wrapped, now)
            )
            return "stored"
        try:
            new.unwrap_store_key(TOKEN_KEY, bytes(row[0]))
            return "already"
        except CryptoError:
            pass
        try:
            token_key = old.unwrap_store_key(TOKEN_KEY, bytes(row[0]))
        except CryptoError:
            raise ConfigError(
                "the stored token-hash key opens under neither LOCKZERO_MASTER_KEY nor LOCKZERO_MASTER_KEY_PREVIOUS"
            ) from None
        await tx.execute(
            "UPDATE lz_store_keys SET wrapped_key = ? WHERE name = ?",
            (new.wrap_store_key(TOKEN_KEY, token_key), TOKEN_KEY),
        )
        return "rewrapped"


async def _rewrap_tenant(store: EventStore, tenant: str, old: MasterKey, new: MasterKey) -> bool:
    """True when this call rewrapped it, False when it already was under the new key."""
    async with store.transaction() as tx:
        row = await tx.fetchone(f"SELECT wrapped_key FROM lz_tenant_keys WHERE tenant = ?{_for_update(tx)}", (tenant,))
        assert row is not None, "tenant keys are never deleted"
        wrapped = bytes(row[0])
        if _opens(new, tenant, wrapped):
            return False
        rewrapped = old.rewrap_tenant_key(tenant, wrapped, new)
        await tx.execute("UPDATE lz_tenant_keys SET wrapped_key = ? WHERE tenant = ?", (rewrapped, tenant))
        return True


async def rotate_master_key(store: EventStore, old: MasterKey, new: MasterKey) -> RotationReport:
    """Rewrap the token-hash key and every tenant key under ``new``; idempotent and resumable.

    Checks first that each tenant key opens under ``old`` or ``new`` and changes nothing otherwise."""
    if old.raw == new.raw:
        raise InvalidInput("LOCKZERO_MASTER_KEY_PREVIOUS is the same key as LOCKZERO_MASTER_KEY; nothing to rotate")
    report = RotationReport()
    for _ in range(_MAX_PASSES):
        async with store.reader() as tx:
            rows = [(str(t), bytes(w)) for t, w in await tx.fetchall("SELECT tenant, wrapped_key FROM lz_tenant_keys")]
        stranded = [t for t, w in rows if not _opens(old, t, w) and not _opens(new, t, w)]
        if stranded:
            raise ConfigError(
                f"{len(stranded)} tenant key(s) (e.g. {sorted(stranded)[0]!r}) open under neither LOCKZERO_MASTER_KEY"
                " nor LOCKZERO_MASTER_KEY_PREVIOUS; nothing was changed for them"
            )
        if not report.token_key:
            report.token_key = await _rotate_token_key(store, old, new, datetime.now(UTC).isoformat())
        todo = sorted(t for t, w in rows if not _opens(new, t, w))
        report.already = sorted({t for t, _ in rows} - set(report.rewrapped) - set(todo))
        if not todo:
            return report
        for tenant in todo:
            if await _rewrap_tenant(store, tenant, old, new):
                report.rewrapped.append(tenant)
    # Tenants kept appearing under the previous key: servers on it are still creating tenants.
    raise ConfigError(
        "tenants are still being created under LOCKZERO_MASTER_KEY_PREVIOUS; restart every server with the new"
        " key's pair (or stop creating tenants) and run the rotation again"
    )


async def stored_token_hasher(store: EventStore, master_key: MasterKey) -> TokenHasher | None:
    """The token hasher kept by a past rotation, or None (tokens hash under the master key's own derivation).

    Raises CryptoError when the stored key does not open under ``master_key``."""
    async with store.reader() as tx:
        exists = (
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lz_store_keys'"
            if tx.dialect == "sqlite"
            else "SELECT 1 WHERE to_regclass('lz_store_keys') IS NOT NULL"
        )
        if await tx.fetchone(exists) is None:
            return None
        row = await tx.fetchone("SELECT wrapped_key FROM lz_store_keys WHERE name = ?", (TOKEN_KEY,))
    if row is None:
        return None
    return TokenHasher(master_key.unwrap_store_key(TOKEN_KEY, bytes(row[0])))
