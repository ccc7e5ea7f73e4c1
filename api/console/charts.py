"""Chart geometry for the console's server-rendered inline SVG (no script library; the CSP forbids inline styles,
so shapes are placed with SVG attributes). Numbers in, coordinates out; the templates draw and escape."""

from __future__ import annotations

import msgspec

from lockzero.engine.queries.console_queries import RemediationDay, RotationAge, StepBar
from lockzero.engine.queries.timeline import Timeline

#: Width of every chart's drawing area in SVG user units (the SVG scales to its box).
WIDTH = 1000.0


class Span(msgspec.Struct, frozen=True):
    """A horizontal bar: from x, w wide (user units), standing for duration_ms."""

    x: float
    w: float
    duration_ms: float


def _place(start_ms: float, duration_ms: float, total_ms: float) -> Span:
    total = max(total_ms, 1.0)
    x = min(max(start_ms, 0.0) / total * WIDTH, WIDTH - 2)
    return Span(round(x, 1), round(max(duration_ms / total * WIDTH, 2.0), 1), round(duration_ms, 1))


def timeline_bars(tl: Timeline) -> list[Span]:
    """Each entry's bar: from its offset until the next entry (how long that stage lasted); a run of polls spans
    its first to its last poll."""
    entries = tl.entries
    end = max([e.last_offset_ms or e.offset_ms for e in entries] + [tl.duration_ms or 0.0, 1.0])
    bars = []
    for i, e in enumerate(entries):
        if e.last_offset_ms is not None:
            duration = e.last_offset_ms - e.offset_ms
        elif i + 1 < len(entries):
            duration = entries[i + 1].offset_ms - e.offset_ms
        else:
            duration = 0.0
        bars.append(_place(e.offset_ms, max(duration, 0.0), end))
    return bars


def step_spans(steps: list[StepBar]) -> list[tuple[StepBar, Span]]:
    """A rotation's steps as a Gantt chart: each from its start (after the request) for as long as it took."""
    end = max([s.offset_ms + (s.duration_ms or 0.0) for s in steps] + [1.0])
    return [(s, _place(s.offset_ms, s.duration_ms or 0.0, end)) for s in steps]


#: Height of the vertical-bar charts' drawing area, and the room left under it for the day labels.
HEIGHT = 200.0


class Column(msgspec.Struct, frozen=True):
    """A vertical bar: x, y (top), w, h in user units, with its label and the value it stands for."""

    x: float
    y: float
    w: float
    h: float
    label: str
    value_ms: float | None
    count: int


class ColumnChart(msgspec.Struct, frozen=True):
    columns: list[Column]
    top_ms: float


def remediation_chart(days: list[RemediationDay]) -> ColumnChart:
    """Median time to remediation per day: one column per day, scaled to the slowest day."""
    top = max([d.median_ms or 0.0 for d in days] + [1.0])
    step = WIDTH / max(len(days), 1)
    columns = []
    for i, d in enumerate(days):
        h = round((d.median_ms or 0.0) / top * HEIGHT, 1)
        columns.append(
            Column(
                round(i * step + step * 0.15, 1),
                round(HEIGHT - h, 1),
                round(step * 0.7, 1),
                h,
                d.day[5:],
                d.median_ms,
                d.resolved,
            )
        )
    return ColumnChart(columns, top)


class AgeBar(msgspec.Struct, frozen=True):
    row: RotationAge
    y: float
    w: float
    #: Where the secret's maximum age falls on the same scale (None without a max age).
    limit_x: float | None


def age_chart(rows: list[RotationAge], row_height: float = 28.0) -> list[AgeBar]:
    """Rotation age per secret as horizontal bars on one scale (days), with each secret's maximum age marked."""
    top = max([r.age_days for r in rows] + [r.max_age_days or 0.0 for r in rows] + [1.0])

    def x(days: float) -> float:
        return round(min(max(days, 0.0) / top, 1.0) * WIDTH, 1)

    return [
        AgeBar(r, i * row_height, max(x(r.age_days), 2.0), None if r.max_age_days is None else x(r.max_age_days))
        for i, r in enumerate(rows)
    ]
