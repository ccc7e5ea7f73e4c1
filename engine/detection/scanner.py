"""Format detection: one Hyperscan pass over the text, RE2 confirmation at each anchor, validators.

Linear in the input: Hyperscan and RE2 are automata (no backtracking), every confirmation reads a
bounded window, and each (rule, start) pair is confirmed at most once. The compiled database holds
only the rule table (no secret material), so it is built once per process and shared; each scan
gets its own scratch space, so scans may run in several threads at once.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, replace

import hyperscan
import re2  # type: ignore[import-untyped]

from engine.detection.rules import RULES, Rule, Verdict


@dataclass(frozen=True, slots=True)
class Candidate:
    """A credential span in the scanned bytes (no copy of the bytes themselves)."""

    start: int
    end: int
    detector: str
    kind: str
    confidence: float
    specificity: int
    secret_id: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class _Compiled:
    database: hyperscan.Database
    confirm: tuple[_Confirm, ...]
    #: expression id of a closing marker -> the rule it closes
    markers: dict[int, int]


class _Confirm:
    """An RE2 expression matched anchored at a position; returns the credential's span.

    google-re2's public ``match`` builds a generator and a match object per call; on text with many
    anchors that is most of the cost, so the span list is read from the compiled RE2 object directly
    when this version of the binding has it (checked once), else through the public API.
    """

    def __init__(self, pattern: bytes, options: object) -> None:
        self._regex = re2.compile(pattern, options)
        self._anchor = getattr(getattr(re2, "_Anchor", None), "ANCHOR_START", None)
        self._raw = getattr(self._regex, "_regexp", None)
        try:
            probe = self._raw.Match(self._anchor, b"", 0, 0) if self._raw is not None else None
            usable = isinstance(probe, list) and len(probe) == self._regex.groups + 1
        except Exception:  # another binding version: the public API below always works
            usable = False
        if not usable:
            self._raw = None

    def span(self, data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
        """Span of the first participating group (else of the whole match), or None."""
        if self._raw is not None:
            spans: list[tuple[int, int]] = self._raw.Match(self._anchor, data, pos, endpos)
            if spans[0][0] < 0:
                return None
            for span in spans[1:]:
                if span[0] >= 0:
                    return span
            return spans[0]
        m = self._regex.match(data, pos, endpos)
        if m is None:
            return None
        for g in range(1, m.re.groups + 1):
            if m.span(g)[0] >= 0:
                return tuple(m.span(g))
        return tuple(m.span())


_lock = threading.Lock()
_compiled: _Compiled | None = None


def _compile(rules: tuple[Rule, ...]) -> _Compiled:
    expressions, flags = [], []
    for r in rules:
        expressions.append(r.anchor)
        flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if r.caseless else 0))
    markers: dict[int, int] = {}
    for i, r in enumerate(rules):
        if r.until:
            markers[len(expressions)] = i
            expressions.append(r.until)
            flags.append(0)
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=expressions, ids=list(range(len(expressions))), flags=flags)
    options = re2.Options()
    options.max_mem = 64 << 20
    confirm = tuple(_Confirm(r.confirm, options) for r in rules)
    return _Compiled(db, confirm, markers)


def compiled() -> _Compiled:
    """The rule database (built on first use; callers may warm it at start-up)."""
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                _compiled = _compile(RULES)
    return _compiled


def _paired(anchors: list[int], ends: list[int], window: int) -> dict[int, int]:
    """Each closing marker's end paired with the closest anchor before it (within the window)."""
    out: dict[int, int] = {}
    for end in sorted(set(ends)):
        i = bisect.bisect_left(anchors, end) - 1
        if i >= 0 and end - anchors[i] <= window and anchors[i] not in out:
            out[anchors[i]] = end
    return out


def scan_formats(data: bytes) -> list[Candidate]:
    """Every credential of a known format in ``data``, overlaps not yet resolved."""
    c = compiled()
    per_rule: dict[int, set[int]] = {}
    marker_ends: dict[int, list[int]] = {}

    def on_match(expr_id: int, start: int, end: int, _flags: int, _ctx: object) -> None:
        rule_id = c.markers.get(expr_id)
        if rule_id is None:
            per_rule.setdefault(expr_id, set()).add(start)
        else:
            marker_ends.setdefault(rule_id, []).append(end)

    c.database.scan(data, match_event_handler=on_match, scratch=hyperscan.Scratch(c.database))
    found: dict[tuple[int, int, str], Candidate] = {}
    size = len(data)
    for rule_id in sorted(per_rule):
        rule = RULES[rule_id]
        anchors = sorted(per_rule[rule_id])
        limits = _paired(anchors, marker_ends.get(rule_id, []), rule.window) if rule.until else None
        regex = c.confirm[rule_id]
        accepted_until = -1
        for anchor in anchors:
            # Inside a credential this rule already accepted: a sub-match of it, and a way to make the
            # scan quadratic (password=password=…) if every one were confirmed.
            if anchor < accepted_until:
                continue
            if rule.left and anchor > 0 and data[anchor - 1] in rule.left:
                continue
            if limits is None:
                stop = min(size, anchor + rule.window)
            elif anchor in limits:
                stop = limits[anchor]
            else:
                continue
            span = regex.span(data, anchor, stop)
            if span is None:
                continue
            start, end = span
            if start == end or (rule.right and end < size and data[end] in rule.right):
                continue
            verdict = rule.validator(data, start, end, rule.confidence) if rule.validator else Verdict(rule.confidence)
            if verdict is None:
                continue
            accepted_until = end
            if rule.back and data[max(0, start - len(rule.back)) : start] == rule.back:
                start -= len(rule.back)
            key = (start, end, rule.detector)
            if key not in found:
                found[key] = Candidate(start, end, rule.detector, rule.kind, verdict.confidence, rule.specificity)
            for x in verdict.extras:
                found.setdefault(
                    (x.start, x.end, x.detector),
                    Candidate(x.start, x.end, x.detector, x.kind, x.confidence, rule.specificity),
                )
    return list(found.values())


MANAGED_SPECIFICITY = 10
MANAGED_DETECTOR = "managed_secret"


def resolve(candidates: list[Candidate]) -> list[Candidate]:
    """One finding per credential: overlapping spans keep the most specific rule.

    A managed value always wins and takes the name of the format it overlaps (a managed GitHub token is
    reported as github_token with its secret_id); the same span may be two managed secrets' value.
    O(n log n + total span length): hostile input with many candidates stays cheap.
    """
    formats = sorted((x for x in candidates if x.secret_id is None), key=lambda x: x.start)
    starts = [f.start for f in formats]
    longest = max((f.end - f.start for f in formats), default=0)
    managed: list[Candidate] = []
    for m in candidates:
        if m.secret_id is None:
            continue
        lo, hi = bisect.bisect_left(starts, m.start - longest), bisect.bisect_left(starts, m.end)
        over = [f for f in formats[lo:hi] if f.end > m.start]
        if over:
            best = max(over, key=lambda f: (f.specificity, f.confidence))
            m = replace(m, detector=best.detector, kind=best.kind)
            if best.start <= m.start and m.end <= best.end:
                # The value inside a larger credential (a password in a Basic header): report that one.
                m = replace(m, start=best.start, end=best.end)
        managed.append(m)
    ordered = sorted([*managed, *formats], key=lambda x: (-x.specificity, -x.confidence, x.start - x.end, x.start))
    occupied = bytearray(max((x.end for x in ordered), default=0))
    managed_spans: dict[tuple[int, int], set[str]] = {}
    kept: list[Candidate] = []
    for x in ordered:
        span = (x.start, x.end)
        if x.secret_id is not None and span in managed_spans:
            # The same value of two managed secrets: both are reported.
            if x.secret_id not in managed_spans[span]:
                managed_spans[span].add(x.secret_id)
                kept.append(x)
            continue
        if occupied.find(1, x.start, x.end) != -1:
            continue
        occupied[x.start : x.end] = b"\x01" * (x.end - x.start)
        kept.append(x)
        if x.secret_id is not None:
            managed_spans[span] = {x.secret_id}
    kept.sort(key=lambda x: (x.start, x.end, x.secret_id or ""))
    return kept


def locate(data: bytes, offsets: list[int]) -> dict[int, tuple[int, int]]:
    """1-based (line, column) of each byte offset; columns count characters, not bytes."""
    out: dict[int, tuple[int, int]] = {}
    line, line_start, pos = 1, 0, 0
    for off in sorted(set(offsets)):
        newlines = data.count(b"\n", pos, off)
        if newlines:
            line += newlines
            line_start = data.rfind(b"\n", pos, off) + 1
        pos = off
        column = len(data[line_start:off].decode("utf-8", "replace")) + 1
        out[off] = (line, column)
    return out
