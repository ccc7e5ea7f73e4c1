"""The engine's context: the store, the key hierarchy and the clock, plus the one way to append
domain events (encoded, projected inline, with any side rows in the same transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from lockzero.engine.config import ConfigError
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.clock import Clock, SystemClock, iso
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.folded_secrets import FoldedSecrets
from lockzero.engine.readmodels import projections
from lockzero.engine.readmodels.schema import ENGINE_MIGRATIONS
from lockzero.engine.security.crypto import CryptoError, MasterKey, TenantKeys, TokenHasher
from lockzero.engine.security.master_key import stored_token_hasher
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.eventstore import (
    ANY_VERSION,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    StoreUnavailable,
    Transaction,
    open_store,
)

SideWrites = Callable[[Transaction], Awaitable[None]]

SYSTEM = ev.EventMeta(actor_id="lockzero", actor_type="system")


class Engine:
    def __init__(
        self,
        store: EventStore,
        master_key: MasterKey,
        clock: Clock | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        #: Which non-public hosts webhooks, notify URLs and http hooks may reach (public ones only by default).
        self.outbound = outbound or OutboundPolicy()
        self._master_key = master_key
        self.tokens: TokenHasher = master_key.token_hasher()
        self._tenant_keys: dict[str, TenantKeys] = {}
        #: Secret streams folded once per process (see engine/folded_secrets.py).
        self.secrets = FoldedSecrets(store)

    @classmethod
    async def open(
        cls,
        database_url: str,
        master_key: MasterKey,
        clock: Clock | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> Engine:
        """Open the store and check that ``master_key`` is the one its tenant keys were wrapped with."""
        engine = cls(await open_store(database_url), master_key, clock, outbound)
        try:
            await engine.verify_master_key(sqlite=database_url.startswith("sqlite:"))
        except BaseException:
            await engine.close()
            raise
        return engine

    async def verify_master_key(self, *, sqlite: bool) -> None:
        """ConfigError unless the master key opens every wrapped tenant key in the store.

        A wrong key would otherwise start "healthy" and then reject every key and token, fail on every
        ciphertext, and wrap new tenants' keys under a second master key."""
        exists = (
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lz_tenant_keys'"
            if sqlite
            else "SELECT 1 WHERE to_regclass('lz_tenant_keys') IS NOT NULL"
        )
        async with self.store.reader() as tx:
            if await tx.fetchone(exists) is None:
                return  # not migrated yet: no tenant key to check
            rows = await tx.fetchall("SELECT tenant, wrapped_key FROM lz_tenant_keys ORDER BY tenant")
        failed = []
        for tenant, wrapped in rows:
            try:
                self._tenant_keys[tenant] = self._master_key.unwrap_tenant_key(tenant, bytes(wrapped))
            except CryptoError:
                failed.append(tenant)
        if failed:
            raise ConfigError(
                "the master key (LOCKZERO_MASTER_KEY / LOCKZERO_MASTER_KEY_FILE) does not open the tenant keys in"
                f" this database ({len(failed)} of {len(rows)} tenants, e.g. {failed[0]!r}); start with the key"
                " this database was created with"
            )
        try:
            # After a master key rotation, tokens still hash under the key the first master key derived.
            self.tokens = await stored_token_hasher(self.store, self._master_key) or self.tokens
        except CryptoError:
            raise ConfigError(
                "the master key (LOCKZERO_MASTER_KEY / LOCKZERO_MASTER_KEY_FILE) does not open this database's"
                " token-hash key; start with the key the last `lockzero master-key rotate` moved it to"
            ) from None

    async def migrate(self) -> list[str]:
        return await self.store.migrate(ENGINE_MIGRATIONS)

    async def schema_ready(self) -> bool:
        try:
            async with self.store.reader() as tx:
                await tx.fetchone("SELECT 1 FROM rm_tenants LIMIT 1")
                # Every engine step, not just the first: a server of a newer release on a database that
                # `lockzero migrate` has not upgraded yet would fail on its first use of a new table.
                rows = await tx.fetchall("SELECT version FROM lz_schema_migrations WHERE namespace = 'engine'")
        except StoreUnavailable:
            raise
        except Exception:  # an undefined-table error differs per driver; any of them means "not migrated"
            return False
        return {m.version for m in ENGINE_MIGRATIONS} <= {int(r[0]) for r in rows}

    async def close(self) -> None:
        await self.store.close()

    async def append(
        self,
        stream: str,
        events: Sequence[ev.Event],
        meta: ev.EventMeta,
        expected_version: int = ANY_VERSION,
        side_writes: SideWrites | None = None,
    ) -> AppendResult:
        metadata = ev.encode_meta(meta)
        new = [NewEvent(type=ev.type_name(e), data=ev.encode(e), metadata=metadata) for e in events]

        async def in_transaction(tx: Transaction, recorded: Sequence[RecordedEvent]) -> None:
            if side_writes is not None:
                await side_writes(tx)
            await projections.project(tx, recorded)

        return await self.store.append(stream, new, expected_version, in_transaction)

    async def append_each(
        self, stream: str, events: Sequence[tuple[ev.Event, ev.EventMeta]], expected_version: int = ANY_VERSION
    ) -> AppendResult:
        """Like append, with metadata per event (batched audit records of different actors)."""
        new = [NewEvent(type=ev.type_name(e), data=ev.encode(e), metadata=ev.encode_meta(m)) for e, m in events]
        return await self.store.append(stream, new, expected_version, projections.project)

    async def load_with_meta(self, stream: str) -> tuple[list[ev.AnyEvent], list[ev.EventMeta], int]:
        recorded = await self.store.read_stream(stream)
        return (
            [ev.decode(r.data) for r in recorded],
            [ev.decode_meta(r.metadata) for r in recorded],
            recorded[-1].version if recorded else 0,
        )

    async def load(self, stream: str) -> tuple[list[ev.AnyEvent], int]:
        """A stream's decoded events and its version (0 when it does not exist)."""
        recorded = await self.store.read_stream(stream)
        return [ev.decode(r.data) for r in recorded], (recorded[-1].version if recorded else 0)

    # --- keys ------------------------------------------------------------------------------------

    def new_tenant_keys(self, tenant: str) -> tuple[TenantKeys, SideWrites]:
        keys, wrapped = self._master_key.new_tenant_key(tenant)

        async def store_wrapped(tx: Transaction) -> None:
            await tx.write(
                "INSERT INTO lz_tenant_keys (tenant, wrapped_key, created_at) VALUES (?, ?, ?)",
                (tenant, wrapped, iso(self.clock.now())),
            )

        return keys, store_wrapped

    async def tenant_keys(self, tenant: str) -> TenantKeys:
        if (cached := self._tenant_keys.get(tenant)) is not None:
            return cached
        async with self.store.reader() as tx:
            row = await tx.fetchone("SELECT wrapped_key FROM lz_tenant_keys WHERE tenant = ?", (tenant,))
        if row is None:
            raise NotFound(f"tenant {tenant!r} does not exist")
        keys = self._master_key.unwrap_tenant_key(tenant, bytes(row[0]))
        self._tenant_keys[tenant] = keys
        return keys

    # --- read models -----------------------------------------------------------------------------

    async def replay(self) -> int:
        """Rebuild every read model from the events; the rows equal those the inline projections wrote."""
        return await self.store.rebuild(projections.reset, projections.project)
