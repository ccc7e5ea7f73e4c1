"""Console operators: per-tenant people with a role, an argon2id password and an optional TOTP second factor.

Events say that an operator exists, its role and whether its set-up is done; the password hash and the
sealed TOTP secret live in the side table lz_operator_credentials (written in the activation's transaction),
so no credential material is ever in an event. Failed sign-ins are counted in lz_login_failures per account
and per source address: throttling and lockout hold across API processes and restarts.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import get_args

import msgspec
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lockzero.engine.app import Engine
from lockzero.engine.commands.tenants import get_tenant
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.clock import iso, parse_iso
from lockzero.engine.domain.errors import Conflict, Forbidden, InvalidInput, LockzeroError, NotFound
from lockzero.engine.security.crypto import new_id, new_token
from lockzero.eventstore import NO_STREAM, Transaction

ROLES: tuple[str, ...] = get_args(ev.OperatorRole)
#: What each role may do; a higher role may do everything a lower one may.
_RANK = {"viewer": 0, "operator": 1, "admin": 2}
SETUP_PREFIX = "lz_setup_"
SETUP_TTL = timedelta(hours=72)
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

#: Failed sign-ins allowed per window before a lockout, per account and per source address.
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)

# argon2id with the library's RFC 9106 "low memory" defaults (t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()
#: Verified when the account does not exist, so an unknown name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("lockzero-not-a-password")


class SignInRefused(LockzeroError):
    """Wrong name, password or code: one message for all, so a caller cannot tell which."""

    name = "unauthorized"


class SignInThrottled(LockzeroError):
    name = "rate_limited"


class OperatorView(msgspec.Struct, frozen=True):
    operator_id: str
    tenant: str
    name: str
    role: str
    status: str
    totp_required: bool
    totp_enrolled: bool
    created_at: str


class AddedOperator(msgspec.Struct, frozen=True):
    operator: OperatorView
    #: The one-time set-up token; returned exactly once, at creation.
    setup_token: str
    setup_expires_at: str


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput("operator name must be 1-64 characters of [a-z0-9._-], starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of: {', '.join(ROLES)}")
    return role


def role_allows(role: str, needed: str) -> bool:
    return _RANK.get(role, -1) >= _RANK[needed]


def _stream(tenant: str, name: str) -> str:
    return f"operator-{tenant}/{name}"


_COLUMNS = "operator_id, tenant, name, role, status, totp_required, totp_enrolled, created_at"


def _view(row: tuple[object, ...]) -> OperatorView:
    op_id, tenant, name, role, status, totp_required, totp_enrolled, created = row
    return OperatorView(
        str(op_id),
        str(tenant),
        str(name),
        str(role),
        str(status),
        bool(totp_required),
        bool(totp_enrolled),
        parse_iso(str(created)).isoformat(),
    )


async def _current(engine: Engine, tenant: str, name: str) -> OperatorView | None:
    """The operator of that name who is not removed (at most one)."""
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            f"SELECT {_COLUMNS} FROM rm_operators WHERE tenant = ? AND name = ? AND status <> 'removed'",
            (tenant, name),
        )
    return _view(row) if row else None


async def get_operator(engine: Engine, tenant: str, operator_id: str) -> OperatorView | None:
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            f"SELECT {_COLUMNS} FROM rm_operators WHERE tenant = ? AND operator_id = ?", (tenant, operator_id)
        )
    return _view(row) if row else None


async def add_operator(
    engine: Engine, tenant: str, name: str, role: str, actor: ev.EventMeta, *, require_totp: bool = False
) -> AddedOperator:
    await get_tenant(engine, tenant)
    check_name(name)
    check_role(role)
    if await _current(engine, tenant, name) is not None:
        raise Conflict(f"tenant {tenant!r} already has an operator {name!r}; `lockzero operator remove` it first")
    _, version = await engine.load(_stream(tenant, name))
    token = new_token(SETUP_PREFIX)
    now = engine.clock.now()
    event = ev.OperatorAdded(
        at=now,
        tenant=tenant,
        operator_id=new_id("op"),
        name=name,
        role=role,  # type: ignore[arg-type]  # checked by check_role
        totp_required=require_totp,
        setup_hash=engine.tokens.hash(token),
        setup_expires_at=now + SETUP_TTL,
    )
    # The stream of a name outlives its removals; the expected version makes two concurrent adds conflict.
    await engine.append(_stream(tenant, name), [event], actor, version if version else NO_STREAM)
    added = await _current(engine, tenant, name)
    assert added is not None
    return AddedOperator(added, token, iso(event.setup_expires_at))


async def list_operators(engine: Engine, tenant: str) -> list[OperatorView]:
    await get_tenant(engine, tenant)
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM rm_operators WHERE tenant = ? AND status <> 'removed' ORDER BY name", (tenant,)
        )
    return [_view(r) for r in rows]


async def remove_operator(engine: Engine, tenant: str, name: str, actor: ev.EventMeta) -> OperatorView:
    await get_tenant(engine, tenant)
    found = await _current(engine, tenant, check_name(name))
    if found is None:
        raise NotFound(f"no operator {name!r} in tenant {tenant!r}; `lockzero operator list` shows them")
    _, version = await engine.load(_stream(tenant, name))

    async def forget(tx: Transaction) -> None:
        # A removed person can neither sign in nor keep a session that is already open.
        await tx.write("DELETE FROM lz_operator_credentials WHERE operator_id = ?", (found.operator_id,))
        await tx.write("DELETE FROM lz_console_sessions WHERE operator_id = ?", (found.operator_id,))

    await engine.append(
        _stream(tenant, name),
        [ev.OperatorRemoved(at=engine.clock.now(), tenant=tenant, operator_id=found.operator_id)],
        actor,
        version,
        side_writes=forget,
    )
    return msgspec.structs.replace(found, status="removed")


async def require_totp(engine: Engine, tenant: str, name: str, actor: ev.EventMeta) -> OperatorView:
    """From now on this operator needs a TOTP code; one who has none enrolled cannot sign in until re-added."""
    found = await _current(engine, tenant, check_name(name))
    if found is None:
        raise NotFound(f"no operator {name!r} in tenant {tenant!r}")
    if found.totp_required:
        return found
    _, version = await engine.load(_stream(tenant, name))
    await engine.append(
        _stream(tenant, name),
        [ev.OperatorTotpRequired(at=engine.clock.now(), tenant=tenant, operator_id=found.operator_id)],
        actor,
        version,
    )
    return msgspec.structs.replace(found, totp_required=True)


# --- set-up ----------------------------------------------------------------------------------------


async def pending_setup(engine: Engine, token: str) -> OperatorView:
    """The invited operator a set-up token belongs to; unknown, spent and expired tokens all look the same."""
    if not token.startswith(SETUP_PREFIX) or len(token) > 200:
        raise NotFound("this set-up link is not valid (used, expired or mistyped); ask an admin for a new one")
    async with engine.store.reader() as tx:
        row = await tx.fetchone(
            f"SELECT {_COLUMNS}, setup_expires_at FROM rm_operators WHERE setup_hash = ? AND status = 'invited'",
            (engine.tokens.hash(token),),
        )
    if row is None or str(row[8]) <= iso(engine.clock.now()):
        raise NotFound("this set-up link is not valid (used, expired or mistyped); ask an admin for a new one")
    return _view(row[:8])


def check_password(password: str, name: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    if name in password.lower():
        raise InvalidInput("the password must not contain your operator name")


def totp_matches(secret: str, code: str, now: datetime, after_step: int) -> int | None:
    """The time step a code belongs to (this one or a neighbour, for clock skew), if it is newer than after_step.

    Remembering the last step used means a code seen over someone's shoulder cannot be replayed."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for candidate in (step - 1, step, step + 1):
        if candidate > after_step and pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            return candidate
    return None


async def complete_setup(
    engine: Engine, token: str, password: str, *, totp_secret: str | None = None, totp_code: str = ""
) -> OperatorView:
    operator = await pending_setup(engine, token)
    check_password(password, operator.name)
    sealed: str | None = None
    if operator.totp_required and not totp_secret:
        raise InvalidInput("an admin requires a TOTP second factor for you: scan the code and enter a code")
    if totp_secret:
        try:
            ok = len(totp_secret) == 32 and pyotp.TOTP(totp_secret).now() is not None
        except (ValueError, TypeError):  # not base32
            ok = False
        if not ok:
            raise InvalidInput("the TOTP secret is malformed; reload the set-up page")
        if totp_matches(totp_secret, totp_code, engine.clock.now(), 0) is None:
            raise InvalidInput("the TOTP code does not match; check the authenticator app's clock and try again")
        # The enrolment code is not remembered as used: signing in right after set-up shows the same code, and
        # that sign-in also needs the password.
        keys = await engine.tenant_keys(operator.tenant)
        sealed = keys.seal_text(totp_secret, ref=operator.operator_id, purpose="operator-totp")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    _, version = await engine.load(_stream(operator.tenant, operator.name))

    async def store(tx: Transaction) -> None:
        await tx.write(
            "INSERT INTO lz_operator_credentials (operator_id, tenant, password_hash, totp_sealed, totp_last_step)"
            " VALUES (?, ?, ?, ?, ?)",
            (operator.operator_id, operator.tenant, password_hash, sealed, 0),
        )

    # The expected version makes a second use of the same link (even a concurrent one) fail.
    await engine.append(
        _stream(operator.tenant, operator.name),
        [
            ev.OperatorActivated(
                at=engine.clock.now(),
                tenant=operator.tenant,
                operator_id=operator.operator_id,
                totp_enrolled=sealed is not None,
            )
        ],
        ev.EventMeta(actor_id=operator.name, actor_type="person"),
        version,
        side_writes=store,
    )
    return msgspec.structs.replace(operator, status="active", totp_enrolled=sealed is not None)


# --- sign-in ---------------------------------------------------------------------------------------


async def _locked(tx: Transaction, subject: str, now: str) -> bool:
    row = await tx.fetchone("SELECT locked_until FROM lz_login_failures WHERE subject = ?", (subject,))
    return row is not None and row[0] is not None and str(row[0]) > now


async def _count_failure(tx: Transaction, subject: str, limit: int, now: datetime) -> None:
    row = await tx.fetchone("SELECT failures, window_start FROM lz_login_failures WHERE subject = ?", (subject,))
    if row is None or parse_iso(str(row[1])) + FAILURE_WINDOW <= now:
        await tx.execute("DELETE FROM lz_login_failures WHERE subject = ?", (subject,))
        await tx.execute(
            "INSERT INTO lz_login_failures (subject, failures, window_start, locked_until) VALUES (?, 1, ?, NULL)",
            (subject, iso(now)),
        )
        return
    failures = int(row[0]) + 1
    locked = iso(now + LOCKOUT) if failures >= limit else None
    await tx.execute(
        "UPDATE lz_login_failures SET failures = ?, locked_until = ? WHERE subject = ?", (failures, locked, subject)
    )


async def sign_in(engine: Engine, tenant: str, name: str, password: str, totp_code: str, address: str) -> OperatorView:
    """The operator, if name, password (and TOTP code when enrolled or required) are right and nothing is locked."""
    now = engine.clock.now()
    account, source = f"acct:{tenant}/{name}"[:300], f"addr:{address}"[:300]
    async with engine.store.reader() as tx:
        if await _locked(tx, account, iso(now)) or await _locked(tx, source, iso(now)):
            raise SignInThrottled("too many failed sign-ins; wait 15 minutes and try again")
        row = await tx.fetchone(
            "SELECT o.operator_id, c.password_hash, c.totp_sealed, c.totp_last_step, o.totp_required"
            " FROM rm_operators o JOIN lz_operator_credentials c ON c.operator_id = o.operator_id"
            " WHERE o.tenant = ? AND o.name = ? AND o.status = 'active'",
            (tenant, name),
        )
    stored = str(row[1]) if row else _DUMMY_HASH
    try:
        password_ok: bool = await asyncio.to_thread(_hasher.verify, stored, password[:PASSWORD_MAX])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        password_ok = False
    step: int | None = 0
    if row is not None and password_ok:
        if row[2] is not None:
            keys = await engine.tenant_keys(tenant)
            secret = keys.open_text(str(row[2]), ref=str(row[0]), purpose="operator-totp")
            step = totp_matches(secret, totp_code, now, int(row[3]))
        elif row[4]:
            step = None  # required since set-up but never enrolled: cannot pass
    if row is None or not password_ok or step is None:
        async with engine.store.transaction() as tx:
            await _count_failure(tx, account, ACCOUNT_FAILURES, now)
            await _count_failure(tx, source, ADDRESS_FAILURES, now)
        raise SignInRefused("the tenant, name, password or code is wrong")
    async with engine.store.transaction() as tx:
        await tx.execute("DELETE FROM lz_login_failures WHERE subject = ?", (account,))
        if row[2] is not None:
            # Compare-and-set: two sign-ins with the same code cannot both pass.
            used = await tx.execute(
                "UPDATE lz_operator_credentials SET totp_last_step = ? WHERE operator_id = ? AND totp_last_step < ?",
                (step, row[0], step),
            )
            if used != 1:
                raise SignInRefused("the tenant, name, password or code is wrong")
    found = await get_operator(engine, tenant, str(row[0]))
    if found is None or found.status != "active":
        raise SignInRefused("the tenant, name, password or code is wrong")
    return found


def require_role(operator: OperatorView, needed: str, what: str) -> None:
    if not role_allows(operator.role, needed):
        raise Forbidden(f"{what} needs the {needed} role; {operator.name} is a {operator.role}")
