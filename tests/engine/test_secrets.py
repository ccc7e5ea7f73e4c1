"""Secrets (engine/commands/secrets.py) on both backends: registration, encrypted values, the list query."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.commands import policies, secrets, tenants
from lockzero.engine.commands.secrets import SecretFilter
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.errors import Conflict, InvalidInput, NotFound
from lockzero.engine.security.crypto import CryptoError, MasterKey
from lockzero.eventstore import open_store
from tests.engine.support import OPERATOR, ManualClock, all_events, table_rows

REDIS = {"url": "redis://default:admin-canary-pw@127.0.0.1:6379/0", "username": "app"}
VALUE = b"imported-canary-\x00\xff\xfe-value"


@pytest.fixture
async def acme(engine: Engine) -> str:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    return "acme"


async def add(
    engine: Engine,
    secret_id: str,
    *,
    tenant: str = "acme",
    provider: str = "generated",
    environment: str = "prod",
    config: dict[str, object] | None = None,
    value: bytes | None = None,
    labels: dict[str, str] | None = None,
    policy: ev.Policy | None = None,
) -> secrets.SecretSummary:
    return await secrets.register_secret(
        engine,
        tenant,
        OPERATOR,
        secret_id=secret_id,
        provider=provider,
        environment=environment,
        config=config,
        value=value,
        labels=labels,
        policy=policy,
        # These tests are about storage and listing, on made-up values and one shared Redis user; the checks
        # that refuse those are tested in tests/providers/test_registration_checks.py.
        validate_value=False,
        allow_shared=True,
    )


async def ids(engine: Engine, f: SecretFilter, tenant: str = "acme") -> list[str]:
    return [s.secret_id for s in (await secrets.list_secrets(engine, tenant, f)).secrets]


# --- registration --------------------------------------------------------------------------------


async def test_register_imported_value_round_trips(engine: Engine, acme: str) -> None:
    summary = await add(
        engine, "prod/redis/app", provider="redis_acl", config=REDIS, value=VALUE, labels={"team": "core"}
    )
    assert summary == secrets.SecretSummary(
        secret_id="prod/redis/app",
        status="active",
        provider="redis_acl",
        environment="prod",
        labels={"team": "core"},
        current_version="v1",
        last_rotated_at=None,
        rotation_age_days=0,
        overdue=False,
    )
    assert await secrets.read_version_value(engine, acme, "prod/redis/app", 1) == VALUE
    assert await secrets.read_version_value(engine, acme, "prod/redis/app", 2) is None
    assert await secrets.read_version_value(engine, acme, "prod/other", 1) is None


async def test_value_and_config_are_stored_only_as_ciphertext(engine: Engine, acme: str) -> None:
    await add(engine, "prod/redis/app", provider="redis_acl", config=REDIS, value=VALUE)
    (row,) = await table_rows(engine, "lz_secret_versions")
    tenant, secret_id, version, ciphertext, fingerprint = row[:5]
    assert (tenant, secret_id, version) == (acme, "prod/redis/app", 1)
    assert VALUE not in ciphertext and len(ciphertext) == len(VALUE) + 28
    keys = await engine.tenant_keys(acme)
    assert fingerprint == keys.fingerprint(VALUE)
    (sealed,) = await table_rows(engine, "lz_sealed")
    assert sealed[1] == secrets.config_ref("prod/redis/app")
    config = keys.open(sealed[2], ref=secrets.config_ref("prod/redis/app"), version=0, purpose="config")
    assert msgspec.json.decode(config) == REDIS
    canaries = (VALUE, b"admin-canary-pw")
    for event in await all_events(engine):
        for canary in canaries:
            assert canary not in event.data and canary not in event.metadata
    for table in ("rm_secrets", "rm_secret_labels"):
        for r in await table_rows(engine, table):
            assert all(b"admin-canary-pw" not in str(c).encode() for c in r)


async def test_ciphertext_is_bound_to_its_secret(engine: Engine, acme: str) -> None:
    """A ciphertext row copied onto another secret does not decrypt (AAD binds the secret id)."""
    await add(engine, "a", value=b"value-of-a-1234")
    await add(engine, "b", value=b"value-of-b-1234")
    async with engine.store.transaction() as tx:
        (blob,) = await tx.fetchone("SELECT ciphertext FROM lz_secret_versions WHERE secret_id = 'a'")
        await tx.execute("UPDATE lz_secret_versions SET ciphertext = ? WHERE secret_id = 'b'", (bytes(blob),))
    assert await secrets.read_version_value(engine, acme, "a", 1) == b"value-of-a-1234"
    with pytest.raises(CryptoError):
        await secrets.read_version_value(engine, acme, "b", 1)


async def test_values_need_the_right_master_key(engine: Engine, acme: str) -> None:
    await add(engine, "a", value=b"value-of-a-1234")
    other = Engine(engine.store, MasterKey.generate(), engine.clock)
    with pytest.raises(CryptoError):
        await secrets.read_version_value(other, acme, "a", 1)


async def test_generated_provider_issues_v1(engine: Engine, acme: str) -> None:
    default = await add(engine, "gen/default")
    custom = await add(engine, "gen/custom", config={"length": 20, "prefix": "whk_"})
    assert default.current_version == custom.current_version == "v1"
    plain = await secrets.read_version_value(engine, acme, "gen/default", 1)
    assert plain is not None and len(plain) == 40 and plain.isalnum()
    prefixed = await secrets.read_version_value(engine, acme, "gen/custom", 1)
    assert prefixed is not None and prefixed.startswith(b"whk_") and len(prefixed) == 24
    events, _ = await engine.load(naming.secret_stream(acme, "gen/custom"))
    created = [e for e in events if isinstance(e, ev.SecretVersionCreated)]
    assert [(e.version, e.origin) for e in created] == [(1, "generated")]


async def test_provider_that_cannot_issue_needs_a_value(engine: Engine, acme: str) -> None:
    hooks = {"create_url": "http://127.0.0.1:9/c", "validate_url": "http://127.0.0.1:9/v"}
    with pytest.raises(InvalidInput, match="value-stdin"):
        await add(engine, "prod/hooked", provider="http", config=hooks)
    assert await engine.load(naming.secret_stream(acme, "prod/hooked")) == ([], 0)


async def test_duplicate_id_is_a_conflict_and_keeps_the_first(engine: Engine, acme: str) -> None:
    await add(engine, "prod/db", value=b"first-value-123")
    with pytest.raises(Conflict):
        await add(engine, "prod/db", value=b"second-value-456", environment="staging")
    assert await secrets.read_version_value(engine, acme, "prod/db", 1) == b"first-value-123"
    (summary,) = (await secrets.list_secrets(engine, acme, SecretFilter())).secrets
    assert summary.environment == "prod"
    assert len(await table_rows(engine, "lz_secret_versions")) == 1


INVALID: list[dict[str, object]] = [
    {"secret_id": "bad id"},
    {"secret_id": ""},
    {"secret_id": "x" * 257},
    {"environment": "prod env"},
    {"labels": {"bad key!": "v"}},
    {"labels": {"k": "line\nbreak"}},
    {"provider": "nope"},
    {"provider": "redis_acl", "config": {"url": "redis://h"}, "value": b"v" * 10},
    {"provider": "redis_acl", "config": {**REDIS, "extra": 1}, "value": b"v" * 10},
    {"provider": "redis_acl", "config": {**REDIS, "username": 1.5}, "value": b"v" * 10},
    {"provider": "redis_acl", "config": {**REDIS, "strategy": "alternating"}, "value": b"v" * 10},
    {"config": {"length": 8}},
    {"value": b""},
    {"value": b"v" * (secrets.MAX_VALUE_BYTES + 1)},
]


async def test_invalid_registrations_write_nothing(engine: Engine, acme: str) -> None:
    before = len(await all_events(engine))
    for kwargs in INVALID:
        args: dict[str, object] = {"secret_id": "prod/x"} | kwargs
        secret_id = str(args.pop("secret_id"))
        with pytest.raises(InvalidInput) as err:
            await add(engine, secret_id, **args)  # type: ignore[arg-type]
        assert "admin-canary-pw" not in err.value.message, kwargs
    assert len(await all_events(engine)) == before
    assert await table_rows(engine, "lz_secret_versions") == []
    assert await table_rows(engine, "rm_secrets") == []


async def test_largest_value_is_accepted(engine: Engine, acme: str) -> None:
    big = b"v" * secrets.MAX_VALUE_BYTES
    await add(engine, "big", value=big)
    assert await secrets.read_version_value(engine, acme, "big", 1) == big


async def test_unknown_tenant(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await add(engine, "prod/x", tenant="ghost", value=b"value-12345")


# --- list ----------------------------------------------------------------------------------------


async def seed(engine: Engine) -> None:
    await add(engine, "prod/db", labels={"team": "core", "tier": "1"})
    await add(engine, "prod/cache", provider="redis_acl", config=REDIS, value=b"redis-pw-123", labels={"team": "web"})
    await add(engine, "staging/db", environment="staging", labels={"team": "core"})
    await add(engine, "staging/cache", environment="staging", provider="redis_acl", config=REDIS, value=b"pw-45678")
    await add(engine, "dev/token", environment="dev", labels={"tier": "3"})


async def test_list_filters(engine: Engine, acme: str) -> None:
    await seed(engine)
    assert await ids(engine, SecretFilter()) == ["dev/token", "prod/cache", "prod/db", "staging/cache", "staging/db"]
    assert await ids(engine, SecretFilter(environment="prod")) == ["prod/cache", "prod/db"]
    assert await ids(engine, SecretFilter(provider="redis_acl")) == ["prod/cache", "staging/cache"]
    assert await ids(engine, SecretFilter(environment="staging", provider="generated")) == ["staging/db"]
    assert await ids(engine, SecretFilter(label="team")) == ["prod/cache", "prod/db", "staging/db"]
    assert await ids(engine, SecretFilter(label="team=core")) == ["prod/db", "staging/db"]
    assert await ids(engine, SecretFilter(label="team=cor")) == []
    assert await ids(engine, SecretFilter(label="tier=1", environment="prod")) == ["prod/db"]
    assert await ids(engine, SecretFilter(status="active")) == await ids(engine, SecretFilter())
    assert await ids(engine, SecretFilter(status="revoked")) == []
    assert await ids(engine, SecretFilter(environment="nowhere")) == []
    page = await secrets.list_secrets(engine, "acme", SecretFilter(label="team=web"))
    assert page.next_cursor is None
    assert [(s.provider, s.labels, s.current_version) for s in page.secrets] == [("redis_acl", {"team": "web"}, "v1")]


async def test_list_pages_walk_every_secret_once(engine: Engine, acme: str) -> None:
    names = [f"svc-{i:02d}/key" for i in range(7)]
    for name in reversed(names):
        await add(engine, name)
    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    while True:
        page = await secrets.list_secrets(engine, acme, SecretFilter(limit=3, cursor=cursor))
        seen.extend(s.secret_id for s in page.secrets)
        sizes.append(len(page.secrets))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == names
    assert sizes == [3, 3, 1]
    # A page that exactly fills the limit at the end has no next cursor.
    exact = await secrets.list_secrets(engine, acme, SecretFilter(limit=7))
    assert len(exact.secrets) == 7 and exact.next_cursor is None


async def test_limits_and_bad_cursors(engine: Engine, acme: str) -> None:
    await add(engine, "a")
    for limit in (0, -1, 201):
        with pytest.raises(InvalidInput):
            await secrets.list_secrets(engine, acme, SecretFilter(limit=limit))
    assert len((await secrets.list_secrets(engine, acme, SecretFilter(limit=200))).secrets) == 1
    bad = ["!!!", "é", base64.urlsafe_b64encode(b"\xff\xfe").decode(), base64.urlsafe_b64encode(b"{}").decode()]
    for cursor in bad:
        with pytest.raises(InvalidInput):
            await secrets.list_secrets(engine, acme, SecretFilter(cursor=cursor))


async def test_tenant_isolation(engine: Engine) -> None:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await tenants.create_tenant(engine, "beta", OPERATOR)
    await add(engine, "shared/name", tenant="acme", value=b"acme-value-123")
    await add(engine, "acme/only", tenant="acme", value=b"acme-only-value")
    await add(engine, "shared/name", tenant="beta", value=b"beta-value-456", environment="staging")
    assert await ids(engine, SecretFilter(), "acme") == ["acme/only", "shared/name"]
    assert await ids(engine, SecretFilter(), "beta") == ["shared/name"]
    assert await ids(engine, SecretFilter(environment="prod"), "beta") == []
    assert await secrets.read_version_value(engine, "acme", "shared/name", 1) == b"acme-value-123"
    assert await secrets.read_version_value(engine, "beta", "shared/name", 1) == b"beta-value-456"
    assert await secrets.read_version_value(engine, "beta", "acme/only", 1) is None
    # A cursor made from another tenant's ids shows nothing of that tenant.
    page = await secrets.list_secrets(engine, "acme", SecretFilter(limit=1))
    assert page.next_cursor is not None
    assert await ids(engine, SecretFilter(cursor=page.next_cursor), "beta") == ["shared/name"]
    with pytest.raises(NotFound):
        await policies.update_policy(engine, "beta", "acme/only", OPERATOR, required_approvals=2)


async def test_overdue_only_follows_the_clock(engine: Engine, acme: str, clock: ManualClock) -> None:
    await add(engine, "daily", policy=ev.Policy(max_age_s=86400))
    await add(engine, "weekly", policy=ev.Policy(max_age_s=7 * 86400))
    await add(engine, "never")
    overdue = SecretFilter(overdue_only=True)

    clock.advance(hours=23)
    assert await ids(engine, overdue) == []
    clock.advance(hours=2)
    assert await ids(engine, overdue) == ["daily"]
    by_id = {s.secret_id: s for s in (await secrets.list_secrets(engine, acme, SecretFilter())).secrets}
    assert by_id["daily"].overdue and not by_id["weekly"].overdue and not by_id["never"].overdue
    assert by_id["daily"].rotation_age_days == 1

    clock.advance(days=7)
    assert await ids(engine, overdue) == ["daily", "weekly"]
    assert {s.rotation_age_days for s in (await secrets.list_secrets(engine, acme, SecretFilter())).secrets} == {8}

    # A longer max age makes it current again; overdue_only combines with other filters.
    await policies.update_policy(engine, acme, "daily", OPERATOR, max_age_s=30 * 86400)
    assert await ids(engine, overdue) == ["weekly"]
    assert await ids(engine, SecretFilter(overdue_only=True, environment="staging")) == []


# --- pagination property (fresh SQLite store per example) ----------------------------------------

secret_ids = st.sets(st.from_regex(r"[A-Za-z0-9/_.:-]{1,24}", fullmatch=True), min_size=0, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=secret_ids, limit=st.integers(min_value=1, max_value=5))
async def test_pagination_property(names: set[str], limit: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lz-engine-") as d:
        engine = Engine(await open_store(f"sqlite:///{Path(d) / 'lockzero.db'}"), MasterKey.generate())
        try:
            await engine.migrate()
            await tenants.create_tenant(engine, "acme", OPERATOR)
            for name in names:
                await add(engine, name)
            seen: list[str] = []
            cursor = None
            for _ in range(len(names) + 2):
                page = await secrets.list_secrets(engine, "acme", SecretFilter(limit=limit, cursor=cursor))
                assert len(page.secrets) <= limit
                seen.extend(s.secret_id for s in page.secrets)
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert cursor is None
            assert seen == sorted(names, key=lambda s: s.encode())
        finally:
            await engine.close()
