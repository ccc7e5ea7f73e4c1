"""The pull delivery: a dependent fetches the current version with its lz_svc_ token; the read records
that it adopted that version (what the saga waits for before retiring the old credential)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lockzero.engine.app import SYSTEM, Engine
from lockzero.engine.commands.secrets import open_value
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from lockzero.engine.domain.errors import NotFound
from lockzero.engine.saga.delivery import record_adoption
from lockzero.engine.saga.verification import settle_leaks
from lockzero.engine.security.crypto import SERVICE_TOKEN_PREFIX

#: A secret's current version, its status and that version's sealed value (None where there is none).
Current = tuple[int | None, str | None, bytes | None]

# The current version and its sealed value in one read: a sidecar's pull is on the adoption's path.
_CURRENT_COLUMNS = "s.current_version, s.status, v.ciphertext"
_CURRENT_VALUE = (
    "LEFT JOIN lz_secret_versions v ON v.tenant = s.tenant AND v.secret_id = s.secret_id"
    " AND v.version = s.current_version"
)
_DEPENDENT_COLUMNS = "d.tenant, d.dependent_id, d.secret_id, d.adopted_version, d.token_hash"


@dataclass(frozen=True)
class PullDependent:
    """The dependent a lz_svc_ token belongs to, looked up once per pull (the audit names it, the read uses it)."""

    tenant: str
    dependent_id: str
    secret_id: str
    adopted_version: int | None
    #: Its secret's current version, read with it (identify(..., with_current=True)): the pull's one round trip.
    current: Current | None = field(default=None, repr=False)


async def identify(engine: Engine, token: str, *, with_current: bool = False) -> PullDependent | None:
    """The token's dependent, or None for anything that is not a live dependent token; ``with_current`` reads
    its secret's current version in the same query, for a current_for_dependent that follows at once."""
    if not token.startswith(SERVICE_TOKEN_PREFIX) or len(token) > 200:
        return None
    if with_current:
        sql = (
            f"SELECT {_DEPENDENT_COLUMNS}, {_CURRENT_COLUMNS} FROM rm_dependents d"
            f" LEFT JOIN rm_secrets s ON s.tenant = d.tenant AND s.secret_id = d.secret_id {_CURRENT_VALUE}"
        )
    else:
        sql = f"SELECT {_DEPENDENT_COLUMNS} FROM rm_dependents d"
    async with engine.store.reader() as tx:
        row = await tx.fetchone(sql + " WHERE d.token_hash = ?", (engine.tokens.hash(token),))
    if row is None or not engine.tokens.matches(token, str(row[4])):
        return None
    current = _current(row[5:]) if with_current else None
    return PullDependent(str(row[0]), str(row[1]), str(row[2]), None if row[3] is None else int(row[3]), current)


def _current(row: Sequence[Any]) -> Current:
    return (
        None if row[0] is None else int(row[0]),
        None if row[1] is None else str(row[1]),
        None if row[2] is None else bytes(row[2]),
    )


async def current_for_dependent(engine: Engine, dep: PullDependent, secret_id: str) -> dict[str, Any]:
    tenant, dependent_id, adopted = dep.tenant, dep.dependent_id, dep.adopted_version
    if dep.secret_id != secret_id:
        raise NotFound("this dependent is not attached to that secret")
    row: Current | None = dep.current
    if row is None:
        async with engine.store.reader() as tx:
            found = await tx.fetchone(
                f"SELECT {_CURRENT_COLUMNS} FROM rm_secrets s {_CURRENT_VALUE} WHERE s.tenant = ? AND s.secret_id = ?",
                (tenant, secret_id),
            )
        row = None if found is None else _current(found)
    if row is None or row[0] is None or row[1] == "revoked":
        raise NotFound("the secret has no current version (revoked or removed)")
    version = int(row[0])
    if row[2] is None:
        raise NotFound("the current version's value was destroyed")
    value = open_value(await engine.tenant_keys(tenant), secret_id, version, row[2])
    if adopted != version:
        await record_adoption(engine, tenant, secret_id, dependent_id, version, "pull")
        # The last dependent to adopt may be what a leak incident waits for.
        await settle_leaks(engine, tenant, secret_id, SYSTEM)
    body: dict[str, Any] = {
        "secret_id": secret_id,
        "version": f"v{version}",
        "version_arn": naming.version_arn(tenant, secret_id, version),
        "value": value.decode(),
    }
    username = await _username(engine, tenant, secret_id, version)
    if username:
        body["username"] = username
    return body


async def mark_seen(engine: Engine, dep: PullDependent) -> None:
    """The dependent's last_seen_at (assess_blast_radius) moves to now, for every pull of the value."""
    async with engine.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO lz_dependent_seen (tenant, dependent_id, last_seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (tenant, dependent_id) DO UPDATE SET last_seen_at = excluded.last_seen_at",
            (dep.tenant, dep.dependent_id, iso(engine.clock.now())),
        )


_usernames: dict[tuple[str, str, int], str | None] = {}


async def _username(engine: Engine, tenant: str, secret_id: str, version: int) -> str | None:
    # A version's username never changes once created: remember it instead of folding on every pull.
    key = (tenant, secret_id, version)
    if key in _usernames:
        return _usernames[key]
    username = await _fold_username(engine, tenant, secret_id, version)
    if len(_usernames) > 100_000:
        _usernames.clear()
    _usernames[key] = username
    return username


async def _fold_username(engine: Engine, tenant: str, secret_id: str, version: int) -> str | None:
    # The engine's folded secret: catching up on the events since its last fold, not the whole stream again.
    secret, _ = await engine.secrets.load(naming.secret_stream(tenant, secret_id))
    v = secret.version(version) if secret else None
    return v.username if v else None
