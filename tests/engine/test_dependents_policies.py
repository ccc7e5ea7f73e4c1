"""Dependents, rotation policies, tenants and audit records (engine/commands/dependents.py, policies.py,
tenants.py, audit.py) on both backends."""

from __future__ import annotations

import msgspec
import pytest

from lockzero.engine.app import Engine
from lockzero.engine.audit import records as audit
from lockzero.engine.commands import dependents, policies, tenants
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import fold_secret
from lockzero.engine.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from lockzero.engine.security.outbound import redact_url
from tests.engine.support import OPERATOR, T0, all_events, table_rows


async def add_dep(engine: Engine, service: str, delivery: str, environment: str = "prod", secret_id: str = "prod/db"):
    return await dependents.add_dependent(
        engine,
        "acme",
        OPERATOR,
        secret_id=secret_id,
        service=service,
        environment=environment,
        delivery=delivery,
    )


# --- dependents ----------------------------------------------------------------------------------


async def test_pull_dependent_gets_a_token_shown_once(engine: Engine, acme: str) -> None:
    created = await add_dep(engine, "api", "pull")
    assert created.token is not None and created.token.startswith("lz_svc_")
    assert created.signing_secret is None and created.delivery == "pull" and created.target is None
    (row,) = await table_rows(engine, "rm_dependents")
    assert created.dependent_id in row and engine.tokens.hash(created.token) in row
    for event in await all_events(engine):
        assert created.token.encode() not in event.data


async def test_webhook_dependent_gets_a_sealed_signing_secret(engine: Engine, acme: str) -> None:
    created = await add_dep(engine, "hooks", "webhook:https://hooks.example/lockzero")
    assert created.signing_secret is not None and created.signing_secret.startswith("whsec_")
    # The URL is shown redacted from the first answer on: it may carry a token.
    assert created.token is None and created.target == redact_url("https://hooks.example/lockzero")
    assert created.target.startswith("https://hooks.example/…#")
    ref = dependents.signing_ref(created.dependent_id)
    async with engine.store.transaction() as tx:
        (blob,) = await tx.fetchone("SELECT ciphertext FROM lz_sealed WHERE tenant = ? AND ref = ?", (acme, ref))
    assert created.signing_secret.encode() not in bytes(blob)
    keys = await engine.tenant_keys(acme)
    assert keys.open(bytes(blob), ref=ref, version=0, purpose="signing") == created.signing_secret.encode()
    for event in await all_events(engine):
        assert created.signing_secret.encode() not in event.data


async def test_file_dependent(engine: Engine, acme: str) -> None:
    created = await add_dep(engine, "batch", "file:/etc/app/db-password")
    assert (created.delivery, created.target, created.token, created.signing_secret) == (
        "file",
        "/etc/app/db-password",
        None,
        None,
    )
    events, _ = await engine.load(naming.secret_stream(acme, "prod/db"))
    secret = fold_secret(events)
    assert secret is not None
    assert [(d.service, d.delivery, d.target) for d in secret.dependents] == [("batch", "file", "/etc/app/db-password")]


async def test_dependents_count_in_the_read_model(engine: Engine, acme: str) -> None:
    await add_dep(engine, "a", "pull")
    await add_dep(engine, "b", "pull")
    await add_dep(engine, "a", "pull", environment="staging")  # same service, other environment
    async with engine.store.transaction() as tx:
        (count,) = await tx.fetchone("SELECT dependents_count FROM rm_secrets WHERE secret_id = 'prod/db'")
    assert count == 3


async def test_bad_deliveries_are_rejected(engine: Engine, acme: str) -> None:
    for delivery in (
        "",
        "push",
        "pull:x",
        "file:",
        "file:relative/path",
        "file:/etc/x\x00y",
        "webhook:",
        "webhook:ftp://h/x",
        "webhook:https://",
        "webhook:hooks.example/x",
        "sftp:/x",
    ):
        with pytest.raises(InvalidInput):
            await add_dep(engine, "svc", delivery)
    assert await table_rows(engine, "rm_dependents") == []


async def test_dependent_errors(engine: Engine, acme: str) -> None:
    await add_dep(engine, "api", "pull")
    with pytest.raises(Conflict):
        await add_dep(engine, "api", "webhook:https://h.example/x")
    with pytest.raises(NotFound):
        await add_dep(engine, "api", "pull", secret_id="prod/missing")
    with pytest.raises(InvalidInput):
        await add_dep(engine, "bad service!", "pull")
    with pytest.raises(InvalidInput):
        await add_dep(engine, "api2", "pull", environment="bad env")
    # Another tenant cannot attach to acme's secret: it does not exist there.
    await tenants.create_tenant(engine, "beta", OPERATOR)
    with pytest.raises(NotFound):
        await dependents.add_dependent(
            engine, "beta", OPERATOR, secret_id="prod/db", service="x", environment="prod", delivery="pull"
        )
    assert len(await table_rows(engine, "rm_dependents")) == 1


# --- policies ------------------------------------------------------------------------------------


async def test_update_policy_changes_only_the_given_fields(engine: Engine, acme: str) -> None:
    policy = await policies.update_policy(
        engine, acme, "prod/db", OPERATOR, max_age_s=7 * 86400, required_approvals=2, notify=("https://n.example",)
    )
    assert msgspec.structs.replace(policy, notify_sealed=()) == ev.Policy(
        max_age_s=7 * 86400, required_approvals=2, notify=("https://n.example/",)
    )
    keys = await engine.tenant_keys(acme)
    assert policies.notify_urls(keys, "prod/db", policy) == ("https://n.example",)
    policy = await policies.update_policy(engine, acme, "prod/db", OPERATOR, allow_agent_rotation=False)
    assert policy.max_age_s == 7 * 86400 and policy.required_approvals == 2 and not policy.allow_agent_rotation
    events, _ = await engine.load(naming.secret_stream(acme, "prod/db"))
    secret = fold_secret(events)
    assert secret is not None and secret.policy == policy
    async with engine.store.transaction() as tx:
        max_age, due = await tx.fetchone("SELECT max_age_s, due_at FROM rm_secrets WHERE secret_id = 'prod/db'")
    assert max_age == 7 * 86400
    assert due == "2030-01-08T12:00:00.000000Z"


async def test_unchanged_policy_appends_nothing(engine: Engine, acme: str) -> None:
    _, before = await engine.load(naming.secret_stream(acme, "prod/db"))
    assert await policies.update_policy(engine, acme, "prod/db", OPERATOR, required_approvals=0) == ev.Policy()
    _, after = await engine.load(naming.secret_stream(acme, "prod/db"))
    assert after == before


@pytest.mark.parametrize(
    "changes",
    [
        {"max_age_s": 59},
        {"required_approvals": -1},
        {"required_approvals": 11},
        {"adoption_deadline_s": 0},
        {"grace_s": -1},
        {"notify": ("ftp://x",)},
    ],
)
def test_checked_policy_rejects(changes: dict[str, object]) -> None:
    import msgspec

    with pytest.raises(InvalidInput):
        policies.checked_policy(msgspec.structs.replace(ev.Policy(), **changes))


async def test_absurd_max_age_is_invalid_input(engine: Engine, acme: str) -> None:
    with pytest.raises(InvalidInput):
        await policies.update_policy(engine, acme, "prod/db", OPERATOR, max_age_s=999_999_999 * 86400)


async def test_policy_errors(engine: Engine, acme: str) -> None:
    with pytest.raises(InvalidInput):
        await policies.update_policy(engine, acme, "prod/db", OPERATOR, max_age_s=30)
    with pytest.raises(NotFound):
        await policies.update_policy(engine, acme, "prod/missing", OPERATOR, required_approvals=1)
    with pytest.raises(InvalidInput):
        await policies.update_policy(engine, acme, "bad id!", OPERATOR, required_approvals=1)
    events, _ = await engine.load(naming.secret_stream(acme, "prod/db"))
    assert not any(isinstance(e, ev.SecretPolicyChanged) for e in events)


# --- tenants -------------------------------------------------------------------------------------


async def test_tenants(engine: Engine) -> None:
    view = await tenants.create_tenant(engine, "acme", OPERATOR)
    assert (view.tenant, view.created_at) == ("acme", T0.isoformat())
    await tenants.create_tenant(engine, "beta-2", OPERATOR)
    with pytest.raises(Conflict):
        await tenants.create_tenant(engine, "acme", OPERATOR)
    for bad in ("", "Acme", "-acme", "a b", "a" * 64):
        with pytest.raises(InvalidInput):
            await tenants.create_tenant(engine, bad, OPERATOR)
    assert [t.tenant for t in await tenants.list_tenants(engine)] == ["acme", "beta-2"]
    assert await tenants.get_tenant(engine, "acme") == view
    with pytest.raises(NotFound):
        await tenants.get_tenant(engine, "ghost")
    assert len(await table_rows(engine, "lz_tenant_keys")) == 2
    with pytest.raises(NotFound):
        await engine.tenant_keys("ghost")


# --- audit ---------------------------------------------------------------------------------------


async def test_audited_records_every_outcome(engine: Engine, acme: str) -> None:
    async with audit.audited(engine, acme, OPERATOR, "demo.ok", secret_id="prod/db"):
        pass
    for exc, outcome in ((Forbidden("nope"), "denied"), (NotFound("gone"), "invalid"), (RuntimeError("x"), "error")):
        with pytest.raises(type(exc)):
            async with audit.audited(engine, acme, OPERATOR, "demo.fail"):
                raise exc
        assert audit.outcome_of(exc) == outcome
    async with engine.store.transaction() as tx:
        rows = await tx.fetchall(
            "SELECT method, outcome, detail, actor_id, actor_type, secret_id FROM rm_audit WHERE tenant = ?"
            " ORDER BY position",
            (acme,),
        )
    assert rows == [
        ("demo.ok", "ok", "", "test:operator", "operator", "prod/db"),
        ("demo.fail", "denied", "nope", "test:operator", "operator", None),
        ("demo.fail", "invalid", "gone", "test:operator", "operator", None),
        ("demo.fail", "error", "RuntimeError", "test:operator", "operator", None),
    ]
