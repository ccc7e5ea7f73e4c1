"""Handshake-era sessions (Mcp-Session-Id), bound to the key that opened them.

Kept in process memory: a restart ends every session and clients re-initialize (they get 404).

The cap is per key: a key that opens too many sessions loses its own oldest ones, never another
key's (or another tenant's). Idle sessions expire lazily: both maps keep least-recently-used order,
so expiry pops from the front and no call scans every session.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

IDLE_TIMEOUT_S = 3600.0
MAX_SESSIONS_PER_KEY = 1_000


@dataclass
class Session:
    session_id: str
    key_id: str
    protocol_version: str
    initialized: bool = False
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self, per_key: int = MAX_SESSIONS_PER_KEY, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.per_key = per_key
        self.idle_timeout_s = idle_timeout_s
        #: All sessions, least recently used first.
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        #: Each key's sessions, least recently used first.
        self._by_key: dict[str, OrderedDict[str, Session]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def count(self, key_id: str) -> int:
        return len(self._by_key.get(key_id, ()))

    def open(self, key_id: str, protocol_version: str) -> Session:
        now = time.monotonic()
        self._expire(now)
        own = self._by_key.setdefault(key_id, OrderedDict())
        while len(own) >= self.per_key:
            oldest_id, _ = own.popitem(last=False)
            del self._sessions[oldest_id]
        session = Session(secrets.token_urlsafe(24), key_id, protocol_version, last_seen=now)
        self._sessions[session.session_id] = session
        own[session.session_id] = session
        return session

    def get(self, session_id: str, key_id: str) -> Session | None:
        """The live session, if it exists and belongs to this key (another key's id looks unknown)."""
        now = time.monotonic()
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is None or session.key_id != key_id:
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        self._by_key[key_id].move_to_end(session_id)
        return session

    def close(self, session_id: str, key_id: str) -> bool:
        if self.get(session_id, key_id) is None:
            return False
        self._remove(self._sessions[session_id])
        return True

    def _remove(self, session: Session) -> None:
        del self._sessions[session.session_id]
        own = self._by_key[session.key_id]
        del own[session.session_id]
        if not own:
            del self._by_key[session.key_id]

    def _expire(self, now: float) -> None:
        # Front of the LRU order is the idlest: stop at the first one still live.
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_seen <= self.idle_timeout_s:
                return
            self._remove(oldest)
