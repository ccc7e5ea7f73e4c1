"""Format detection: one Hyperscan pass over the text, RE2 confirmation at each anchor, validators.

Linear in the input: Hyperscan and RE2 are automata (no backtracking), every confirmation reads a
bounded window, and each (rule, start) pair is confirmed at most once. The compiled database holds
only the rule table (no secret material), so it is built once per process and shared; each thread
has its own scratch space, so scans may run in several threads at once.

A validator that reads the value only is asked once per distinct value in a scan (see _Verdicts), and so
are the checks two rules share (validators.per_scan); a rule whose match stays on the anchor's line is
confirmed once per distinct rest of a line (see _by_line). All of these live as long as the scan, like the
text; the verdicts and lines kept add up to at most its size, and so do the shared checks' values.
"""

from __future__ import annotations

import bisect
import functools
import operator
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import hyperscan
import re2  # type: ignore[import-untyped]

from lockzero.engine.detection import validators as v
from lockzero.engine.detection.rules import (
    B64_TRIGGER_TAIL,
    B64_TRIGGERS,
    RULES,
    ReadsText,
    Rule,
    Validator,
    Verdict,
)


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
    confirm: tuple[_RuleConfirm, ...]
    #: expression id of a closing marker -> the rule it closes
    markers: dict[int, int]
    #: expression ids of the base64 triggers (rules.B64_TRIGGERS)
    b64: frozenset[int]
    #: this thread's Hyperscan scratch space (allocating one per scan costs more than a short text's scan)
    local: threading.local = field(default_factory=threading.local, compare=False)

    def scratch(self) -> hyperscan.Scratch:
        s: hyperscan.Scratch | None = getattr(self.local, "scratch", None)
        if s is None:
            s = self.local.scratch = hyperscan.Scratch(self.database)
        return s


Spans = list[tuple[int, int]]
_Match = Callable[[bytes, int, int], Spans]
#: A credential's span at a position (None: no match there).
_Span = Callable[[bytes, int, int], tuple[int, int] | None]


#: What a match call answers when the expression does not match.
_NO_MATCH: Spans = [(-1, -1)]


class _Confirm:
    """An RE2 expression matched anchored at a position: ``match`` answers the span of the whole match then
    of each group ((-1, -1) for a group that took no part; ``_NO_MATCH`` when there is no match).

    google-re2's public ``match`` builds a generator and a match object per call; on text with many
    anchors that is most of the cost, so ``match`` is the compiled RE2 object's own method when this
    version of the binding has it (checked once; ``direct=False`` forces the public API), a C-level call
    with no Python frame of ours in between.
    """

    def __init__(self, pattern: bytes, options: object, *, direct: bool = True) -> None:
        self._regex = re2.compile(pattern, options)
        raw = self._direct() if direct else None
        self.match: _Match = raw if raw is not None else self._public_match

    def _direct(self) -> _Match | None:
        anchor = getattr(getattr(re2, "_Anchor", None), "ANCHOR_START", None)
        raw = getattr(self._regex, "_regexp", None)
        if raw is None:
            return None
        try:
            probe = raw.Match(anchor, b"", 0, 0)
        except Exception:  # another binding version: the public API always works
            return None
        if not (isinstance(probe, list) and len(probe) == self._regex.groups + 1):
            return None
        return functools.partial(raw.Match, anchor)

    def _public_match(self, data: bytes, pos: int, endpos: int) -> Spans:
        m = self._regex.match(data, pos, endpos)
        if m is None:
            return _NO_MATCH
        return [tuple(m.span(g)) for g in range(m.re.groups + 1)]

    def span(self, data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
        """Span of the first participating group (else of the whole match), or None."""
        spans = self.match(data, pos, endpos)
        return None if spans[0][0] < 0 else _credential(spans)


def _credential(spans: Spans) -> tuple[int, int]:
    for span in spans[1:]:
        if span[0] >= 0:
            return span
    return spans[0]


class _RuleConfirm:
    """A rule's confirmation, through the cheapest of its derived expressions that gives the same span.

    Capture groups are what make RE2 slow here (its DFA cannot report them; its capture engines cost in
    proportion to the program's size): where the credential is the whole match, the expression has no
    group; where the match starts with something else (a name, a scheme), that head is matched without
    groups and only the rest with them (rules._split); a bounded character class as the credential is
    asked unbounded and trusted when the groups keep the bounds (rules._relaxed). Each says why its answer
    is the declared expression's; else the confirm expression as declared.
    """

    def __init__(self, rule: Rule, options: object) -> None:
        self.exact = _Confirm(rule.confirm, options)
        #: (group, bound) of each group the relaxed expression leaves unbounded above
        self._bounded = tuple((g, b) for g, b in enumerate(rule.group_bounds, start=1) if b is not None)
        #: The credential's span at a position, or None: which expression answers is settled here, once, not
        #: at each anchor.
        self.span = self._chosen(rule, options)

    def _chosen(self, rule: Rule, options: object) -> _Span:
        exact, kept = self.exact.span, self._kept
        if rule.confirm_whole:
            whole = _Confirm(rule.confirm_whole, options).match

            def whole_span(data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
                span = whole(data, pos, endpos)[0]
                return None if span[0] < 0 else span

            return whole_span
        if rule.confirm_head and rule.confirm_tail:
            head = _Confirm(rule.confirm_head, options).match
            tail = _Confirm(rule.confirm_tail, options).match
            tail_groups = rule.tail_groups

            def split_span(data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
                head_end = head(data, pos, endpos)[0][1]
                if head_end < 0:
                    return None  # every match of the whole expression starts with one of its head
                spans = tail(data, head_end, endpos)
                if spans[0][0] < 0:
                    return exact(data, pos, endpos)  # the head's first match is not the one that leads on
                return kept(spans, data, pos, endpos) if tail_groups else spans[0]

            return split_span
        if not rule.confirm_relaxed:
            return exact
        relaxed = _Confirm(rule.confirm_relaxed, options).match

        def relaxed_span(data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
            spans = relaxed(data, pos, endpos)
            if spans[0][0] < 0:
                return None  # the unbounded expression accepts all the bounded one does
            return kept(spans, data, pos, endpos)

        return relaxed_span

    def _kept(self, spans: Spans, data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
        """The credential of a relaxed expression's match if its groups keep the declared bounds, else
        the declared expression's."""
        for group, bound in self._bounded:
            start, end = spans[group]
            if start >= 0 and end - start > bound:
                return self.exact.span(data, pos, endpos)
        return _credential(spans)


_lock = threading.Lock()
_compiled: _Compiled | None = None


def _compile(rules: tuple[Rule, ...], triggers: tuple[bytes, ...] = B64_TRIGGERS) -> _Compiled:
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
    b64 = frozenset(range(len(expressions), len(expressions) + len(triggers)))
    expressions.extend(triggers)
    flags.extend([0] * len(triggers))  # the value starts a fixed 16 before the end: no SOM needed
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=expressions, ids=list(range(len(expressions))), flags=flags)
    options = re2.Options()
    options.max_mem = 64 << 20
    confirm = tuple(_RuleConfirm(r, options) for r in rules)
    return _Compiled(db, confirm, markers, b64)


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


#: How many encodings deep a value is decoded: a dockerconfigjson Secret is base64 of JSON whose "auth" is
#: base64 again (that one the docker_config_auth rule decodes itself); deeper nesting is not seen in practice.
MAX_DECODE_DEPTH = 2
#: Longest base64 value decoded (a Secret holding a CA bundle is ~10 KB); longer runs are skipped.
MAX_B64_RUN = 65536
#: Text before the value kept in front of the decoded one (on its line), so that rules keyed on a name
#: (AWS_SECRET_ACCESS_KEY: …, password: …) read the decoded value under its name.
NAME_CONTEXT = 100
#: Between decoded views scanned together: NUL stops every confirm expression that spans lines (a PEM body),
#: and the blank lines keep line-paired rules (an AWS key id and its secret) within one view.
_VIEW_SEPARATOR = b"\n\x00\n\x00\n\x00\n"
_B64_RUN = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
#: A value piped into ``base64 -d`` and written to a file (``echo '<b64>' | base64 -d > /run/DB_PASSWORD``): the
#: file's name says what the value is, as a key's name does in an assignment. The name is the path's whole last
#: component (``/run/password/$F`` names nothing), read to the end of the value's line (RE2: linear).
DECODED_INTO_FILE = re2.compile(
    rb"""["']?[ \t]*\|[ \t]*base64[ \t]+(?:-d|-D|--decode)(?:[ \t]+-[A-Za-z-]+)*[ \t]*>{1,2}[ \t]*["']?"""
    rb"""(?:[^\s"'|;&<>]*/)?([A-Za-z0-9_.-]{1,64})(?:[\s"'|;&<>)]|$)"""
)
#: How far past a value its line is read for that file name: a longer rest of the line names nothing.
DECODED_INTO_CONTEXT = 200


def _file_name(data: bytes, run_end: int) -> bytes | None:
    """The name of the file a base64 value ending at ``run_end`` is decoded into, if its line says so."""
    eol = data.find(b"\n", run_end, run_end + DECODED_INTO_CONTEXT + 1)
    if eol < 0:
        if len(data) - run_end > DECODED_INTO_CONTEXT:
            return None
        eol = len(data)
    # The newline itself is read too: RE2's $ matches only at the end of the whole text, never at endpos.
    into = DECODED_INTO_FILE.match(data, run_end, min(eol + 1, len(data)))
    return None if into is None else bytes(into.group(1))


def scan_formats(data: bytes) -> list[Candidate]:
    """Every credential of a known format in ``data``, overlaps not yet resolved; credentials inside a
    base64 value are reported at the value's span, as the most specific format found in what it decodes to."""
    return _scan(data, 0, compiled())


def _decoded(data: bytes, run_ends: list[int], depth: int, c: _Compiled, verdicts: _Verdicts) -> list[Candidate]:
    """Candidates found in the text that base64 values encode, spanning the encoded values.

    Each trigger's value is read at most once (triggers inside a value already read are skipped) and
    decoded only if it is standard base64 of printable text, so hex digests, random tokens and binary
    files cost one C-level decode; the decoded views are scanned together, in one pass per depth.
    """
    views: list[bytes] = []
    places: list[tuple[int, int, int, int]] = []  # view offset, prefix length, value start, value end
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
            continue  # too long to be one value, or base64url / a dotted token (a JWT is its own rule)
        decoded = v.printable_b64(data[start:run_end])
        if decoded is None:
            continue
        name = _file_name(data, run_end)
        if name is not None:
            prefix = name + b"="  # the decoded value is read as assigned to the file's name
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
    for inner in _scan_views(joined, depth + 1, c, verdicts):
        i = bisect.bisect_right(starts, inner.start) - 1
        view_start, prefix_len, start, end = places[i]
        if inner.end <= view_start + prefix_len or inner.end > view_start + len(views[i]):
            continue  # in the name before the value (the outer scan read it), or across two views
        key = (start, end, inner.detector)
        if key not in out or out[key].confidence < inner.confidence:
            out[key] = Candidate(start, end, inner.detector, inner.kind, inner.confidence, inner.specificity)
    return list(out.values())


def _scan(data: bytes, depth: int, c: _Compiled) -> list[Candidate]:
    with v.ScanMemo(len(data)):
        return _scan_views(data, depth, c, _Verdicts(len(data)))


def _scan_views(data: bytes, depth: int, c: _Compiled, verdicts: _Verdicts) -> list[Candidate]:
    """_scan's work, with the verdicts (and the shared checks' memo) of the scan it is part of: the text's
    own, or the decoded views of its base64 values."""
    hits = _hyperscan_pass(data, c)
    found: dict[tuple[int, int, str], Candidate] = {}
    for rule_id in sorted(hits.starts):
        _confirm_rule(data, rule_id, hits, c, verdicts, found)
    if hits.b64_ends and depth < MAX_DECODE_DEPTH:
        for d in _decoded(data, hits.b64_ends, depth, c, verdicts):
            found.setdefault((d.start, d.end, d.detector), d)
    return list(found.values())


class _Verdicts:
    """Per scan, each value validator's verdict on the values it has judged (a log repeats its lines, and
    with them the same placeholders and tokens).

    The values kept add up to at most the scanned text's size: text made of many long distinct values
    (``password=`` every few bytes, each read up to 512 bytes on) costs no more memory than itself.
    """

    def __init__(self, budget: int) -> None:
        self._by_rule: dict[str, dict[bytes, Verdict | None]] = {}
        self._budget = budget

    def judge(self, rule: Rule, check: Validator, value: bytes) -> Verdict | None:
        seen = self._by_rule.setdefault(rule.detector, {})
        if value in seen:
            return seen[value]
        return self._judged(seen, check, rule.confidence, value)

    def _judged(self, seen: dict[bytes, Verdict | None], check: Validator, conf: float, value: bytes) -> Verdict | None:
        verdict = check(value, conf)
        if self.keeps(len(value)):
            seen[value] = verdict
        return verdict

    def keeps(self, size: int) -> bool:
        """Whether ``size`` more bytes of the text may be kept for the scan (counted if so): _by_line's lines
        share the budget with the verdicts' values."""
        if size > self._budget:
            return False
        self._budget -= size
        return True

    def judging(self, rule: Rule) -> Callable[[bytes, int, int], Verdict | None]:
        """The rule's verdict on the credential at ``data[start:end]``, as a function of (data, start, end):
        made once per rule and scan, since what it reads (the text or the value only) is the rule's."""
        check, conf = rule.validator, rule.confidence
        if check is None:
            always = Verdict(conf)
            return lambda data, start, end: always
        if isinstance(check, ReadsText):
            reads_text = check.check
            return lambda data, start, end: reads_text(data, start, end, conf)
        seen = self._by_rule.setdefault(rule.detector, {})
        judged, value_check = self._judged, check

        def judge(data: bytes, start: int, end: int) -> Verdict | None:
            value = data[start:end]
            if value in seen:
                return seen[value]
            return judged(seen, value_check, conf, value)

        return judge


@dataclass(frozen=True)
class _Hits:
    """What the Hyperscan pass reported: anchor starts per rule, closing markers' ends per rule, base64
    triggers' ends (sorted, each once)."""

    starts: dict[int, set[int]]
    marker_ends: dict[int, list[int]]
    b64_ends: list[int]


def _hyperscan_pass(data: bytes, c: _Compiled) -> _Hits:
    # The handler runs once per match (tens of thousands on dense text): it only files the offset by
    # expression id; what each id means is sorted out once afterwards.
    anchors = len(c.confirm)
    starts: list[set[int]] = [set() for _ in range(anchors)]
    ends: dict[int, list[int]] = {}

    def on_match(expr_id: int, start: int, end: int, _flags: int, _ctx: object) -> None:
        if expr_id < anchors:
            starts[expr_id].add(start)
        elif expr_id in ends:
            ends[expr_id].append(end)
        else:
            ends[expr_id] = [end]

    c.database.scan(data, match_event_handler=on_match, scratch=c.scratch())
    return _Hits(
        {rule_id: s for rule_id, s in enumerate(starts) if s},
        {c.markers[e]: found for e, found in ends.items() if e in c.markers},
        sorted({end for e, found in ends.items() if e in c.b64 for end in found}),
    )


def _confirm_rule(
    data: bytes,
    rule_id: int,
    hits: _Hits,
    c: _Compiled,
    verdicts: _Verdicts,
    found: dict[tuple[int, int, str], Candidate],
) -> None:
    """Confirm and validate each anchor of one rule, adding its credentials to ``found``."""
    rule = RULES[rule_id]
    anchors = sorted(hits.starts[rule_id])
    limits = _paired(anchors, hits.marker_ends.get(rule_id, []), rule.window) if rule.until else None
    confirm = c.confirm[rule_id].span
    if rule.one_line and len(anchors) >= _LINES_WORTH_KEEPING:
        confirm = _by_line(confirm, verdicts.keeps)
    verdict_on = verdicts.judging(rule)
    # Read once: the loop runs per anchor.
    left, right, window, back = rule.left, rule.right, rule.window, rule.back
    detector, kind, specificity = rule.detector, rule.kind, rule.specificity
    size = len(data)
    accepted_until = -1
    for anchor in anchors:
        # Inside a credential this rule already accepted: a sub-match of it, and a way to make the
        # scan quadratic (password=password=…) if every one were confirmed.
        if anchor < accepted_until:
            continue
        if left and anchor > 0 and data[anchor - 1] in left:
            continue
        if limits is None:
            stop = anchor + window if anchor + window < size else size
        elif anchor in limits:
            stop = limits[anchor]
        else:
            continue
        span = confirm(data, anchor, stop)
        if span is None:
            continue
        start, end = span
        if start == end or (right and end < size and data[end] in right):
            continue
        verdict = verdict_on(data, start, end)
        if verdict is None:
            continue
        accepted_until = end
        if back and data[max(0, start - len(back)) : start] == back:
            start -= len(back)
        key = (start, end, detector)
        if key not in found:
            found[key] = Candidate(start, end, detector, kind, verdict.confidence, specificity)
        for x in verdict.extras:
            found.setdefault(
                (x.start, x.end, x.detector),
                Candidate(x.start, x.end, x.detector, x.kind, x.confidence, specificity),
            )


#: Anchors of a one-line rule from which its lines are kept: a line comes again among many anchors (a log's
#: repeated lines), and on a short text keeping them costs more than it saves.
_LINES_WORTH_KEEPING = 16


def _by_line(confirm: _Span, keeps: Callable[[int], bool]) -> _Span:
    """``confirm`` for a rule whose match cannot leave the anchor's line (Rule.one_line): the answer for the
    rest of a line seen before, moved to this anchor, with no RE2 call. A line is kept if ``keeps`` its size
    (the scan's budget, see _Verdicts)."""
    seen: dict[bytes, tuple[int, int] | None] = {}

    def span(data: bytes, pos: int, endpos: int) -> tuple[int, int] | None:
        eol = data.find(b"\n", pos, endpos)
        rest = data[pos : endpos if eol < 0 else eol]
        if rest in seen:
            known = seen[rest]
            return None if known is None else (pos + known[0], pos + known[1])
        found = confirm(data, pos, endpos)
        if keeps(len(rest)):
            seen[rest] = None if found is None else (found[0] - pos, found[1] - pos)
        return found

    return span


MANAGED_SPECIFICITY = 10
MANAGED_DETECTOR = "managed_secret"


def resolve(candidates: list[Candidate]) -> list[Candidate]:
    """One finding per credential: overlapping spans keep the most specific rule.

    A managed value always wins and takes the name of the format it overlaps (a managed GitHub token is
    reported as github_token with its secret_id); the same span may be two managed secrets' value.
    O(n log n + total span length): hostile input with many candidates stays cheap.
    """
    formats = sorted((x for x in candidates if x.secret_id is None), key=_START)
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
    if not managed:
        kept_formats = _resolved_formats(formats)
        if kept_formats is not None:
            return kept_formats
    ordered = sorted([*managed, *formats], key=_priority)
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


_START = operator.attrgetter("start")


def _priority(x: Candidate) -> tuple[int, float, int, int]:
    """Which of overlapping candidates keeps the span: the most specific, most confident, longest, first."""
    return (-x.specificity, -x.confidence, x.start - x.end, x.start)


def _resolved_formats(formats: list[Candidate]) -> list[Candidate] | None:
    """resolve's answer for format candidates alone (sorted by start), or None if one is empty.

    Most candidates overlap none: they are kept as they are, and only each run of overlapping spans is
    ordered and decided (a span can only lose to spans of its own run), so dense text costs no sort of
    all its candidates by priority.
    """
    kept: list[Candidate] = []
    run: list[Candidate] = []
    reach = -1
    for x in formats:
        if x.end <= x.start:
            return None  # an empty span overlaps nothing yet sorts among its run: left to the general path
        if x.start >= reach:
            if len(run) > 1:
                _decide(run, kept)
            elif run:
                kept.append(run[0])
            run = [x]
        else:
            run.append(x)
        if x.end > reach:
            reach = x.end
    if len(run) > 1:
        _decide(run, kept)
    elif run:
        kept.append(run[0])
    return kept


def _decide(run: list[Candidate], kept: list[Candidate]) -> None:
    """Append to ``kept`` the candidates of one run of overlapping spans that resolve keeps, by start."""
    base = run[0].start
    occupied = bytearray(max(x.end for x in run) - base)
    won: list[Candidate] = []
    for x in sorted(run, key=_priority):
        lo, hi = x.start - base, x.end - base
        if occupied.find(1, lo, hi) == -1:
            occupied[lo:hi] = b"\x01" * (hi - lo)
            won.append(x)
    won.sort(key=_span)
    kept.extend(won)


def _span(x: Candidate) -> tuple[int, int]:
    return (x.start, x.end)


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
        before = data[line_start:off]
        # An ASCII line's columns count bytes: no need to decode it.
        column = (len(before) if before.isascii() else len(before.decode("utf-8", "replace"))) + 1
        out[off] = (line, column)
    return out
