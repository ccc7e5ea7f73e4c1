"""Console sessions, kept server-side in lz_console_sessions so any API process serves them and sign-out ends them.

The cookie holds a random token; the table holds its SHA-256 only, so a copy of the database cannot be used to
take over a session. Each session has its own CSRF token, compared in constant time on every form post.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.security.operators import OperatorView, get_operator

COOKIE = "__Host-lz_session"
#: Signed-out forms (sign-in, set-up) use a double-submit cookie: SameSite=Strict keeps other sites from sending it.
PRE_COOKIE = "__Host-lz_form"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
#: The idle clock moves at most this often (one UPDATE per minute per busy session, not per page).
TOUCH_EVERY = timedelta(minutes=1)


class ConsoleSession(msgspec.Struct, frozen=True):
    operator: OperatorView
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


async def open_session(engine: Engine, operator: OperatorView) -> str:
    token = secrets.token_urlsafe(32)
    now = iso(engine.clock.now())
    async with engine.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO lz_console_sessions (session_hash, tenant, operator_id, csrf_token, created_at, last_seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (_digest(token), operator.tenant, operator.operator_id, secrets.token_urlsafe(32), now, now),
        )
    return token


async def load_session(engine: Engine, token: str | None) -> ConsoleSession | None:
    if not token or len(token) > 100:
        return None
    now = engine.clock.now()
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            "SELECT tenant, operator_id, csrf_token, created_at, last_seen_at FROM lz_console_sessions"
            " WHERE session_hash = ?",
            (_digest(token),),
        )
    if row is None:
        return None
    created, seen = parse_iso(str(row[3])), parse_iso(str(row[4]))
    if now - seen > IDLE or now - created > ABSOLUTE:
        await close_session(engine, token)
        return None
    operator = await get_operator(engine, str(row[0]), str(row[1]))
    if operator is None or operator.status != "active":
        return None
    if now - seen > TOUCH_EVERY:
        async with engine.store.transaction() as tx:
            await tx.execute(
                "UPDATE lz_console_sessions SET last_seen_at = ? WHERE session_hash = ?", (iso(now), _digest(token))
            )
    return ConsoleSession(operator, str(row[2]))


async def close_session(engine: Engine, token: str) -> None:
    async with engine.store.transaction() as tx:
        await tx.execute("DELETE FROM lz_console_sessions WHERE session_hash = ?", (_digest(token),))
