"""Handshake-era sessions (Mcp-Session-Id), bound to the key that opened them.

Kept in process memory: a restart ends every session and clients re-initialize (they get 404).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

IDLE_TIMEOUT_S = 3600.0
MAX_SESSIONS = 10_000


@dataclass
class Session:
    session_id: str
    key_id: str
    protocol_version: str
    initialized: bool = False
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(self, key_id: str, protocol_version: str) -> Session:
        self._expire()
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.session_id]
        session = Session(secrets.token_urlsafe(24), key_id, protocol_version)
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str, key_id: str) -> Session | None:
        """The live session, if it exists and belongs to this key (another key's id looks unknown)."""
        session = self._sessions.get(session_id)
        if session is None or session.key_id != key_id:
            return None
        if time.monotonic() - session.last_seen > IDLE_TIMEOUT_S:
            del self._sessions[session_id]
            return None
        session.last_seen = time.monotonic()
        return session

    def close(self, session_id: str, key_id: str) -> bool:
        if self.get(session_id, key_id) is None:
            return False
        del self._sessions[session_id]
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.session_id for s in self._sessions.values() if now - s.last_seen > IDLE_TIMEOUT_S]:
            del self._sessions[sid]
