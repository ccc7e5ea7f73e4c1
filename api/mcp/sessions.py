"""Handshake-era sessions (Mcp-Session-Id), bound to the key that opened them, kept in the event store's
database (table lz_mcp_sessions) so that any API process serves any session and a restart ends none.

Why the database and not Redis: the database is there in every deployment (the embedded default has
no Redis), every request already reads it to authenticate the key, and one code path serves both
backends. Sessions are telemetry-like state, not events: nothing is appended, replay leaves the table
alone, and losing it only makes clients initialize again.

Costs per request: a lookup is one SELECT by primary key. The idle clock is moved by an UPDATE only
when the session was last seen more than TOUCH_EVERY_S ago, so a busy session writes once a minute,
not once per request (idle expiry is accurate to that minute). There is no in-process cache: another
process may have ended the session (DELETE /api/mcp), and a cache could not learn that in time.

The cap is per key: a key that opens too many sessions loses its own least recently used ones, never
another key's (or another tenant's). Expiry is lazy: a lookup ignores an idle row, and each open
deletes a bounded batch of idle rows through the index on last_seen_at; nothing scans every session.
The table holds a hash of the session id, not the id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from lockzero.engine.domain.clock import Clock, SystemClock, iso, parse_iso
from lockzero.eventstore import EventStore

IDLE_TIMEOUT_S = 3600.0
MAX_SESSIONS_PER_KEY = 1_000
#: A lookup moves the idle clock only when it is at least this old (one write a minute per busy session).
TOUCH_EVERY_S = 60.0
#: Idle rows of any key deleted per open: enough to outpace opens, small enough to keep opens quick.
SWEEP_BATCH = 100


@dataclass(frozen=True)
class Session:
    session_id: str
    key_id: str
    protocol_version: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(
        self,
        store: EventStore,
        *,
        per_key: int = MAX_SESSIONS_PER_KEY,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.per_key = per_key
        self.idle_timeout_s = idle_timeout_s
        self.touch_every_s = min(TOUCH_EVERY_S, idle_timeout_s / 4)
        self.clock: Clock = clock or SystemClock()

    def _cutoff(self, now: datetime) -> str:
        return iso(now - timedelta(seconds=self.idle_timeout_s))

    async def count(self, key_id: str) -> int:
        """Live sessions of one key."""
        async with self.store.reader() as tx:
            row = await tx.fetchone(
                "SELECT COUNT(*) FROM lz_mcp_sessions WHERE key_id = ? AND last_seen_at > ?",
                (key_id, self._cutoff(self.clock.now())),
            )
        return int(row[0]) if row else 0

    async def open(self, key_id: str, protocol_version: str) -> Session:
        now = self.clock.now()
        session = Session(secrets.token_urlsafe(24), key_id, protocol_version)
        async with self.store.transaction() as tx:
            if tx.dialect == "postgresql":
                # Opens of one key take turns, so the cap holds exactly with many processes at once
                # (SQLite writers take turns already).
                await tx.execute("SELECT pg_advisory_xact_lock(7262612, hashtext(?))", (key_id,))
            await tx.execute(
                "DELETE FROM lz_mcp_sessions WHERE session_hash IN (SELECT session_hash FROM lz_mcp_sessions"
                " WHERE last_seen_at <= ? ORDER BY last_seen_at LIMIT ?)",
                (self._cutoff(now), SWEEP_BATCH),
            )
            await tx.execute(
                "INSERT INTO lz_mcp_sessions (session_hash, key_id, protocol_version, opened_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (_digest(session.session_id), key_id, protocol_version, iso(now), iso(now)),
            )
            # Beyond the cap, this key's least recently used sessions go (SQLite needs a LIMIT before OFFSET).
            limit = "LIMIT -1 " if tx.dialect == "sqlite" else ""
            await tx.execute(
                "DELETE FROM lz_mcp_sessions WHERE session_hash IN (SELECT session_hash FROM lz_mcp_sessions"
                f" WHERE key_id = ? ORDER BY last_seen_at DESC, opened_at DESC {limit}OFFSET ?)",
                (key_id, self.per_key),
            )
        return session

    async def get(self, session_id: str, key_id: str) -> Session | None:
        """The live session, if it exists and belongs to this key (another key's id looks unknown)."""
        now = self.clock.now()
        digest = _digest(session_id)
        async with self.store.reader() as tx:
            row = await tx.fetchone(
                "SELECT protocol_version, last_seen_at FROM lz_mcp_sessions"
                " WHERE session_hash = ? AND key_id = ? AND last_seen_at > ?",
                (digest, key_id, self._cutoff(now)),
            )
        if row is None:
            return None
        if (now - parse_iso(str(row[1]))).total_seconds() >= self.touch_every_s:
            async with self.store.transaction() as tx:
                await tx.execute(
                    "UPDATE lz_mcp_sessions SET last_seen_at = ? WHERE session_hash = ? AND last_seen_at < ?",
                    (iso(now), digest, iso(now)),
                )
        return Session(session_id, key_id, str(row[0]))

    async def close(self, session_id: str, key_id: str) -> bool:
        """End the session for every process; False when it was unknown, another key's, or idle too long."""
        async with self.store.transaction() as tx:
            ended = await tx.execute(
                "DELETE FROM lz_mcp_sessions WHERE session_hash = ? AND key_id = ? AND last_seen_at > ?",
                (_digest(session_id), key_id, self._cutoff(self.clock.now())),
            )
        return ended > 0
