"""The faster paths of scanner.resolve, scanner.locate and validators.entropy answer exactly as the plain
forms they replaced (kept here as written before): same findings in the same order, same positions, the
same entropy to the last bit (a value at a threshold is judged alike)."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from lockzero.engine.detection import scanner, validators


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


def _plain_locate(data: bytes, offsets: list[int]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    line, line_start, pos = 1, 0, 0
    for off in sorted(set(offsets)):
        newlines = data.count(b"\n", pos, off)
        if newlines:
            line += newlines
            line_start = data.rfind(b"\n", pos, off) + 1
        pos = off
        out[off] = (line, len(data[line_start:off].decode("utf-8", "replace")) + 1)
    return out


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
        assert scanner.locate(data, offsets) == _plain_locate(data, offsets)


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
    with validators.scan_memo(5):
        for value in (b"abc", b"abc", b"defg", b"defg"):
            assert check(value)
    # b"abc" (3 bytes) is kept; b"defg" would pass the 5-byte budget.
    assert calls[2:] == [b"abc", b"defg", b"defg"]
    check(b"abc")
    assert len(calls) == 6
