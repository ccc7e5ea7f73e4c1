"""The console's read-model queries on both backends (SQLite and the real PostgreSQL), with a clock the test moves:
step durations, a rotation's progress, time to remediation by day, rotation ages, notifications, tenant filters."""

from __future__ import annotations

from lockzero.engine.app import Engine
from lockzero.engine.commands import incidents, secrets, tenants
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.queries import console_queries as q
from lockzero.engine.saga.rotation import RotationSaga
from tests.engine.conftest import clock, engine  # noqa: F401 - the engine tests' fixtures, both backends
from tests.engine.support import OPERATOR, ManualClock

SID = "prod/db/password"


class InlineQueue:
    def __init__(self, runs_on: Engine) -> None:
        self.engine = runs_on

    async def enqueue(self, tenant: str, secret_id: str, rotation_id: str) -> None:
        await RotationSaga(self.engine).run(tenant, secret_id, rotation_id)


async def test_console_queries(engine: Engine, clock: ManualClock) -> None:  # noqa: F811
    for tenant in ("acme", "other"):
        await tenants.create_tenant(engine, tenant, OPERATOR)
        await secrets.register_secret(
            engine, tenant, OPERATOR, secret_id=SID, provider="generated", environment="prod",
            policy=ev.Policy(max_age_s=30 * 86400),
        )  # fmt: skip

    # A rotation run to the end: its steps in order, each with a duration, counted from the first step.
    clock.advance(hours=1)
    started = await rotate(engine, InlineQueue(engine), "acme", SID, OPERATOR, "routine")
    bars = (await q.step_durations(engine, "acme", SID))[started.rotation_id]
    assert [b.step for b in bars] == ["create", "validate", "shift", "retire", "verify"]
    assert bars[0].offset_ms == 0 and all(b.duration_ms is not None and b.status == "completed" for b in bars)
    progress = await q.rotation_progress(engine, "acme", started.rotation_id)
    assert progress is not None and progress.finished and progress.status == "completed"
    assert (progress.from_version, progress.to_version, progress.waiting_for) == (1, 2, [])
    assert await q.rotation_progress(engine, "other", started.rotation_id) is None
    assert await q.secret_of(engine, "acme", rotation_id=started.rotation_id) == SID
    assert await q.secret_of(engine, "other", rotation_id=started.rotation_id) is None

    # Incidents resolved after 2 h and after 4 h on the same day: the median is 3 h; other days are empty.
    opened = []
    for _ in range(2):
        opened.append(await incidents.open_incident(
            engine, "acme", OPERATOR, kind="leaked_credential", severity="high", secret_id=SID, summary="seen",
        ))  # fmt: skip
    clock.advance(hours=2)
    await incidents.resolve_incident(engine, "acme", opened[0], OPERATOR, "rotated")
    clock.advance(hours=2)
    await incidents.resolve_incident(engine, "acme", opened[1], OPERATOR, "rotated")
    days = await q.remediation_by_day(engine, "acme")
    assert len(days) == 30 and days[-1].day == clock.now().date().isoformat()
    assert (days[-1].resolved, days[-1].median_ms) == (2, 3 * 3600 * 1000.0)
    assert all(d.resolved == 0 and d.median_ms is None for d in days[:-1])
    assert all(d.resolved == 0 for d in await q.remediation_by_day(engine, "other"))

    # Forty days on, both secrets are past their 30-day maximum age; each tenant sees its own.
    clock.advance(days=40)
    (age,) = await q.rotation_ages(engine, "acme")
    assert (age.secret_id, age.max_age_days, age.overdue) == (SID, 30.0, True) and 40 < age.age_days < 41
    (fresh_other,) = await q.rotation_ages(engine, "other")
    assert fresh_other.age_days > age.age_days  # never rotated: counted from registration

    # Notifications: recorded deliveries of this tenant only, their URLs redacted even if recorded in full.
    url = "https://hooks.example.com/services/T000/B000/very-secret-path?token=abc"
    for tenant in ("acme", "other"):
        await engine.append(
            naming.adoption_stream(tenant, SID),
            [
                ev.NotificationSent(
                    at=clock.now(), tenant=tenant, secret_id=SID, url=url, topic="secret.rotated", status=204
                )
            ],
            OPERATOR,
        )
    (sent,) = await q.notifications(engine, "acme")
    assert sent.outcome == "HTTP 204" and sent.url.startswith("https://hooks.example.com")
    assert "very-secret-path" not in sent.url and "token" not in sent.url
    assert [p.secret_id for p in await q.policies(engine, "acme")] == [SID]
