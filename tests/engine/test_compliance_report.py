"""The compliance report (issue 16) on both backends: a tenant with a few generated secrets, rotations run by the
embedded (in-process) saga, approvals, a denial and incidents, all on a clock the test moves, so every figure
of the JSON report is known exactly; the HTML escapes whatever names it shows."""

from __future__ import annotations

import msgspec
import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import approvals, denial, tenants
from lockzero.engine.commands.incidents import open_incident, resolve_incident
from lockzero.engine.commands.rotations import rotate
from lockzero.engine.domain.errors import InvalidInput, NotFound
from lockzero.engine.queries.compliance import ComplianceReport, compliance_report
from lockzero.engine.queries.compliance_html import render_html
from lockzero.workers.inprocess import InProcessQueue
from tests.engine.support import OPERATOR, ManualClock, add_generated

DAY = 86400
HOSTILE = '<script>alert("x")</script>&<b>'


async def _add(engine: Engine, secret_id: str, **policy: object) -> None:
    await add_generated(engine, secret_id, environment=secret_id.split("/")[0], labels={"owner": HOSTILE}, **policy)


async def _story(engine: Engine, clock: ManualClock, queue: InProcessQueue) -> None:
    """Day 0: four secrets. Day 3: db rotated at once; api rotated after a 1 h approval; a second api rotation
    denied. Day 4: an incident resolved after 2 h, another left open. Report on day 6."""
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await _add(engine, "prod/db", max_age_s=30 * DAY)
    await _add(engine, "prod/api", max_age_s=10 * DAY, required_approvals=1)
    await _add(engine, "prod/old", max_age_s=5 * DAY, allow_agent_rotation=False)
    await _add(engine, "dev/nopolicy", auto_rotate=False)

    clock.advance(days=3)
    await rotate(engine, queue, "acme", "prod/db", OPERATOR, "routine")
    await queue.wait_idle()
    pending = await rotate(engine, queue, "acme", "prod/api", OPERATOR, "routine")
    clock.advance(hours=1)
    await approvals.approve(engine, "acme", pending.rotation_id, HOSTILE, queue)
    await queue.wait_idle()
    second = await rotate(engine, queue, "acme", "prod/api", OPERATOR, "again")
    await denial.deny(engine, "acme", second.rotation_id, "carol", "not now")

    clock.advance(days=1)
    resolved = await open_incident(
        engine, "acme", OPERATOR, kind="policy_violation", severity="high", secret_id="dev/nopolicy", summary="s"
    )
    await open_incident(
        engine, "acme", OPERATOR, kind="usage_anomaly", severity="medium", secret_id="prod/api", summary=HOSTILE
    )
    clock.advance(hours=2)
    await resolve_incident(engine, "acme", resolved, OPERATOR, "fixed")
    clock.advance(days=2, hours=-3)  # day 6 exactly


async def test_figures_match_what_was_done(engine: Engine, clock: ManualClock, queue: InProcessQueue) -> None:
    await _story(engine, clock, queue)
    report = await compliance_report(engine, "acme", days=30)
    by_id = {s.secret_id: s for s in report.secrets}
    assert sorted(by_id) == ["dev/nopolicy", "prod/api", "prod/db", "prod/old"]
    assert report.overdue == ["prod/old"]
    old, db, api = by_id["prod/old"], by_id["prod/db"], by_id["prod/api"]
    assert (old.age_days, old.max_age_days, old.overdue, old.overdue_days) == (6.0, 5.0, True, 1.0)
    assert (db.age_days, db.overdue, db.rotations_in_window) == (3.0, False, 1)
    assert (api.age_days, api.rotations_in_window, api.required_approvals) == (round(3 - 1 / 24, 2), 2, 1)
    assert by_id["dev/nopolicy"].max_age_days is None and not by_id["dev/nopolicy"].overdue

    cov = report.coverage
    assert (cov.secrets, cov.with_max_age, cov.with_approvals, cov.agent_rotation_blocked) == (4, 3, 1, 1)
    assert cov.percent_with_max_age == 75.0

    rot = report.rotations
    assert rot.total == 3 and rot.by_kind == {"rotate": 3} and rot.by_actor_type == {"operator": 3}
    assert {k: v for k, v in rot.by_outcome.items() if v} == {"completed": 2, "cancelled": 1}
    assert rot.success_percent == round(200 / 3, 1)
    # db: requested and finished on the same instant (the clock stood still); api: waited 1 h for approval.
    ttr = report.time_to_remediation
    assert (ttr.count, ttr.mean_s, ttr.median_s, ttr.max_s) == (2, 1800.0, 1800.0, 3600.0)

    inc = report.incidents
    assert (inc.opened, inc.resolved, inc.open_now) == (2, 1, 1)
    assert inc.opened_by_kind == {"policy_violation": 1, "usage_anomaly": 1}
    assert (inc.time_to_resolve.count, inc.time_to_resolve.median_s) == (1, 7200.0)

    ap = report.approvals
    assert (ap.rotations_needing_approval, ap.approvals_given, ap.approved, ap.denied, ap.pending) == (2, 1, 1, 1, 0)
    assert ap.approvers == [HOSTILE] and ap.time_to_approval.mean_s == 3600.0

    days = {d.day: d for d in report.daily}
    assert days["2030-01-04"].completed == 2 and days["2030-01-04"].other == 1
    assert days["2030-01-05"].incidents_opened == 2 and days["2030-01-05"].incidents_resolved == 1
    assert sum(d.completed for d in report.daily) == 2

    # A window that ends before anything happened counts nothing, but the secrets' state stays.
    clock.advance(days=40)
    later = await compliance_report(engine, "acme", days=7)
    assert later.rotations.total == 0 and later.incidents.opened == 0 and later.approvals.approvals_given == 0
    assert later.time_to_remediation.count == 0 and later.time_to_remediation.mean_s is None
    assert set(later.overdue) == {"prod/old", "prod/db", "prod/api"}
    assert later.incidents.open_now == 1


async def test_html_has_charts_and_escapes_names(engine: Engine, clock: ManualClock, queue: InProcessQueue) -> None:
    await _story(engine, clock, queue)
    report = await compliance_report(engine, "acme")
    page = render_html(report)
    assert page.count("<svg") == 5 and "<script" not in page and "&lt;script&gt;" in page
    assert "prod/old" in page and 'class="overdue"' in page
    # Ids are restricted at the door; the renderer escapes one anyway, e.g. from a hand-edited read model.
    hostile = msgspec.structs.replace(report.secrets[0], secret_id='"><img src=x onerror=alert(1)>')
    page = render_html(msgspec.structs.replace(report, secrets=[hostile], overdue=[hostile.secret_id]))
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "&#34;&gt;" in page


async def test_errors(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await compliance_report(engine, "nobody")
    with pytest.raises(InvalidInput):
        await compliance_report(engine, "Bad Name")
    await tenants.create_tenant(engine, "empty", OPERATOR)
    for days in (0, 99999):
        with pytest.raises(InvalidInput):
            await compliance_report(engine, "empty", days=days)
    empty = await compliance_report(engine, "empty")
    assert isinstance(empty, ComplianceReport) and empty.secrets == [] and empty.coverage.percent_with_max_age == 100.0
    assert "No secrets." in render_html(empty)
