"""The faster paths of scanner.resolve, scanner.locate and validators.entropy answer exactly as the plain
forms they replaced (kept here as written before): same findings in the same order, same positions, the
same entropy to the last bit (a value at a threshold is judged alike)."""

from __future__ import annotations

import math
from collections import Counter
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]

from hypothesis import given, settings
from hypothesis import strategies as st

from lockzero.engine.detection import scanner, validators
from lockzero.engine.detection.rules import RULES
from tests.detection import reference_scan
from tests.detection.test_declarations import _PIECES


def _plain_resolve(candidates: list[scanner.Candidate]) -> list[scanner.Candidate]:
    """resolve for format candidates as first written: every candidate ordered by priority, one pass."""
    ordered = sorted(candidates, key=lambda x: (-x.specificity, -x.confidence, x.start - x.end, x.start))
    occupied = bytearray(max((x.end for x in ordered), default=0))
    kept = []
    for x in ordered:
        if occupied.find(1, x.start, x.end) != -1:
            continue
        occupied[x.start : x.end] = b"\x01" * (x.end - x.start)
        kept.append(x)
    kept.sort(key=lambda x: (x.start, x.end, x.secret_id or ""))
    return kept


def _plain_entropy(value: bytes) -> float:
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


_CANDIDATES = st.lists(
    st.builds(
        lambda start, length, detector, confidence, specificity: scanner.Candidate(
            start, start + length, detector, "kind", confidence, specificity
        ),
        st.integers(0, 200),
        st.integers(0, 40),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([0.5, 0.6, 0.85, 0.9]),
        st.integers(0, 4),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(_CANDIDATES)
def test_resolve_keeps_what_one_pass_in_priority_order_keeps(candidates: list[scanner.Candidate]) -> None:
    assert scanner.resolve(candidates) == _plain_resolve(candidates)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab\né€ \t", max_size=80), st.lists(st.integers(0, 120), max_size=12))
def test_locate_answers_as_decoding_each_line(text: str, offsets: list[int]) -> None:
    for data in (text.encode(), text.encode("ascii", "ignore")):
        assert scanner.locate(data, offsets) == reference_scan.locate(data, offsets)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.text(alphabet="aAbB01+/=xyz", max_size=300).map(str.encode))
def test_entropy_is_the_same_float(value: bytes) -> None:
    assert validators.entropy(value) == _plain_entropy(value)


def test_per_scan_answers_are_kept_during_a_scan_and_within_its_budget_only() -> None:
    calls: list[bytes] = []

    @validators.per_scan
    def check(value: bytes) -> bool:
        calls.append(value)
        return True

    assert check(b"abc") and check(b"abc")
    assert calls == [b"abc", b"abc"]  # outside a scan nothing is kept
    with validators.ScanMemo(5):
        for value in (b"abc", b"abc", b"defg", b"defg"):
            assert check(value)
    # b"abc" (3 bytes) is kept; b"defg" would pass the 5-byte budget.
    assert calls[2:] == [b"abc", b"defg", b"defg"]
    check(b"abc")
    assert len(calls) == 6


#: Classes that hold a line break (in Python's and RE2's syntax alike).
_CATEGORIES_WITH_LF = {
    sre.CATEGORY_SPACE,
    sre.CATEGORY_NOT_DIGIT,
    sre.CATEGORY_NOT_WORD,
    sre.CATEGORY_LINEBREAK,
    sre.CATEGORY_UNI_SPACE,
    sre.CATEGORY_UNI_NOT_DIGIT,
    sre.CATEGORY_UNI_NOT_WORD,
    sre.CATEGORY_UNI_LINEBREAK,
}


def _may_leave_the_line(tree: object, dotall: bool) -> bool:
    """Whether the parsed expression may match a line break or test a position (^, $, \\b, lookaround);
    anything not recognised counts as may."""
    for op, av in tree:  # type: ignore[attr-defined]
        if op is sre.LITERAL:
            if av == 10:
                return True
        elif op is sre.NOT_LITERAL:
            if av != 10:
                return True
        elif op is sre.ANY:
            if dotall:
                return True
        elif op is sre.IN:
            negate, holds = False, False
            for item, value in av:
                if item is sre.NEGATE:
                    negate = True
                elif item is sre.LITERAL:
                    holds |= value == 10
                elif item is sre.RANGE:
                    holds |= value[0] <= 10 <= value[1]
                elif item is sre.CATEGORY:
                    holds |= value in _CATEGORIES_WITH_LF
                else:
                    return True
            if holds != negate:
                return True
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            if _may_leave_the_line(av[2], dotall):
                return True
        elif op is sre.SUBPATTERN:
            if _may_leave_the_line(av[3], dotall or bool(av[1] & sre.SRE_FLAG_DOTALL)):
                return True
        elif op is sre.BRANCH:
            if any(_may_leave_the_line(branch, dotall) for branch in av[1]):
                return True
        else:
            return True
    return False


def _leaves_the_line(expression: bytes) -> bool:
    tree = _parser.parse(expression)
    return _may_leave_the_line(tree, bool(tree.state.flags & sre.SRE_FLAG_DOTALL))


def test_the_one_line_rules_cannot_match_a_line_break_nor_test_a_position() -> None:
    one_line = [r for r in RULES if r.one_line]
    assert {r.detector for r in one_line} >= {"generic_secret"}
    for rule in one_line:
        assert not _leaves_the_line(rule.confirm), rule.detector
    # The check itself tells: a PEM block spans lines, and so does each of these.
    assert _leaves_the_line(next(r for r in RULES if r.detector == "private_key").confirm)
    for expression in (rb"a[^x]b", rb"a\sb", rb"^ab", rb"ab\b", rb"(?s)a.b", rb"a(?s:.)b", rb"a\Wb", rb"a(?=b)"):
        assert _leaves_the_line(expression), expression
    assert not _leaves_the_line(rb"(?i)a[^\n]+b\S*.c")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from([*_PIECES, "\n", " = ", '"', "x" * 700]), min_size=1, max_size=30),
    st.integers(1, 4),
)
def test_a_one_line_rule_answers_by_line_as_at_each_anchor(pieces: list[str], repeats: int) -> None:
    data = ("".join(pieces) * repeats).encode()
    confirm = scanner.compiled().confirm
    for i, rule in enumerate(RULES):
        if not rule.one_line:
            continue
        by_line = scanner._by_line(confirm[i].span, scanner._Verdicts(len(data)).keeps)
        for pos in range(len(data)):
            stop = min(len(data), pos + rule.window)
            assert by_line(data, pos, stop) == confirm[i].span(data, pos, stop), (rule.detector, pos)
