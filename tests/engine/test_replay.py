"""Replay (engine.replay): rebuilding every read model from the events gives exactly the rows the
inline projections wrote, on both backends; side tables (ciphertext, wrapped keys) are untouched."""

from __future__ import annotations

from datetime import timedelta

from lockzero.engine.app import Engine
from lockzero.engine.audit import records as audit
from lockzero.engine.commands import dependents, policies, secrets, tenants
from lockzero.engine.commands.secrets import SecretFilter
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.readmodels.schema import PROJECTION_TABLES
from lockzero.engine.security import keys
from tests.engine.support import OPERATOR, T0, ManualClock, add_imported_redis, all_events, snapshot

SIDE_TABLES = ("lz_tenant_keys", "lz_secret_versions", "lz_sealed")
AGENT = ev.EventMeta(actor_id="key_agent", actor_type="agent", correlation_id="corr-1")


#: Tables the history below fills; every table of PROJECTION_TABLES is compared either way.
FILLED = (
    "rm_rotations",
    "rm_tenants",
    "rm_api_keys",
    "rm_secrets",
    "rm_secret_labels",
    "rm_dependents",
    "rm_incidents",
    "rm_audit",
)


async def build_history(engine: Engine, clock: ManualClock) -> dict[str, str]:
    """A varied history over two tenants; returns some tokens to check the engine still works after."""
    out: dict[str, str] = {}
    for name in ("acme", "beta"):
        await tenants.create_tenant(engine, name, OPERATOR)
        clock.advance(seconds=1)

    rw = await keys.create_key(engine, "acme", OPERATOR, name="rw")
    ro = await keys.create_key(engine, "acme", OPERATOR, name="ro", read_only=True, scopes=("prod/*", "*/api-key"))
    gone = await keys.create_key(engine, "acme", OPERATOR, name="gone")
    await keys.create_key(engine, "acme", OPERATOR, name="expiring", expires_at=T0 + timedelta(days=1))
    beta_key = await keys.create_key(engine, "beta", OPERATOR, name="beta")
    clock.advance(minutes=1)
    await keys.revoke_key(engine, gone.key_id, OPERATOR)
    await keys.revoke_key(engine, beta_key.key_id, OPERATOR)
    out |= {"rw": rw.key, "ro": ro.key, "gone": gone.key}

    await secrets.register_secret(
        engine,
        "acme",
        OPERATOR,
        secret_id="prod/db",
        provider="generated",
        environment="prod",
        labels={"team": "core", "tier": "1"},
        policy=ev.Policy(max_age_s=30 * 86400),
    )
    # Replay is about read models, not about the Redis user.
    await add_imported_redis(engine, "acme", "staging/cache", b"imported-redis-password", environment="staging")
    await secrets.register_secret(
        engine, "beta", OPERATOR, secret_id="prod/db", provider="generated", environment="prod", labels={"x": "y"}
    )
    clock.advance(hours=1)

    await policies.update_policy(engine, "acme", "prod/db", OPERATOR, required_approvals=2, grace_s=86400)
    await policies.update_policy(engine, "acme", "prod/db", OPERATOR, max_age_s=7 * 86400, notify=("https://n.x/",))
    pull = await dependents.add_dependent(
        engine, "acme", OPERATOR, secret_id="prod/db", service="api", environment="prod", delivery="pull"
    )
    await dependents.add_dependent(
        engine,
        "acme",
        OPERATOR,
        secret_id="prod/db",
        service="hooks",
        environment="prod",
        delivery="webhook:https://h.example/x",
    )
    filedep = await dependents.add_dependent(
        engine, "acme", OPERATOR, secret_id="prod/db", service="batch", environment="prod", delivery="file:/etc/x"
    )
    await dependents.add_dependent(
        engine, "beta", OPERATOR, secret_id="prod/db", service="api", environment="prod", delivery="pull"
    )
    out["pull"] = pull.token or ""

    # Events without a domain function yet, appended the way the saga and tools will append them.
    clock.advance(days=2)
    stream = naming.secret_stream("acme", "prod/db")
    await engine.append(
        stream,
        [ev.DependentRemoved(at=clock.now(), tenant="acme", secret_id="prod/db", dependent_id=filedep.dependent_id)],
        OPERATOR,
    )
    await engine.append(
        stream,
        [ev.SecretLabelsChanged(at=clock.now(), tenant="acme", secret_id="prod/db", labels={"team": "payments"})],
        OPERATOR,
    )
    await engine.append(
        stream,
        [
            ev.SecretVersionCreated(at=clock.now(), tenant="acme", secret_id="prod/db", version=2, origin="rotation"),
            ev.SecretVersionActivated(
                at=clock.now(), tenant="acme", secret_id="prod/db", version=2, previous_version=1
            ),
        ],
        AGENT,
    )

    # A completed rotation and a compensated one, as the saga records them; adoption; a revocation.
    rot = {"tenant": "acme", "secret_id": "prod/db"}
    await engine.append(
        stream,
        [
            ev.RotationRequested(
                at=clock.now(), **rot, rotation_id="rot_1", kind="rotate", reason="leak", from_version=2, to_version=3
            ),
            ev.SagaStepStarted(at=clock.now(), **rot, rotation_id="rot_1", step="create"),
            ev.SecretVersionCreated(at=clock.now(), **rot, version=3, origin="rotation"),
            ev.SagaStepCompleted(at=clock.now(), **rot, rotation_id="rot_1", step="create", detail="v3"),
            ev.SecretVersionActivated(at=clock.now(), **rot, version=3, previous_version=2),
            ev.SecretVersionRetired(at=clock.now(), **rot, version=2, restorable_until=clock.now() + timedelta(days=7)),
            ev.RotationFinished(at=clock.now(), **rot, rotation_id="rot_1", outcome="completed"),
        ],
        AGENT,
    )
    clock.advance(minutes=1)
    await engine.append(
        stream,
        [
            ev.RotationRequested(
                at=clock.now(), **rot, rotation_id="rot_2", kind="rotate", reason="again", from_version=3, to_version=4
            ),
            ev.SagaStepStarted(at=clock.now(), **rot, rotation_id="rot_2", step="create"),
            ev.SecretVersionCreated(at=clock.now(), **rot, version=4, origin="rotation"),
            ev.SagaStepCompleted(at=clock.now(), **rot, rotation_id="rot_2", step="create"),
            ev.SagaStepStarted(at=clock.now(), **rot, rotation_id="rot_2", step="validate"),
            ev.SagaStepFailed(at=clock.now(), **rot, rotation_id="rot_2", step="validate", error="rejected"),
            ev.SecretVersionDiscarded(at=clock.now(), **rot, version=4),
            ev.RotationFinished(at=clock.now(), **rot, rotation_id="rot_2", outcome="compensated"),
        ],
        OPERATOR,
    )
    await engine.append(
        "adoption-acme/prod/db",
        [ev.DependentAdopted(at=clock.now(), **rot, dependent_id=pull.dependent_id, version=3, via="pull")],
        ev.EventMeta(actor_id=pull.dependent_id, actor_type="service"),
    )
    await engine.append(
        naming.secret_stream("beta", "prod/db"),
        [ev.SecretRevoked(at=clock.now(), tenant="beta", secret_id="prod/db", versions=(1,))],
        OPERATOR,
    )

    await audit.record(engine, "acme", OPERATOR, "secret.add", "ok", secret_id="prod/db", duration_ms=1.2345)
    await audit.record(engine, "beta", AGENT, "rotate_secret", "denied", detail="read-only key", duration_ms=0.5)
    async with audit.audited(engine, "acme", AGENT, "list_secrets"):
        pass

    inc = {"tenant": "acme", "incident_id": "inc_0001"}
    await engine.append(
        naming.incident_stream("acme", "inc_0001"),
        [
            ev.IncidentOpened(
                at=clock.now(),
                **inc,
                kind="leaked_credential",
                severity="critical",
                secret_id="prod/db",
                summary="leak",
            )
        ],
        AGENT,
    )
    clock.advance(minutes=3)
    await engine.append(
        naming.incident_stream("acme", "inc_0001"),
        [
            ev.IncidentLinked(at=clock.now(), **inc, ref_kind="rotation", ref_id="rot_1"),
            ev.IncidentAcknowledged(at=clock.now(), **inc, by="alice"),
        ],
        OPERATOR,
    )
    clock.advance(minutes=3)
    await engine.append(
        naming.incident_stream("acme", "inc_0001"),
        [ev.IncidentResolved(at=clock.now(), **inc, resolution="rotated")],
        OPERATOR,
    )
    await engine.append(
        naming.incident_stream("beta", "inc_0002"),
        [
            ev.IncidentOpened(
                at=clock.now(),
                tenant="beta",
                incident_id="inc_0002",
                kind="overdue_rotation",
                severity="low",
                secret_id=None,
                summary="overdue",
            )
        ],
        AGENT,
    )
    return out


async def test_replay_rebuilds_identical_read_models(engine: Engine, clock: ManualClock) -> None:
    tokens = await build_history(engine, clock)
    before = await snapshot(engine, PROJECTION_TABLES)
    side_before = await snapshot(engine, SIDE_TABLES)
    for table in FILLED:
        assert before[table], f"the history leaves {table} empty, so replay would prove nothing about it"
    # Spot checks that the history reached the read models as intended.
    assert {r[0] for r in before["rm_tenants"]} == {"acme", "beta"}
    assert {r[5] for r in before["rm_incidents"]} == {"resolved", "open"}
    assert sum(1 for r in before["rm_api_keys"] if r[8] is not None) == 2
    assert {r[1]: r[4] for r in before["rm_rotations"]} == {"rot_1": "completed", "rot_2": "compensated"}
    assert {(r[0], r[5]) for r in before["rm_secrets"]} == {("acme", "active"), ("beta", "revoked")}
    assert any(r[9] == 3 for r in before["rm_dependents"])  # adopted_version of the pull dependent

    events = await all_events(engine)
    assert await engine.replay() == len(events)
    assert await snapshot(engine, PROJECTION_TABLES) == before
    assert await snapshot(engine, SIDE_TABLES) == side_before

    # A second replay changes nothing either.
    assert await engine.replay() == len(events)
    assert await snapshot(engine, PROJECTION_TABLES) == before

    # The rebuilt read models serve the engine as before.
    assert await keys.authenticate(engine, tokens["rw"]) is not None
    assert await keys.authenticate(engine, tokens["gone"]) is None
    assert await secrets.read_version_value(engine, "acme", "staging/cache", 1) == b"imported-redis-password"
    page = await secrets.list_secrets(engine, "acme", SecretFilter(label="team=payments"))
    assert [(s.secret_id, s.current_version) for s in page.secrets] == [("prod/db", "v3")]


async def test_replay_repairs_a_corrupted_read_model(engine: Engine, clock: ManualClock) -> None:
    tokens = await build_history(engine, clock)
    before = await snapshot(engine, PROJECTION_TABLES)
    async with engine.store.transaction() as tx:
        assert await tx.execute("UPDATE rm_secrets SET status = 'bogus' WHERE tenant = 'acme'") == 2
        await tx.execute("UPDATE rm_api_keys SET revoked_at = NULL")
        await tx.execute("DELETE FROM rm_tenants WHERE tenant = 'beta'")
        await tx.execute("DELETE FROM rm_secret_labels")
        await tx.execute("UPDATE rm_secrets SET dependents_count = 99")
        await tx.execute(
            "INSERT INTO rm_incidents (tenant, incident_id, kind, severity, secret_id, status, opened_at, updated_at,"
            " summary) VALUES ('acme', 'inc_ghost', 'usage_anomaly', 'low', NULL, 'open', 'x', 'x', 'ghost')"
        )
    corrupted = await snapshot(engine, PROJECTION_TABLES)
    assert corrupted != before
    assert await keys.authenticate(engine, tokens["gone"]) is not None  # the corruption is visible...

    await engine.replay()
    assert await snapshot(engine, PROJECTION_TABLES) == before
    assert await keys.authenticate(engine, tokens["gone"]) is None  # ...and repaired
    statuses = {s.secret_id: s.status for s in (await secrets.list_secrets(engine, "acme", SecretFilter())).secrets}
    assert statuses == {"prod/db": "active", "staging/cache": "active"}


async def test_replay_of_an_empty_store(engine: Engine) -> None:
    assert await engine.replay() == 0
    assert await snapshot(engine, PROJECTION_TABLES) == {t: [] for t in PROJECTION_TABLES}
