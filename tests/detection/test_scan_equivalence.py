"""The engine's scan reports exactly what the first, plain scan reported (tests/detection/reference_scan.py).

The speed work of issue 17 (confirmation without capture groups where the credential is the whole match,
capture expressions with relaxed bounds checked afterwards, verdicts reused for repeated values, line and
column by bisection) must not change one finding: same spans, detectors, confidences and positions, on
both corpora and on input built to reach the edges (values longer than a bound, non-ASCII text,
repeated values beside different context).
"""

from __future__ import annotations

import random

import pytest
import re2  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from lockzero.engine.detection import scanner
from lockzero.engine.detection.rules import RULES, Verdict
from tests.detection import corpus_families
from tests.detection.corpus import Maker, concatenated
from tests.detection.reference_scan import Reference, locate
from tests.detection.test_declarations import _PIECES

_reference = Reference()


def _key(c: scanner.Candidate) -> tuple[int, int, str, str, float, int]:
    return (c.start, c.end, c.detector, c.kind, c.confidence, c.specificity)


def assert_same_findings(data: bytes) -> int:
    ours = scanner.scan_formats(data)
    theirs = _reference.scan(data)
    assert sorted(map(_key, ours)) == sorted(map(_key, theirs))
    kept = scanner.resolve(ours)
    offsets = [c.start for c in kept] + [0, len(data)]
    assert scanner.locate(data, offsets) == locate(data, offsets)
    return len(kept)


def test_the_labeled_corpus_gives_the_same_findings() -> None:
    text, labels = concatenated(17, 1_500_000)
    assert assert_same_findings(text.encode()) >= len(labels)


def test_the_hard_negatives_give_the_same_findings() -> None:
    assert_same_findings(concatenated(17, 1_000_000, per_doc=0)[0].encode())


def test_the_families_give_the_same_findings() -> None:
    for doc in corpus_families.generate(17, per_family=40):
        assert_same_findings(doc.document.text.encode())


def _edges(m: Maker) -> list[str]:
    long_value = m.password(600)
    return [
        # Values at and past the bounds of the confirm expressions (512 for an assignment, 256 for a URL).
        f'password = "{m.s(512)}"\npassword = "{m.s(513)}"\napi_key={m.s(511)}x{m.s(40)}\n',
        f"token: {long_value}\nsecret={long_value}\n",
        f"postgres://app:{m.s(256)}@db/x\npostgres://app:{m.s(257)}@db/x\nmysql://u:{m.s(300)}@h\n",
        f"jdbc:postgresql://h/db?user=u&password={m.s(300)}\njdbc:oracle:thin:scott/{m.s(257)}@//h:1521/s\n",
        f"docker login -u me -p '{m.s(257)}' reg.io\ndocker login --password={m.s(256)} reg.io\n",
        # Non-ASCII inside and around values: byte lengths differ from character counts.
        f'password = "{"é" * 300}{m.s(20)}"\nsecret: ünïcødé-{m.s(24)}\n✓ api_key={m.s(30)}\n',
        f'password = "{"€" * 200}"\ntoken={"ß" * 257}\n',
        # One value repeated beside different context: verdicts that read the text around must not be reused.
        f"{m.aws_id()} {m.aws_secret()}\n" * 3 + f"AKIAABCDEFGHIJKLMNOP\n{m.aws_secret()}\n",
        f"postgres://u:{m.password(16)}@localhost/x\npostgres://u:{m.password(16)}@db.prod/x\n",
        "password=hunter2hunter2\n" * 5 + 'password="hunter2hunter2"\n',
        f"{m.pem()}\n{m.pem()}\n" + '"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE' + m.s(200) + '"\n',
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_edge_input_gives_the_same_findings(seed: int) -> None:
    m = Maker(random.Random(seed))
    for text in _edges(m):
        assert_same_findings(text.encode())
    assert_same_findings("\n".join(_edges(m)).encode())


_EXACT = [scanner._Confirm(r.confirm, re2.Options()) for r in RULES]
#: Runs long enough to cross the bounds the relaxed expressions drop (256, 512), with and without non-ASCII.
_RUNS = st.one_of(
    st.text(alphabet="ABCDEFabcdef0123456789XYZxyz+/=:é€", min_size=1, max_size=60),
    st.builds(lambda c, n: c * n, st.sampled_from("aZ9é"), st.sampled_from((255, 256, 257, 511, 512, 513, 700))),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), _RUNS), min_size=1, max_size=30))
def test_each_rule_confirms_the_span_its_declared_expression_gives_at_every_position(pieces: list[str]) -> None:
    data = "".join(pieces).encode()
    confirm = scanner.compiled().confirm
    for i, rule in enumerate(RULES):
        for pos in range(len(data)):
            stop = min(len(data), pos + rule.window)
            assert confirm[i].span(data, pos, stop) == _EXACT[i].span(data, pos, stop), (rule.detector, pos)


def test_verdicts_are_reused_and_the_values_kept_add_up_to_the_text_size_at_most() -> None:
    rule = next(r for r in RULES if r.detector == "generic_secret")
    calls: list[bytes] = []

    def check(value: bytes, conf: float) -> Verdict | None:
        calls.append(value)
        return None

    verdicts = scanner._Verdicts(budget=20)
    for value in (b"first-value", b"first-value", b"second-value", b"second-value"):
        assert verdicts.judge(rule, check, value) is None
    # The first value (11 bytes) is kept and judged once; the second would pass the 20-byte budget.
    assert calls == [b"first-value", b"second-value", b"second-value"]
