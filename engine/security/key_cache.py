"""An in-process cache of authenticated MCP keys, so a busy agent's calls skip the key lookup.

Safe because it forgets on time: a watcher wakes whenever the event store's head moves (PostgreSQL LISTEN/NOTIFY;
SQLite polls every 0.2 s) and, when the number of revoked keys changed, drops every entry. A revoked key is
therefore refused by every API process within REVOKED_KEYS_REFUSED_WITHIN_S, and revoking waits that long before
it answers: when `lockzero key revoke` returns, no process accepts the key any more. Expiry is checked on every
hit. While the watcher is not running or is behind, the cache is bypassed and every call reads the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Final

from lockzero.engine.app import Engine
from lockzero.engine.domain.aggregates.api_key import ApiKey
from lockzero.engine.security.keys import REVOKED_KEYS_REFUSED_WITHIN_S, authenticate
from lockzero.eventstore import EventStoreError

log = logging.getLogger("lockzero.api")

#: A cached key is used only while the watcher's last check began less than this long ago, so a revocation
#: committed at T is seen by every check that begins after T and no cache answers from before T past T + this.
_STALE_AFTER_S: Final = REVOKED_KEYS_REFUSED_WITHIN_S - 0.05
#: At most this many revocation checks a second under load (each is two tiny reads).
_CHECK_EVERY_S: Final = 0.1
#: Even an entry nobody revoked is read again after this long (a backstop, not the invalidation path).
_MAX_AGE_S: Final = 60.0
_MAX_ENTRIES: Final = 10_000


@dataclass(frozen=True)
class _Entry:
    key: ApiKey
    cached_at: float


class KeyCache:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._entries: dict[str, _Entry] = {}
        #: Bumped on every invalidation: a lookup that began before one must not repopulate the cache.
        self._generation = 0
        self._checked_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def authenticate(self, token: str) -> ApiKey | None:
        if not self._watching():
            return await authenticate(self.engine, token)
        digest = self.engine.tokens.hash(token)
        hit = self._entries.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit.cached_at < _MAX_AGE_S and hit.key.usable(self.engine.clock.now()):
            return hit.key
        generation = self._generation
        key = await authenticate(self.engine, token)
        if key is not None and generation == self._generation:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = _Entry(key, now)
        return key

    def _watching(self) -> bool:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
            return False
        return time.monotonic() - self._checked_at < _STALE_AFTER_S

    async def _revoked(self) -> int:
        async with self.engine.store.reader() as tx:
            row = await tx.fetchone("SELECT count(*) FROM rm_api_keys WHERE revoked_at IS NOT NULL", ())
        return int(row[0]) if row else 0

    def _invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def _watch(self) -> None:
        try:
            began = time.monotonic()
            head = await self.engine.store.wait_head()
            revoked = await self._revoked()
            self._invalidate()  # whatever was cached before this watcher started is not covered by it
            self._checked_at = began
            while True:
                # Woken by any append (the revocation is one); otherwise it re-checks at least every 0.5 s.
                await self.engine.store.wait_for_events(head, _STALE_AFTER_S / 1.5)
                # The check vouches for the cache as of when it began, not when its reads came back.
                began = time.monotonic()
                head = await self.engine.store.wait_head()
                now_revoked = await self._revoked()
                if now_revoked != revoked:
                    revoked = now_revoked
                    self._invalidate()
                self._checked_at = began
                await asyncio.sleep(_CHECK_EVERY_S)
        except (EventStoreError, OSError) as exc:
            # Bypassed until the next call starts a new watcher.
            log.warning("key cache watcher stopped (%s); reading keys from the store", type(exc).__name__)
            self._invalidate()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
