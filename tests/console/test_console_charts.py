"""The console's charts: geometry stays inside the drawing for any numbers (hypothesis), and the overview draws
time to remediation and rotation age from the tenant's own data (against a real `lockzero serve`)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockzero.api.console import charts
from lockzero.engine.queries.console_queries import RemediationDay, RotationAge, StepBar
from tests.api.conftest import running_server
from tests.api.support import Server
from tests.console.support import signed_in

XSS = "<script>alert(1)</script>"
ms = st.floats(min_value=0, max_value=1e10, allow_nan=False)
days = st.lists(
    st.builds(RemediationDay, day=st.just("2030-01-01"), resolved=st.integers(0, 50), median_ms=st.none() | ms),
    max_size=31,
)
ages = st.lists(
    st.builds(
        RotationAge,
        secret_id=st.text(max_size=40),
        age_days=st.floats(min_value=0, max_value=1e5, allow_nan=False),
        max_age_days=st.none() | st.floats(min_value=0, max_value=1e5, allow_nan=False),
        overdue=st.booleans(),
    ),
    max_size=40,
)
steps = st.lists(
    st.builds(StepBar, step=st.just("shift"), status=st.just("completed"), offset_ms=ms, duration_ms=st.none() | ms),
    max_size=12,
)


@given(days)
def test_remediation_columns_stay_in_the_chart_and_rank_by_median(points: list[RemediationDay]) -> None:
    chart = charts.remediation_chart(points)
    assert len(chart.columns) == len(points)
    for c in chart.columns:
        assert 0 <= c.h <= charts.HEIGHT and abs(c.y + c.h - charts.HEIGHT) < 0.2
        assert c.x >= 0 and c.x + c.w <= charts.WIDTH + 0.2
    for a, b in zip(points, chart.columns, strict=True):
        for c, d in zip(points, chart.columns, strict=True):
            if (a.median_ms or 0) > (c.median_ms or 0):
                assert b.h >= d.h


@given(ages)
def test_age_bars_stay_in_the_chart(rows: list[RotationAge]) -> None:
    for bar in charts.age_chart(rows):
        assert 2.0 <= bar.w <= charts.WIDTH
        assert bar.limit_x is None or 0 <= bar.limit_x <= charts.WIDTH
        if bar.limit_x is not None and bar.row.age_days > (bar.row.max_age_days or 0):
            assert bar.w >= bar.limit_x  # an overdue secret's bar crosses its limit


@given(steps)
def test_step_spans_stay_in_the_chart(bars: list[StepBar]) -> None:
    for _, span in charts.step_spans(bars):
        assert 0 <= span.x <= charts.WIDTH - 2 and span.w >= 2.0
        assert span.x + span.w <= charts.WIDTH + 2.0 + 0.2 or span.w == 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-charts")) as s:
        yield s


def test_overview_draws_the_tenants_charts(server: Server) -> None:
    tenant, other = server.tenant("ch"), server.tenant("ch-other")
    server.cli("secret", "add", "prod/old", "--tenant", tenant, "--provider", "generated",
               "--environment", "prod", "--max-age", "30d")  # fmt: skip
    server.secret(tenant, "prod/" + "x" * 10, labels={"n": XSS}, value=b"charts-test-credential-0123456789abcdef")
    server.secret(other, "prod/not-yours")
    key = server.key(tenant)
    found = server.result(
        key, "tools/call", {"name": "detect_exposure", "arguments": {"text": "charts-test-credential-0123456789abcdef"}}
    )
    incident_id = found["structuredContent"]["incident_ids"][0]
    op = signed_in(server, tenant, "cora", "operator")
    page = op.get("/").text
    assert 'id="ttr-chart"' in page and 'id="age-chart"' in page
    assert "resolved, median" not in page  # nothing resolved yet: no columns
    age_chart = page.split('id="age-chart"', 1)[1].split("</svg>", 1)[0]
    assert "prod/old" in age_chart and "prod/xxxxxxxxxx" in age_chart and "not-yours" not in age_chart
    assert age_chart.count('class="limit"') == 1  # only prod/old has a maximum age

    op.get("/incident", id=incident_id)
    assert op.post("/incident/resolve", {"incident_id": incident_id, "note": "rotated by hand"}).status_code == 200
    page = op.get("/").text
    columns = re.findall(r"<title>(\d\d-\d\d): (\d+) resolved, median ([^<]+)</title>", page)
    assert len(columns) == 1 and columns[0][1] == "1", columns
    assert "<script>" not in page.split("<main>", 1)[1]
