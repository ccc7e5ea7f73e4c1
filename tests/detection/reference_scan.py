"""The format scan as first written (scanner.py before the speed work of issue 17), kept as a reference.

Every anchor is confirmed with the full RE2 expression and its capture groups, every candidate is
validated afresh, and line/column are counted from the previous offset. It is slow and obviously right:
tests/detection/test_scan_equivalence.py requires the engine's scan to report exactly what this one
does, and tests/bench/test_detect_bench.py times both in the same run.
"""

from __future__ import annotations

import bisect
import re

import hyperscan
import re2  # type: ignore[import-untyped]

from lockzero.engine.detection import validators as v
from lockzero.engine.detection.rules import B64_TRIGGER_TAIL, B64_TRIGGERS, RULES, ReadsText, Rule, Verdict
from lockzero.engine.detection.scanner import (
    DECODED_INTO_CONTEXT,
    MAX_B64_RUN,
    MAX_DECODE_DEPTH,
    NAME_CONTEXT,
    Candidate,
)

# Written apart from the engine's one expression: the command, then the target's last path component by hand.
_DECODE_TO = re.compile(
    rb"""["']?[ \t]*\|[ \t]*base64[ \t]+(?:-d|-D|--decode)(?:[ \t]+-[A-Za-z-]+)*[ \t]*>>?[ \t]*["']?"""
)
_TARGET = re.compile(rb"""[^\s"'|;&<>]*""")
_NAME = re.compile(rb"[A-Za-z0-9_.-]{1,64}")


def _decoded_into(data: bytes, run_end: int) -> bytes | None:
    eol = data.find(b"\n", run_end)
    eol = len(data) if eol < 0 else eol
    if eol - run_end > DECODED_INTO_CONTEXT:
        return None
    line = data[run_end:eol]
    command = _DECODE_TO.match(line)
    if command is None:
        return None
    target = _TARGET.match(line, command.end())
    assert target is not None  # * matches the empty string
    last = target.group().rsplit(b"/", 1)[-1].split(b")", 1)[0]
    return last if _NAME.fullmatch(last) else None


_VIEW_SEPARATOR = b"\n\x00\n\x00\n\x00\n"
_B64_RUN = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class Reference:
    """The rule table compiled as the first scanner compiled it (its own Hyperscan database and RE2 objects)."""

    def __init__(self) -> None:
        expressions, flags = [], []
        for r in RULES:
            expressions.append(r.anchor)
            flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if r.caseless else 0))
        self.markers: dict[int, int] = {}
        for i, r in enumerate(RULES):
            if r.until:
                self.markers[len(expressions)] = i
                expressions.append(r.until)
                flags.append(0)
        self.b64 = frozenset(range(len(expressions), len(expressions) + len(B64_TRIGGERS)))
        expressions.extend(B64_TRIGGERS)
        flags.extend([0] * len(B64_TRIGGERS))
        self.database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self.database.compile(expressions=expressions, ids=list(range(len(expressions))), flags=flags)
        options = re2.Options()
        options.max_mem = 64 << 20
        self.confirm = [re2.compile(r.confirm, options) for r in RULES]

    def span(self, rule_id: int, data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
        m = self.confirm[rule_id].match(data, pos, endpos)
        if m is None:
            return None
        for g in range(1, m.re.groups + 1):
            if m.span(g)[0] >= 0:
                return tuple(m.span(g))  # type: ignore[no-any-return]
        return tuple(m.span())  # type: ignore[no-any-return]

    def scan(self, data: bytes, depth: int = 0) -> list[Candidate]:
        """Candidates before overlap resolution, as scanner.scan_formats reports them."""
        per_rule: dict[int, set[int]] = {}
        marker_ends: dict[int, list[int]] = {}
        b64_ends: set[int] = set()

        def on_match(expr_id: int, start: int, end: int, _flags: int, _ctx: object) -> None:
            rule_id = self.markers.get(expr_id)
            if rule_id is not None:
                marker_ends.setdefault(rule_id, []).append(end)
            elif expr_id in self.b64:
                b64_ends.add(end)
            else:
                per_rule.setdefault(expr_id, set()).add(start)

        self.database.scan(data, match_event_handler=on_match, scratch=hyperscan.Scratch(self.database))
        found: dict[tuple[int, int, str], Candidate] = {}
        size = len(data)
        for rule_id in sorted(per_rule):
            rule = RULES[rule_id]
            anchors = sorted(per_rule[rule_id])
            limits = _paired(anchors, marker_ends.get(rule_id, []), rule.window) if rule.until else None
            accepted_until = -1
            for anchor in anchors:
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
                span = self.span(rule_id, data, anchor, stop)
                if span is None:
                    continue
                start, end = span
                if start == end or (rule.right and end < size and data[end] in rule.right):
                    continue
                verdict = _validate(rule, data, start, end)
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
        if b64_ends and depth < MAX_DECODE_DEPTH:
            for d in self._decoded(data, sorted(b64_ends), depth):
                found.setdefault((d.start, d.end, d.detector), d)
        return list(found.values())

    def _decoded(self, data: bytes, run_ends: list[int], depth: int) -> list[Candidate]:
        views: list[bytes] = []
        places: list[tuple[int, int, int, int]] = []
        offset, done = 0, -1
        size = len(data)
        for end in run_ends:
            start = end - B64_TRIGGER_TAIL
            if start < done:
                continue
            m = _B64_RUN.match(data, start, min(size, start + MAX_B64_RUN))
            run_end = m.end() if m else start
            done = run_end
            if run_end - start >= MAX_B64_RUN or (run_end < size and data[run_end] in b"-_."):
                continue
            decoded = v.printable_b64(data[start:run_end])
            if decoded is None:
                continue
            name = _decoded_into(data, run_end)
            if name is not None:
                prefix = name + b"="
            else:
                floor = max(0, start - NAME_CONTEXT)
                line = data.rfind(b"\n", floor, start)
                prefix = data[line + 1 if line >= 0 else floor : start]
            views.append(prefix + decoded)
            places.append((offset, len(prefix), start, run_end))
            offset += len(views[-1]) + len(_VIEW_SEPARATOR)
        if not views:
            return []
        joined = _VIEW_SEPARATOR.join(views)
        starts = [p[0] for p in places]
        out: dict[tuple[int, int, str], Candidate] = {}
        for inner in self.scan(joined, depth + 1):
            i = bisect.bisect_right(starts, inner.start) - 1
            view_start, prefix_len, start, end = places[i]
            if inner.end <= view_start + prefix_len or inner.end > view_start + len(views[i]):
                continue
            key = (start, end, inner.detector)
            if key not in out or out[key].confidence < inner.confidence:
                out[key] = Candidate(start, end, inner.detector, inner.kind, inner.confidence, inner.specificity)
        return list(out.values())


def _validate(rule: Rule, data: bytes, start: int, end: int) -> Verdict | None:
    if rule.validator is None:
        return Verdict(rule.confidence)
    if isinstance(rule.validator, ReadsText):
        return rule.validator.check(data, start, end, rule.confidence)
    return rule.validator(data[start:end], rule.confidence)


def _paired(anchors: list[int], ends: list[int], window: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for end in sorted(set(ends)):
        i = bisect.bisect_left(anchors, end) - 1
        if i >= 0 and end - anchors[i] <= window and anchors[i] not in out:
            out[anchors[i]] = end
    return out


def locate(data: bytes, offsets: list[int]) -> dict[int, tuple[int, int]]:
    """1-based (line, column) of each byte offset, counted from the previous one."""
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
