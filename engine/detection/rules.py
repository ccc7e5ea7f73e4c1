"""The one table of credential formats.

Each rule's pattern is declared once (see "how a rule is declared" below); two expressions are derived
from it. The ``anchor`` is a Hyperscan expression compiled (with every other anchor) into one database
with start-of-match reporting, so the whole text is read once in linear time. Where an anchor starts, the
rule's ``confirm`` expression (RE2: linear time too) is matched on a bounded window; its first
participating capture group (else the whole match) is the credential. Then boundaries, the rule's
validator and its base confidence decide.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lockzero.engine.detection import validators as v

_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN = _ALNUM + b"_-"
_B64 = _ALNUM + b"+/"

#: The prefix CI runners put on every log line: GitHub Actions (``2024-05-01T12:00:00.1234567Z ``), GitLab
#: job logs with timestamps (``2024-05-01T12:00:00.123456Z 00O `` and ``00O+`` continuations), and the
#: bracketed form of Jenkins' timestamper (``[2024-05-01T12:00:00.123Z] ``). A multi-line secret printed
#: into such a log has one before each of its lines.
_LOG_TS = (
    rb"\[?[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]{1,9})?(?:Z|[+-][0-9]{2}:?[0-9]{2})?\]?"
    rb"[ \t](?:[0-9]{2}[OE]\+?[ \t])?"
)
_LOG_PREFIXES = re.compile(rb"\n" + _LOG_TS)


@dataclass(frozen=True)
class Extra:
    """A second credential a rule found near its own (an AWS secret key beside its key id)."""

    start: int
    end: int
    detector: str
    kind: str
    confidence: float


@dataclass(frozen=True)
class Verdict:
    confidence: float
    extras: tuple[Extra, ...] = ()


#: (credential, base confidence) -> verdict, or None to drop the match. It reads the value only, so the
#: scanner reuses its verdict when the same value comes again in one scan (a log repeats its lines).
Validator = Callable[[bytes, float], Verdict | None]


@dataclass(frozen=True)
class ReadsText:
    """A validator that reads the text around the credential too (a paired key, a marker, the host after
    a password): (whole text, credential start, credential end, base confidence) -> verdict or None."""

    check: Callable[[bytes, int, int, float], Verdict | None]


# --- how a rule is declared -------------------------------------------------------------------------
#
# A rule's pattern is written once, as a sequence of parts: regex text, the credential itself (Secret),
# literal openings (OneOf), alternatives (Either), a closing marker (Close) and a Cut. Everything the scanner
# needs is derived from it: the RE2 confirm expression is the whole sequence with each Secret as a capture
# group; the Hyperscan anchor is the sequence up to the Cut (in every branch of an Either), so every text
# the confirm expression matches at a position also matches the anchor there; the closing marker is the
# Close part; the prefixes the generic rules leave alone are the OneOf openings of credentials that start
# their own rule's match.


@dataclass(frozen=True)
class OneOf:
    """A fixed opening, as the literal forms it takes (``ghp_``, ``gho_``, …)."""

    literals: tuple[bytes, ...]


@dataclass(frozen=True)
class Secret:
    """The credential: a capture group of the confirm expression (the first one that matched is reported)."""

    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Either:
    """Alternatives, tried in order (RE2 is leftmost-first, like the backtracking engines)."""

    branches: tuple[tuple[Part, ...], ...]


@dataclass(frozen=True)
class Close:
    """A closing marker (a PEM END line), found in the same Hyperscan pass: each marker is paired with the
    closest anchor before it, and the confirmation reads no further than the marker. Without this, N opening
    lines and no closing one would cost N windows."""

    pattern: bytes


class _Cut:
    """Where the anchor ends: what follows is read by the confirm expression only."""

    def __repr__(self) -> str:
        return "CUT"


CUT = _Cut()

Part = bytes | OneOf | Secret | Either | Close | _Cut


def one_of(*literals: bytes) -> OneOf:
    return OneOf(literals)


def secret(*parts: Part) -> Secret:
    return Secret(parts)


def either(*branches: tuple[Part, ...]) -> Either:
    return Either(branches)


_META = frozenset(b".^$|?*+()[]{}\\")


def _escape(literal: bytes) -> bytes:
    # Both engines read an escaped metacharacter as itself; other bytes are written as they are.
    return b"".join(b"\\" + bytes([c]) if c in _META else bytes([c]) for c in literal)


def _confirm(parts: tuple[Part, ...], groups: bool = True) -> bytes:
    out = []
    for p in parts:
        if isinstance(p, bytes):
            out.append(p)
        elif isinstance(p, OneOf):
            out.append(b"(?:" + b"|".join(_escape(x) for x in p.literals) + b")")
        elif isinstance(p, Secret):
            out.append((b"(" if groups else b"(?:") + _confirm(p.parts, groups) + b")")
        elif isinstance(p, Either):
            out.append(b"(?:" + b"|".join(_confirm(b, groups) for b in p.branches) + b")")
        elif isinstance(p, Close):
            out.append(b"(?:" + p.pattern + b")")
    return b"".join(out)


def _has_secret(parts: tuple[Part, ...]) -> bool:
    return any(
        isinstance(p, Secret) or (isinstance(p, Either) and any(_has_secret(b) for b in p.branches)) for p in parts
    )


def _split(parts: tuple[Part, ...]) -> tuple[bytes, bytes, bool]:
    """(head, tail, whether the tail has groups): the parts before the first that holds a credential, without
    capture groups, and the rest (as ``_relaxed`` writes it; without groups when it is the credential alone).
    Empty when the match starts with a credential.

    The match's highest-priority parse runs the head's first, so if the tail matches where the head's own
    first match ends, the whole expression's credential is the tail's; the scanner asks the whole
    expression otherwise. RE2's DFA finds the head, and the tail's program is a small part of the whole:
    a service-account key (a PEM block behind a JSON name) costs a tenth, a password assignment half."""
    k = next((i for i, p in enumerate(parts) if _has_secret((p,))), 0)
    if k == 0:
        return b"", b"", False
    head, tail = _confirm(parts[:k], groups=False), parts[k:]
    if len(tail) == 1 and isinstance(tail[0], Secret):
        return head, _confirm(tail[0].parts, groups=False), False
    return head, _relaxed(tail, []), True


#: A credential that is one character class repeated a bounded number of times (``[^"\r\n]{1,512}``).
_BOUNDED_CLASS = re.compile(rb"(\[\^?\]?(?:\\.|[^\]\\])*\])\{([0-9]+),([0-9]+)\}")


def _relaxed(parts: tuple[Part, ...], bounds: list[int | None]) -> bytes:
    """The confirm expression with each Secret that is one bounded character class unbounded above; the
    bound is appended to ``bounds`` for its group (None for the other groups), in group order.

    RE2 expands ``x{1,512}`` into 512 copies of ``x``: such a program is too large for its fast capture
    engines. Unbounded, the expression accepts more parses, ordered alike, so when the parse it picks keeps
    every bound (a group's byte length is at least its character count) it is the one the bounded
    expression picks; the scanner checks that and else asks the bounded expression."""
    out = []
    for p in parts:
        if isinstance(p, Secret):
            single = p.parts[0] if len(p.parts) == 1 and isinstance(p.parts[0], bytes) else b""
            m = _BOUNDED_CLASS.fullmatch(single)
            if m is not None:
                bounds.append(int(m.group(3)))
                out.append(b"(" + m.group(1) + b"{" + m.group(2) + b",})")
            else:
                bounds.append(None)
                out.append(b"(" + _relaxed(p.parts, bounds) + b")")
        elif isinstance(p, Either):
            out.append(b"(?:" + b"|".join(_relaxed(b, bounds) for b in p.branches) + b")")
        else:
            out.append(_confirm((p,)))
    return b"".join(out)


def _anchor(parts: tuple[Part, ...]) -> tuple[bytes, bool]:
    """The parts up to the Cut (no capture groups), and whether a Cut was reached."""
    out: list[bytes] = []
    for p in parts:
        if isinstance(p, _Cut):
            return b"".join(out), True
        if isinstance(p, Secret | Either):
            branches = [_anchor(b) for b in (p.branches if isinstance(p, Either) else (p.parts,))]
            cut = {c for _, c in branches}
            if len(cut) != 1:
                raise ValueError("a Cut must be in every branch of an Either or in none")
            out.append(b"(?:" + b"|".join(text for text, _ in branches) + b")")
            if cut == {True}:
                return b"".join(out), True
        else:
            out.append(_confirm((p,)))
    return b"".join(out), False


def _close(parts: tuple[Part, ...]) -> list[bytes]:
    found: list[bytes] = []
    for p in parts:
        if isinstance(p, Close):
            found.append(p.pattern)
        elif isinstance(p, Secret):
            found += _close(p.parts)
        elif isinstance(p, Either):
            for b in p.branches:
                found += _close(b)
    return found


def _openings(parts: tuple[Part, ...]) -> tuple[bytes, ...]:
    """The literal forms a match of ``parts`` starts with, if its first part fixes them."""
    first = parts[0] if parts else None
    if isinstance(first, OneOf):
        return first.literals
    if isinstance(first, Secret):
        return _openings(first.parts)
    if isinstance(first, Either):
        forms = [_openings(b) for b in first.branches]
        return () if not all(forms) else tuple(x for f in forms for x in f)
    return ()


@dataclass(frozen=True)
class Rule:
    detector: str
    #: Credential family, the unit of the corpus's per-kind precision/recall table.
    kind: str
    #: The one declaration of what the rule matches (see the parts above).
    pattern: tuple[Part, ...]
    confidence: float
    validator: Validator | ReadsText | None = None
    caseless: bool = False
    #: How far past the anchor's start the confirm expression may read.
    window: int = 512
    #: Characters that may not touch the credential on the left / right (it would be part of a longer word).
    left: bytes = b""
    right: bytes = b""
    #: Overlap resolution: the more specific rule keeps the span.
    specificity: int = 2
    #: Text that, right before the anchor, belongs to the credential (a webhook's scheme).
    back: bytes = b""
    #: The confirm expression cannot match a line break, and tests no position (no ``^``, ``$``, ``\b``): its
    #: answer at an anchor depends on the rest of the anchor's line only, so the scanner reuses it where that
    #: rest comes again (a log repeats its lines). tests/detection/test_scanner_speed_equivalence.py proves
    #: it of each rule that says so.
    one_line: bool = False
    # Derived from ``pattern``:
    #: Hyperscan expression: where the confirm expression may match.
    anchor: bytes = field(init=False)
    #: RE2 expression matched at each anchor; its first participating group (else the whole match) is the
    #: credential.
    confirm: bytes = field(init=False)
    #: The confirm expression without capture groups, when the credential is the whole match: RE2 then
    #: answers from its DFA alone, without a capture engine (a PEM block costs 15x less).
    confirm_whole: bytes = field(init=False)
    #: The confirm expression before its first credential, and the rest (see ``_split``); empty when the match
    #: starts with a credential. The tail has the expression's groups (relaxed as below) unless it is the
    #: credential alone.
    confirm_head: bytes = field(init=False)
    confirm_tail: bytes = field(init=False)
    tail_groups: bool = field(init=False)
    #: The confirm expression with its bounded one-class credentials unbounded above (see ``_relaxed``), and
    #: each group's bound; empty when no credential is such a class.
    confirm_relaxed: bytes = field(init=False)
    group_bounds: tuple[int | None, ...] = field(init=False)
    #: The Close part's expression, if any.
    until: bytes = field(init=False)
    #: The literal openings of the credential, when the match starts with the credential itself.
    openings: tuple[bytes, ...] = field(init=False)

    def __post_init__(self) -> None:
        anchor, _ = _anchor(self.pattern)
        closes = _close(self.pattern)
        if len(closes) > 1:
            raise ValueError(f"{self.detector}: one Close part at most")
        starts_with_secret = bool(self.pattern) and isinstance(self.pattern[0], Secret)
        object.__setattr__(self, "anchor", anchor)
        flags = b"(?i)" if self.caseless else b""
        object.__setattr__(self, "confirm", flags + _confirm(self.pattern))
        whole = len(self.pattern) == 1 and isinstance(self.pattern[0], Secret)
        object.__setattr__(self, "confirm_whole", flags + _confirm(self.pattern, groups=False) if whole else b"")
        head, tail, tail_groups = _split(self.pattern)
        object.__setattr__(self, "confirm_head", flags + head if head else b"")
        object.__setattr__(self, "confirm_tail", flags + tail if head else b"")
        object.__setattr__(self, "tail_groups", tail_groups)
        bounds: list[int | None] = []
        relaxed = _relaxed(self.pattern, bounds)
        relaxes = any(b is not None for b in bounds)
        object.__setattr__(self, "confirm_relaxed", flags + relaxed if relaxes else b"")
        object.__setattr__(self, "group_bounds", tuple(bounds) if relaxes else ())
        object.__setattr__(self, "until", closes[0] if closes else b"")
        object.__setattr__(self, "openings", _openings(self.pattern) if starts_with_secret else ())


# --- validators -------------------------------------------------------------------------------------


def _value(data: bytes, start: int, end: int) -> bytes:
    return data[start:end]


def random_token(min_distinct: int = 10, skip: int = 0) -> Validator:
    """Generic check for prefixed tokens: the part after the prefix looks generated."""

    def check(value: bytes, conf: float) -> Verdict | None:
        if v.is_example(value) or not v.random_body(value[skip:], min_distinct):
            return None
        return Verdict(conf)

    return check


def crc_token(prefix_len: int) -> Validator:
    def check(value: bytes, conf: float) -> Verdict | None:
        if v.is_example(value) or not v.crc32_base62_ok(value, prefix_len):
            return None
        return Verdict(conf)

    return check


def _stripe(value: bytes, conf: float) -> Verdict | None:
    if v.is_example(value) or not v.random_body(value[8:]):
        return None
    return Verdict(conf if b"_live_" in value else 0.55)


def _openai(value: bytes, conf: float) -> Verdict | None:
    if value.startswith(b"sk-ant-") or v.is_example(value) or not v.random_body(value[3:], 12):
        return None
    if b"T3BlbkFJ" in value:
        return Verdict(0.98)
    if value.startswith((b"sk-proj-", b"sk-svcacct-", b"sk-admin-")):
        return Verdict(conf)
    return Verdict(0.6)  # sk- + 48: the old OpenAI shape, also used by look-alike APIs


#: An AWS secret access key: 40 characters of base64 (its rule, and the search near a key id).
_AWS_SECRET = rb"[A-Za-z0-9/+]{40}"
_AWS_SECRET_NEAR = re.compile(rb"(?<![A-Za-z0-9/+])" + _AWS_SECRET + rb"(?![A-Za-z0-9/+=])")
_AWS_PAIR_DISTANCE = 320


def _line_bounds(data: bytes, start: int, end: int, lines: int) -> tuple[int, int]:
    """From ``lines`` lines before ``start`` to ``lines`` lines after ``end``, within the pairing distance
    (every search is bounded by it, so a text without newlines costs no more than one with)."""
    floor, ceiling = max(0, start - _AWS_PAIR_DISTANCE), min(len(data), end + _AWS_PAIR_DISTANCE)
    lo = data.rfind(b"\n", floor, start) + 1 or floor
    for _ in range(lines):
        if lo <= floor:
            break
        lo = data.rfind(b"\n", floor, lo - 1) + 1 or floor
    hi = data.find(b"\n", end, ceiling)
    hi = ceiling if hi < 0 else hi
    for _ in range(lines):
        if hi >= ceiling:
            break
        nxt = data.find(b"\n", hi + 1, ceiling)
        hi = ceiling if nxt < 0 else nxt
    return lo, hi


def _aws_key_id(data: bytes, start: int, end: int, conf: float) -> Verdict | None:
    value = _value(data, start, end)
    if v.is_example(value) or len(set(value[4:])) < 8:
        return None
    # The secret is paired if it is on the key id's line or the one after (CSV rows, ini/env pairs, JSON),
    # else on the line before; a 40-character token further away belongs to something else.
    lo, hi = _line_bounds(data, start, end, 1)
    after = [m for m in _AWS_SECRET_NEAR.finditer(data, end, hi) if v.aws_secret_ok(m.group(0))]
    before = [m for m in _AWS_SECRET_NEAR.finditer(data, lo, start) if v.aws_secret_ok(m.group(0))]
    best = after[0] if after else (before[-1] if before else None)
    if best is None:
        return Verdict(conf)
    return Verdict(0.95, (Extra(best.start(), best.end(), "aws_secret_access_key", "aws", 0.95),))


def _aws_secret(value: bytes, conf: float) -> Verdict | None:
    return Verdict(conf) if v.aws_secret_ok(value) else None


def _hex_key(value: bytes, conf: float) -> Verdict | None:
    return Verdict(conf) if v.entropy(value) >= 2.7 and not v.is_placeholder(value) else None


def _twilio(value: bytes, conf: float) -> Verdict | None:
    if v.entropy(value[2:]) < 3.0 or v.is_placeholder(value[2:]):
        return None
    return Verdict(conf if value.startswith(b"SK") else 0.6)


_SA_MARKERS = (re.compile(rb"service_account"), re.compile(rb"client_email"))


def _service_account(data: bytes, start: int, end: int, conf: float) -> Verdict | None:
    lo, hi = max(0, start - 8192), min(len(data), end + 8192)
    if all(m.search(data, lo, hi) for m in _SA_MARKERS) and _pem_body_ok(_value(data, start, end)):
        return Verdict(conf)
    return None


_PEM_LINE = re.compile(rb"-----(?:BEGIN|END)[^-]{0,40}-----|Proc-Type:[^\n\\]*|DEK-Info:[^\n\\]*|\\[nr]")


@v.per_scan
def _pem_body_ok(block: bytes) -> bool:
    # A key printed in a CI log has a timestamp on every line: judge the body without them.
    body = _PEM_LINE.sub(b"", _LOG_PREFIXES.sub(b"\n", block))
    b64 = len(body) - len(body.translate(None, _B64 + b"="))
    return b64 >= 64 and v.entropy(body.translate(None, b"\n\r\t +")) >= 4.5 and b"..." not in body


def _pem(value: bytes, conf: float) -> Verdict | None:
    if not _pem_body_ok(value):
        return None
    return Verdict(0.75 if b"ENCRYPTED" in value[:40] else conf)


def _jwt(value: bytes, conf: float) -> Verdict | None:
    if v.is_example(value):
        return None
    c = v.jwt_confidence(value)
    return Verdict(c) if c is not None else None


_LOCAL_HOST = re.compile(rb"@(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]|host\.docker\.internal)[:/]?", re.I)


def _url_password(data: bytes, start: int, end: int, conf: float) -> Verdict | None:
    value = _value(data, start, end)
    if value.lower() in v.WEAK_DEFAULTS or v.is_placeholder(value) or v.is_example(value) or len(value) < 4:
        return None
    if v.entropy(value) < 2.0:
        return None
    local = _LOCAL_HOST.match(data, end, min(len(data), end + 40))
    return Verdict(0.7 if local else conf)


def _basic(value: bytes, conf: float) -> Verdict | None:
    c = v.basic_auth_confidence(value)
    return Verdict(c) if c is not None else None


def _assignment(value: bytes, conf: float) -> Verdict | None:
    if value.startswith(FORMAT_PREFIXES):
        return None
    # A Kubernetes Secret's data holds base64: judge what it decodes to (Y2hhbmdlbWU= is "changeme").
    # The scanner also reads the decoded text itself, so a decoded value of a known format is left to it.
    decoded = v.printable_b64(value, min_len=6)
    if decoded is not None:
        value = decoded.strip()
        if value.startswith(FORMAT_PREFIXES):
            return None
    c = v.assess_secret_value(value)
    return Verdict(c) if c is not None else None


def _login_password(value: bytes, conf: float) -> Verdict | None:
    if value.startswith(FORMAT_PREFIXES):
        return None  # a registry token of a known format: its own rule decides
    c = v.assess_secret_value(value, min_len=6)
    return Verdict(c) if c is not None else None


def _bearer(value: bytes, conf: float) -> Verdict | None:
    if value.startswith(FORMAT_PREFIXES):
        return None
    c = v.assess_secret_value(value, min_len=16)
    if c is None:
        return None
    return Verdict(0.85 if v.entropy(value) >= 4.0 else c)


# --- the table -------------------------------------------------------------------------------------

_SEP = rb"""["']?[ \t]{0,4}(?:=|:=|=>|:)[ \t]{0,4}"""
#: The value of an assignment: double-quoted, single-quoted, backticked or bare.
_VALUE = either(
    (b'"', secret(rb'[^"\r\n]{1,512}'), b'"'),
    (b"'", secret(rb"[^'\r\n]{1,512}"), b"'"),
    (b"`", secret(rb"[^`\r\n]{1,512}"), b"`"),
    (secret(rb"""[^\s"'`,;&]{1,512}"""),),
)
#: Names under which an HTTP Basic credential is written.
_BASIC_NAMES = rb"(?:(?:proxy-)?authorization|auth[_-]?header|http[_-]?auth(?:orization)?)"
_SECRET_NAMES = (
    rb"(?:pass(?:word|wd|phrase)|pwd|secret(?:[_-]?key(?:[_-]?base)?)?|client[_-]?secret|api[_-]?(?:key|token|secret)|apikey"
    rb"|access[_-]?(?:token|key)|auth[_-]?token|private[_-]?key|token|credentials?"
    # Keys named for what they do (ENCRYPTION_KEY=<64 hex>, Rails' SECRET_KEY_BASE, Laravel's APP_KEY): a hex
    # value is a key here, a digest elsewhere.
    rb"|(?:encryption|encrypt|signing|master|hmac|aes|cipher|crypto|session|cookie|jwt|license|app)[_-]?key"
    # DB_PASS, SMTP_PASS: the suffix only, so bypass= and compass: are not names of secrets.
    rb"|[_-]pass)"
)
#: Between a secret's name and its value: the _SEP forms, a name closing a subscript
#: (``os.environ["DB_PASSWORD"] = …``, ``ENV['X'] = …``), or a quoted name and a comma
#: (``os.environ.setdefault("DB_PASSWORD", "…")``, ``os.Setenv("API_TOKEN", "…")``).
_NAME_SEP = rb"""(?:(?:["']?\]?[ \t]{0,4}(?:=|:=|=>|:))|["'][ \t]{0,4},)[ \t]{0,4}"""
_PEM_KEY = rb"PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = rb"-----END [A-Z ]{0,24}" + _PEM_KEY


def _pem_block(*header: Part) -> Secret:
    """A PEM private key, from its BEGIN line (``header``, which holds the Cut) to its END line; a key printed
    into a CI log has the runner's timestamp before each line."""
    body = rb"(?:[A-Za-z0-9+/=:,\- \t\r\n]|\\[nr]|\n" + _LOG_TS + rb"){64,}?"
    return secret(*header, body, Close(_PEM_END))


#: Database URL schemes, with the driver SQLAlchemy names after a ``+`` (postgresql+psycopg2, mysql+pymysql,
#: mongodb+srv); a ``jdbc:`` prefix needs nothing here (the scheme after it matches).
_DB_SCHEMES = (
    rb"(?:postgres(?:ql)?|mysql|mariadb|mongodb|rediss?|amqps?|mssql|sqlserver|clickhouse|oracle|cockroachdb"
    rb"|snowflake|db2|redshift)(?:\+[a-z0-9_]{1,24})?"
)
RULES: tuple[Rule, ...] = (
    Rule(
        "github_token",
        "github",
        (secret(one_of(b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), rb"[A-Za-z0-9]{36}"),),
        0.99,
        crc_token(4),
        left=_ALNUM,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "github_fine_grained_pat",
        "github_fine_grained",
        (secret(one_of(b"github_pat_"), rb"[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"),),
        0.97,
        random_token(12, 11),
        left=_ALNUM,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "gitlab_token",
        "gitlab",
        (
            secret(
                one_of(b"glpat-", b"gldt-", b"glrt-", b"glptt-", b"glcbt-", b"gloas-"),
                rb"[A-Za-z0-9_-]{20}",
                CUT,
                rb"[A-Za-z0-9_-]{0,44}(?:\.[0-9a-z]{2}\.[0-9a-z]{7,12})?",
            ),
        ),
        0.95,
        random_token(10, 6),
        left=_ALNUM,
        right=_TOKEN,
        specificity=3,
    ),
    Rule(
        "npm_token",
        "npm",
        (secret(one_of(b"npm_"), rb"[A-Za-z0-9]{36}"),),
        0.98,
        crc_token(4),
        left=_ALNUM,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "pypi_token",
        "pypi",
        (
            secret(
                one_of(b"pypi-"),
                rb"AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50}",
                CUT,
                rb"[A-Za-z0-9_-]{0,950}",
            ),
        ),
        0.98,
        random_token(12, 24),
        window=1100,
        left=_ALNUM,
        right=_TOKEN,
        specificity=3,
    ),
    Rule(
        "slack_token",
        "slack",
        (
            secret(
                either(
                    (
                        one_of(b"xox"),
                        rb"[abposr]-[0-9]{6,15}-",
                        CUT,
                        rb"(?:[0-9]{6,15}-[0-9A-Za-z-]{8,200}|[0-9A-Za-z]{16,200})",
                    ),
                    (one_of(b"xapp-"), rb"[0-9]-[A-Z0-9]{6}", CUT, rb"[A-Z0-9]{0,8}-[0-9]{6,15}-[A-Za-z0-9]{24,128}"),
                )
            ),
        ),
        0.95,
        random_token(10, 5),
        left=_ALNUM,
        right=_TOKEN,
        specificity=3,
    ),
    Rule(
        "slack_webhook",
        "slack_webhook",
        (
            secret(
                one_of(b"hooks.slack.com/"),
                either(
                    (b"services/", CUT, rb"T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{16,40}"),
                    (
                        rb"(?:workflows|triggers)/",
                        CUT,
                        rb"T[A-Z0-9]{6,12}/A[A-Z0-9]{6,12}/[0-9]{6,24}/[A-Za-z0-9]{16,40}",
                    ),
                ),
            ),
        ),
        0.95,
        random_token(12, 25),
        right=_ALNUM,
        specificity=3,
        back=b"https://",
    ),
    Rule(
        "stripe_secret_key",
        "stripe",
        (
            secret(
                one_of(b"sk_live_", b"sk_test_", b"rk_live_", b"rk_test_"),
                rb"[0-9A-Za-z]{16}",
                CUT,
                rb"[0-9A-Za-z]{0,231}",
            ),
        ),
        0.97,
        _stripe,
        left=_ALNUM,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "openai_api_key",
        "openai",
        (
            secret(
                one_of(b"sk-"),
                either(
                    (rb"(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20}", CUT, rb"[A-Za-z0-9_-]{20,230}"),
                    # sk-<20>T3BlbkFJ<20> (the marker is base64 of "openai"), or the old sk- + 48.
                    (rb"[A-Za-z0-9]{20}", CUT, rb"(?:T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{28})"),
                ),
            ),
        ),
        0.9,
        _openai,
        left=_ALNUM,
        right=_TOKEN,
        specificity=3,
    ),
    Rule(
        "anthropic_api_key",
        "anthropic",
        (secret(one_of(b"sk-ant-"), rb"[a-z]{3,5}[0-9]{2}-[A-Za-z0-9_-]{20}", CUT, rb"[A-Za-z0-9_-]{60,180}"),),
        0.98,
        random_token(12, 14),
        left=_ALNUM,
        right=_TOKEN,
        specificity=4,
    ),
    Rule(
        "aws_access_key_id",
        "aws",
        (secret(one_of(b"AKIA", b"ASIA", b"ABIA", b"ACCA"), rb"[A-Z2-7]{16}"),),
        0.7,
        ReadsText(_aws_key_id),
        left=_ALNUM,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "aws_secret_access_key",
        "aws",
        (
            rb"(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)" + _SEP,
            CUT,
            rb"""["']?""",
            secret(_AWS_SECRET),
        ),
        0.9,
        _aws_secret,
        caseless=True,
        right=_B64 + b"=",
        specificity=3,
    ),
    Rule(
        "gcp_api_key",
        "gcp_api_key",
        (secret(one_of(b"AIza"), rb"[0-9A-Za-z_-]{35}"),),
        0.9,
        random_token(12, 4),
        left=_ALNUM,
        right=_TOKEN,
        specificity=3,
    ),
    Rule(
        "gcp_service_account_key",
        "gcp_service_account",
        (
            rb'\\{0,3}"private_key\\{0,3}"[ \t]{0,4}:[ \t]{0,4}\\{0,3}"',
            _pem_block(b"-----BEGIN", CUT, rb" [A-Z ]{0,24}" + _PEM_KEY),
        ),
        0.99,
        ReadsText(_service_account),
        window=17000,
        specificity=4,
    ),
    Rule(
        "azure_storage_key",
        "azure",
        (b"AccountKey=", secret(rb"[A-Za-z0-9+/]{20}", CUT, rb"[A-Za-z0-9+/]{66}==")),
        0.95,
        random_token(20),
        caseless=True,
        right=_B64 + b"=",
        specificity=3,
    ),
    Rule(
        "twilio_key",
        "twilio",
        (secret(one_of(b"SK", b"AC"), rb"[0-9a-f]{32}"),),
        0.85,
        _twilio,
        left=_ALNUM,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "sendgrid_api_key",
        "sendgrid",
        (secret(one_of(b"SG."), rb"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),),
        0.98,
        random_token(12, 3),
        left=_ALNUM,
        right=_TOKEN,
        specificity=3,
    ),
    Rule(
        "datadog_api_key",
        "datadog",
        (
            rb"(?:datadog|dd[_-]?api[_-]?key|dd[_-]?app(?:lication)?[_-]?key)",
            CUT,
            # The key may sit on the next line (`datadog:` then `  apiKey: …`, or a k8s env name/value pair).
            rb"[^\n]{0,48}?(?:\n[^\n]{0,48}?){0,1}[^0-9a-z]",
            secret(rb"[0-9a-f]{40}|[0-9a-f]{32}"),
        ),
        0.85,
        _hex_key,
        caseless=True,
        window=160,
        right=_ALNUM,
        specificity=3,
    ),
    Rule(
        "private_key",
        "private_key",
        (_pem_block(one_of(b"-----BEGIN"), rb" (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?" + _PEM_KEY, CUT),),
        0.97,
        _pem,
        window=17000,
        specificity=3,
    ),
    Rule(
        "jwt",
        "jwt",
        (
            secret(
                one_of(b"eyJ"),
                rb"[A-Za-z0-9_-]{8}",
                CUT,
                rb"[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            ),
        ),
        0.85,
        _jwt,
        window=22600,
        left=_TOKEN,
        right=_TOKEN + b"=",
        specificity=3,
    ),
    Rule(
        "connection_string_password",
        "db_url",
        (_DB_SCHEMES + rb"://[^\s:@/?#]{0,128}:", CUT, secret(rb"[^\s@/?#]{1,256}"), rb"@[^\s/?#:@]"),
        0.9,
        ReadsText(_url_password),
        caseless=True,
        specificity=2,
        one_line=True,
    ),
    Rule(
        "connection_string_query_password",
        "db_url",
        # JDBC and libpq put the password in properties: jdbc:postgresql://h/db?user=u&password=p,
        # jdbc:sqlserver://h;user=u;password=p, postgresql://h/db?password=p; Oracle's thin driver writes
        # user/password@ (jdbc:oracle:thin:scott/pw@//h:1521/svc).
        (
            either(
                (b"jdbc:oracle:", CUT, rb"""(?:thin|oci):[^\s/@:"']{1,128}/""", secret(rb"""[^\s@"']{1,256}"""), b"@"),
                (
                    either(
                        (rb"jdbc:[a-z0-9]{2,20}:", CUT, rb"(?:[a-z0-9]{1,20}:)?//"),
                        (_DB_SCHEMES + b"://", CUT),
                    ),
                    rb"""[^\s"'<>?;]{0,256}(?:[?;][^\s"'<>]{0,256}?)?[?;&](?:password|passwd|pwd)=""",
                    secret(rb"""[^\s&;"'<>]{1,256}"""),
                ),
            ),
        ),
        0.9,
        ReadsText(_url_password),
        caseless=True,
        window=600,
        specificity=2,
        one_line=True,
    ),
    Rule(
        "basic_auth",
        "basic_auth",
        # RFC 7617 credentials in a header, or a setting that holds one (auth-header=Basic …, nginx's
        # proxy_set_header Authorization "Basic …").
        (
            _BASIC_NAMES + rb"""["']?(?:[ \t]{0,4}[:=]|[ \t])[ \t]{0,4}["']?basic[ \t]""",
            CUT,
            rb"[ \t]{0,3}",
            secret(rb"[A-Za-z0-9+/]{4,}={0,2}"),
        ),
        0.9,
        _basic,
        caseless=True,
        window=2200,
        right=_B64 + b"=",
        specificity=2,
    ),
    Rule(
        "docker_config_auth",
        "basic_auth",
        # ~/.docker/config.json (and a dockerconfigjson Secret once decoded): "auth": base64(user:password).
        (rb'"auth"[ \t]{0,4}:[ \t]{0,4}"', secret(rb"[A-Za-z0-9+/]{8}", CUT, rb"[A-Za-z0-9+/]*={0,2}"), b'"'),
        0.9,
        _basic,
        window=2200,
        specificity=2,
    ),
    Rule(
        "registry_login_password",
        "generic",
        # docker login -u u -p PASSWORD host / --password=PASSWORD (also podman, nerdctl, buildah); not
        # --password-stdin, which is how it should be done.
        (
            rb"(?:docker|podman|nerdctl|buildah)[ \t]+login[ \t]",
            CUT,
            rb"(?:[^\n|;&]{0,300}?[ \t])?(?:-p|--password)(?:[ \t]+|=)",
            either(
                (b'"', secret(rb'[^"\r\n]{1,256}'), b'"'),
                (b"'", secret(rb"[^'\r\n]{1,256}"), b"'"),
                (secret(rb"""[^\s"'|;&]{1,256}"""),),
            ),
        ),
        0.85,
        _login_password,
        caseless=True,
        window=700,
        specificity=1,
    ),
    Rule(
        "bearer_token",
        "generic",
        (rb"bearer[ \t]{1,4}", secret(rb"[A-Za-z0-9._~+/-]{16}", CUT, rb"[A-Za-z0-9._~+/-]*=*")),
        0.8,
        _bearer,
        caseless=True,
        window=2200,
        left=_ALNUM,
        right=_ALNUM,
        specificity=1,
    ),
    Rule(
        "generic_secret",
        "generic",
        (_SECRET_NAMES + _NAME_SEP, CUT, _VALUE),
        0.8,
        _assignment,
        caseless=True,
        window=600,
        specificity=0,
        one_line=True,
    ),
)

#: Openings of formats with their own rule (ghp_, sk_live_, AKIA, -----BEGIN, …), from the rules whose match
#: starts with the credential: if that rule did not report a value (wrong checksum, placeholder, documented
#: example), the generic rules must not report it either. Openings under three characters (Twilio's SK/AC)
#: begin ordinary words and passwords too, so they claim nothing.
FORMAT_PREFIXES: tuple[bytes, ...] = tuple(dict.fromkeys(p for r in RULES for p in r.openings if len(p) >= 3))

#: Detectors that report a whole family (for the corpus table and documentation).
KINDS: tuple[str, ...] = tuple(dict.fromkeys([r.kind for r in RULES]))

#: Base64 of printable text, as a Hyperscan class: the first character of every 4-character quantum
#: holds the top 6 bits of a byte, which for printable ASCII (0x20-0x7E) are I-Z or a-f, for tab/LF/CR C or
#: D. Hex digests (a digit there 5 times in 8) and random tokens mostly fail it within 16 characters: on CI
#: logs this trigger fires ~100x less often than any 16 base64 characters would.
_B64_QUANTUM = rb"[CDI-Za-f][A-Za-z0-9+/]{3}"
_B64_TEXT = rb"(?:" + _B64_QUANTUM + rb"){4}"
_B64_TEXT_FIRST = b"CDIJKLMNOPQRSTUVWXYZabcdef"
#: Where a base64 value starts (scanner.py decodes it and scans the text it encodes): after an assignment
#: or a key (a Kubernetes Secret's ``data:`` entries, JSON, .env), or after ``echo`` (``echo … | base64 -d``).
#: A value alone on its line is not looked for: a line-start trigger costs a third of the scan speed on
#: plain logs. Each trigger ends with 16 base64 characters, so the value starts 16 before the end.
#: The assignment trigger has no literal for Hyperscan's literal matcher to find (it starts with ':' or '='),
#: so it runs as an automaton over every byte and set the speed of the whole pass (a third of what the
#: rules alone scan at, on plain logs). Spelled as one expression per first character of the value, the
#: same matches cost a third less (tests/bench/test_detect_bench.py times both).
_B64_AFTER = rb"""[:=][ \t]{0,4}["']?"""
_B64_ECHO = rb"""echo[ \t]{1,4}(?:-n[ \t]{1,4})?["']?""" + _B64_TEXT
B64_TRIGGERS: tuple[bytes, ...] = (
    *(_B64_AFTER + bytes([c]) + rb"[A-Za-z0-9+/]{3}(?:" + _B64_QUANTUM + rb"){3}" for c in _B64_TEXT_FIRST),
    _B64_ECHO,
)
#: The same triggers with the assignment one in one piece (the benchmark times both; they match alike).
B64_TRIGGERS_IN_ONE: tuple[bytes, ...] = (_B64_AFTER + _B64_TEXT, _B64_ECHO)
B64_TRIGGER_TAIL = 16
