"""The compliance report as one self-contained HTML file: tables and inline SVG charts, no script.

Chart geometry is computed here (numbers in, rectangles out); the Jinja template only draws, with autoescape
on, so a hostile name (an approver, a label) is text in the page, never markup.
"""

from __future__ import annotations

import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from lockzero.engine.queries.compliance import ComplianceReport, DayCount, Durations

WIDTH = 1000.0
ROW = 18.0
#: The age chart shows the secrets furthest past (or closest to) their maximum age; the table lists all.
AGE_CHART_ROWS = 40

_env = Environment(
    loader=PackageLoader("lockzero.engine.queries", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class Rect(msgspec.Struct, frozen=True):
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


class Chart(msgspec.Struct, frozen=True):
    height: float
    rects: list[Rect]
    #: (x, y, text, anchor) labels.
    labels: list[tuple[float, float, str, str]]


def _r(v: float) -> float:
    return round(v, 1)


def age_chart(report: ComplianceReport) -> Chart:
    """One row per secret: its age as a bar (red when overdue), its maximum age as a thin mark."""
    rows = sorted(
        report.secrets,
        key=lambda s: -(s.age_days / s.max_age_days) if s.max_age_days else 0.0,
    )[:AGE_CHART_ROWS]
    scale = max([s.age_days for s in rows] + [s.max_age_days or 0.0 for s in rows] + [1.0])
    left, span = 260.0, WIDTH - 300.0
    rects: list[Rect] = []
    labels: list[tuple[float, float, str, str]] = []
    for i, s in enumerate(rows):
        y = 8 + i * ROW
        cls = "bad" if s.overdue else ("ok" if s.max_age_days else "none")
        policy = f"max age {s.max_age_days:g} d" if s.max_age_days else "no max age"
        rects.append(
            Rect(left, y, _r(max(s.age_days / scale * span, 1.0)), ROW - 6, cls, f"{s.age_days:g} d, {policy}")
        )
        if s.max_age_days:
            rects.append(Rect(_r(left + s.max_age_days / scale * span), y - 2, 2.0, ROW - 2, "limit", policy))
        labels.append((left - 8, y + ROW - 8, s.secret_id, "end"))
        labels.append((_r(left + span + 8), y + ROW - 8, f"{s.age_days:g} d", "start"))
    return Chart(_r(16 + len(rows) * ROW), rects, labels)


def daily_chart(days: list[DayCount], series: tuple[tuple[str, str], ...]) -> Chart:
    """Stacked columns per day for the given (field, css class) series."""
    top = max([sum(getattr(d, f) for f, _ in series) for d in days] + [1])
    height, base, left = 160.0, 140.0, 40.0
    step = (WIDTH - left) / max(len(days), 1)
    rects: list[Rect] = []
    for i, d in enumerate(days):
        y = base
        for field, cls in series:
            n = int(getattr(d, field))
            if n:
                h = n / top * (base - 10)
                y -= h
                rects.append(
                    Rect(_r(left + i * step + 1), _r(y), _r(max(step - 2, 1.0)), _r(h), cls, f"{d.day}: {n} {field}")
                )
    labels = [(left - 6, 16.0, str(top), "end"), (left - 6, base, "0", "end")]
    if days:
        labels += [(left, height - 4, days[0].day, "start"), (WIDTH, height - 4, days[-1].day, "end")]
    return Chart(height, rects, labels)


def share_chart(parts: list[tuple[str, int, str]]) -> Chart:
    """One 100 % bar split into (label, count, css class) parts."""
    total = sum(n for _, n, _ in parts)
    rects: list[Rect] = []
    x = 0.0
    for label, n, cls in parts:
        if n and total:
            w = n / total * WIDTH
            rects.append(Rect(_r(x), 4.0, _r(w), 24.0, cls, f"{label}: {n} ({100 * n / total:.0f} %)"))
            x += w
    return Chart(32.0, rects, [])


def meters(items: list[tuple[str, int, int]]) -> Chart:
    """Horizontal meters: (label, count, of) → a bar filled count/of."""
    left, span = 260.0, WIDTH - 340.0
    rects: list[Rect] = []
    labels: list[tuple[float, float, str, str]] = []
    for i, (label, n, of) in enumerate(items):
        y = 6 + i * 26.0
        share = n / of if of else 1.0
        rects.append(Rect(left, y, span, 18.0, "track", label))
        rects.append(Rect(left, y, _r(share * span), 18.0, "ok", f"{label}: {n} of {of}"))
        labels.append((left - 8, y + 14, label, "end"))
        labels.append((_r(left + span + 8), y + 14, f"{n}/{of} ({100 * share:.0f} %)", "start"))
    return Chart(_r(12 + len(items) * 26.0), rects, labels)


def human(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def render_html(report: ComplianceReport) -> str:
    r = report
    outcome_classes = {"completed": "ok", "compensated": "warn", "failed": "bad", "cancelled": "none"}
    charts = {
        "age": age_chart(r),
        "outcomes": share_chart(
            [(o, n, outcome_classes.get(o, "other")) for o, n in r.rotations.by_outcome.items() if n]
        ),
        "coverage": meters(
            [
                ("maximum age set", r.coverage.with_max_age, r.coverage.secrets),
                ("human approvals required", r.coverage.with_approvals, r.coverage.secrets),
                ("rotated automatically", r.coverage.with_auto_rotate, r.coverage.secrets),
                ("not overdue", r.coverage.secrets - len(r.overdue), r.coverage.secrets),
            ]
        ),
        "rotations": daily_chart(r.daily, (("completed", "ok"), ("failed", "bad"), ("other", "other"))),
        "incidents": daily_chart(r.daily, (("incidents_resolved", "ok"), ("incidents_opened", "bad"))),
    }
    durations: dict[str, Durations] = {
        "Time to remediation (rotation requested → finished, completed)": r.time_to_remediation,
        "Time to resolve an incident (opened → resolved)": r.incidents.time_to_resolve,
        "Time to approval (requested → enough approvals)": r.approvals.time_to_approval,
    }
    return _env.get_template("compliance.html").render(
        r=r, charts=charts, durations=durations, human=human, width=WIDTH
    )
