"""Each rule is declared once (rules.py); what the scanner runs is derived from that declaration.

The derived Hyperscan anchor must fire wherever the derived RE2 confirm expression matches (else a
credential would be missed), and the openings the generic rules leave to the format rules are read from
the same declarations.
"""

from __future__ import annotations

import hyperscan
import pytest
import re2  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from lockzero.engine.detection import scanner
from lockzero.engine.detection.rules import CUT, FORMAT_PREFIXES, RULES, Rule, either, one_of, secret
from tests.detection.corpus import generate
from tests.detection.corpus_families import generate as generate_families


def anchor_starts(data: bytes) -> dict[int, set[int]]:
    """Start of every anchor match, per rule, as the scanner's pass reports them."""
    c = scanner.compiled()
    starts: dict[int, set[int]] = {}

    def on_match(expr_id: int, start: int, _end: int, _flags: int, _ctx: object) -> None:
        if expr_id < len(RULES):
            starts.setdefault(expr_id, set()).add(start)

    c.database.scan(data, match_event_handler=on_match, scratch=hyperscan.Scratch(c.database))
    return starts


_CONFIRM = [re2.compile(r.confirm) for r in RULES]


def unanchored_confirm_starts(data: bytes) -> dict[int, list[int]]:
    return {i: [m.start() for m in rx.finditer(data)] for i, rx in enumerate(_CONFIRM)}


def assert_anchors_cover_confirms(data: bytes) -> None:
    anchors = anchor_starts(data)
    for i, starts in unanchored_confirm_starts(data).items():
        missing = [s for s in starts if s not in anchors.get(i, set())]
        assert not missing, (RULES[i].detector, missing[:3])


def test_anchors_fire_wherever_the_confirm_expression_matches_in_the_corpora() -> None:
    docs = [d.text for d in generate(11, docs=120)]
    docs += [fd.document.text for fd in generate_families(11, per_family=30)]
    matched = 0
    for text in docs:
        data = text.encode()
        assert_anchors_cover_confirms(data)
        matched += sum(len(s) for s in unanchored_confirm_starts(data).values())
    assert matched > 500  # the corpora exercise the rules, so the check above means something


#: Pieces the rules are built of: names, separators, openings, and characters of every class they read.
_PIECES = [
    *(p.decode() for p in FORMAT_PREFIXES),
    "password",
    "DB_PASS",
    "api_key",
    "secret_key",
    "token",
    "AccountKey=",
    "aws_secret_access_key",
    "datadog",
    "Authorization",
    "Basic ",
    "Bearer ",
    '"auth": "',
    '"private_key": "',
    "docker login -u x -p ",
    "postgres://",
    "postgresql+psycopg2://",
    "jdbc:oracle:thin:",
    "jdbc:mysql://",
    "?password=",
    ";pwd=",
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "-----END RSA PRIVATE KEY-----",
    "2024-05-01T12:00:00.1234567Z ",
    "T3BlbkFJ",
    "AgEIcHlwaS5vcmc",
    ": ",
    "=",
    "'",
    '"',
    ".",
    "@",
    "/",
    "-",
    "_",
    " ",
    "\n",
]
_CHARS = st.text(alphabet="ABCDEFabcdef0123456789XYZxyz+/=", min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), _CHARS), min_size=1, max_size=40))
def test_anchors_fire_wherever_the_confirm_expression_matches(pieces: list[str]) -> None:
    assert_anchors_cover_confirms("".join(pieces).encode())


def test_format_openings_come_from_the_rules_that_start_with_their_credential() -> None:
    for opening in (b"ghp_", b"github_pat_", b"glpat-", b"npm_", b"pypi-", b"xox", b"xapp-", b"sk_live_", b"sk-"):
        assert opening in FORMAT_PREFIXES
    for opening in (b"SG.", b"AKIA", b"ASIA", b"AIza", b"eyJ", b"-----BEGIN"):
        assert opening in FORMAT_PREFIXES
    # Twilio's SK/AC open ordinary words; names (AccountKey=, password=) are not openings of a credential.
    assert not {b"SK", b"AC", b"AccountKey=", b"password"} & set(FORMAT_PREFIXES)


@pytest.mark.parametrize("opening", [b"gldt-", b"glrt-", b"ABIA"])
def test_a_format_rejected_by_its_rule_is_not_reported_as_a_generic_secret(opening: bytes) -> None:
    # Openings its rule declares (derived, no list to forget them in): a malformed token is not a password.
    value = opening + b"Zq8rT2vXk9LmN4pW"
    data = b'api_key = "' + value + b'"\n'
    assert scanner.resolve(scanner.scan_formats(data)) == []
    assert scanner.resolve(scanner.scan_formats(b'api_key = "Zq8rT2vXk9LmN4pW"\n'))  # the same value, unclaimed


def test_derived_expressions_capture_the_credential_and_stop_the_anchor_at_the_cut() -> None:
    rule = Rule("t", "t", (b"key=", secret(one_of(b"ab_", b"cd_"), rb"[0-9]{4}", CUT, rb"[0-9]{0,4}")), 0.5)
    assert rule.anchor == rb"key=(?:(?:ab_|cd_)[0-9]{4})"
    assert rule.confirm == rb"key=((?:ab_|cd_)[0-9]{4}[0-9]{0,4})"
    assert rule.openings == ()  # the match starts with the name, not the credential
    assert Rule("t", "t", (secret(one_of(b"x.y"), b"[0-9]"),), 0.5).openings == (b"x.y",)
    assert Rule("t", "t", (secret(one_of(b"x.y"), b"[0-9]"),), 0.5).anchor == rb"(?:(?:x\.y)[0-9])"


def test_a_cut_in_only_some_branches_is_refused() -> None:
    with pytest.raises(ValueError, match="every branch"):
        Rule("t", "t", (either((b"a", CUT, b"b"), (b"c",)),), 0.5)
