"""Checks that turn a regex match into a finding or drop it: checksums, structure (JWT, Basic auth),
placeholders, documented example keys, hashes and identifiers, and how random a value looks.

Every function here takes bytes and returns a verdict; none of them logs, stores or raises with the
value in the message.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar, Token

import msgspec
import re2  # type: ignore[import-untyped]


class ScanMemo:
    """While the ``with`` block runs (one scan), the checks marked ``per_scan`` keep their answers, the values
    adding up to at most ``budget`` bytes (the scanned text's size), like the scanner's verdicts. A class, not
    a generator: it is entered once per scan, and a short text's scan costs tens of microseconds."""

    def __init__(self, budget: int) -> None:
        self.answers: dict[tuple[object, bytes], bool] = {}
        self.budget = budget
        self._token: Token[ScanMemo | None] | None = None

    def __enter__(self) -> None:
        self._token = _SCAN_MEMO.set(self)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _SCAN_MEMO.reset(self._token)


#: Set during a scan only, so no value outlives the scan that read it.
_SCAN_MEMO: ContextVar[ScanMemo | None] = ContextVar("lockzero_scan_memo", default=None)


def per_scan(check: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
    """``check`` (a pure function of the value) answering once per distinct value in a scan: a value two rules
    judge (a service-account key's PEM block is private_key's too; an AWS secret is judged beside its key id
    and by its own rule) costs once."""

    @functools.wraps(check)
    def memoized(value: bytes) -> bool:
        memo = _SCAN_MEMO.get()
        if memo is None:
            return check(value)
        key = (check, value)
        ok = memo.answers.get(key)
        if ok is None:
            ok = check(value)
            if len(value) <= memo.budget:
                memo.budget -= len(value)
                memo.answers[key] = ok
        return ok

    return memoized


BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_INDEX = {c: i for i, c in enumerate(BASE62)}


def base62_decode(text: bytes) -> int | None:
    n = 0
    for c in text:
        i = _B62_INDEX.get(c)
        if i is None:
            return None
        n = n * 62 + i
    return n


def base62_encode(n: int, width: int = 6) -> bytes:
    out = bytearray()
    while n:
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return bytes(reversed(out)).rjust(width, b"0")


def crc32_base62_ok(token: bytes, prefix_len: int) -> bool:
    """GitHub classic and npm tokens: prefix + 30 random chars + base62(CRC32(random)) in 6 chars."""
    body = token[prefix_len:]
    if len(body) < 7:
        return False
    check = base62_decode(body[-6:])
    return check is not None and check == binascii.crc32(body[:-6])


#: Lengths up to which entropy's terms come from a table (most values checked are tokens of 16-64 characters;
#: a table costs its length in logarithms once, and holds no value, only functions of lengths).
_TABLED = 128


@functools.cache
def _terms(n: int) -> tuple[float, ...]:
    """``c / n * log2(c / n)`` for each count ``c`` of a value of length ``n`` (0.0 for a count of 0)."""
    return (0.0, *(c / n * math.log2(c / n) for c in range(1, n + 1)))


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    if not n:
        return 0.0
    # Each term as first computed, summed in the order the characters first occur: the same float to the
    # last bit, so a value at a threshold (entropy >= 3.0) is judged as before.
    counts = Counter(value).values()
    if n <= _TABLED:
        terms = _terms(n)
        return -sum([terms[c] for c in counts])
    log2 = math.log2
    return -sum([c / n * log2(c / n) for c in counts])


_LOWER = bytes(range(97, 123))
_UPPER = bytes(range(65, 91))
_DIGIT = bytes(range(48, 58))


def char_classes(value: bytes) -> int:
    """How many of lowercase, uppercase, digits and other characters occur."""
    n = len(value)
    rest = value.translate(None, _LOWER + _UPPER + _DIGIT)
    return (
        (len(value.translate(None, _LOWER)) < n)
        + (len(value.translate(None, _UPPER)) < n)
        + (len(value.translate(None, _DIGIT)) < n)
        + (len(rest) > 0)
    )


# --- placeholders and documented examples ---------------------------------------------------------

#: Keys published in vendors' documentation and tutorials: found everywhere, valid nowhere.
EXAMPLE_VALUES = frozenset(
    {
        b"AKIAIOSFODNN7EXAMPLE",
        b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        b"je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        b"sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        b"sk_test_BQokikJOvBiI2HlWgH4olfQ2",
        b"rk_test_4eC39HqLyjWDarjtT1zdp7dc",
        b"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
        b"SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        b"ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        b"gho_16C7e42F292c6912E7710c838347Ae178B4a",
        b"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    }
)

#: Words of filler and documentation, matched where a word starts, in one case (changeme, your_api_key,
#: REPLACE-ME); inside a generated token (…cqofakern1…, …yoUr…) they are chance, not a placeholder.
_WORDS = (
    "example",
    "placeholder",
    "changeme",
    "change_me",
    "change-me",
    "redacted",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yourpassword",
    "yoursecret",
    "replace",
    "insert",
    "dummy",
    "sample",
    "notreal",
    "not_real",
    "not-a-real",
    "fake",
    "todo",
    "fixme",
)
_PLACEHOLDER_WORDS = (
    rb"(?:^|[^A-Za-z])(?:"
    + b"|".join(re.escape(w).encode() for word in _WORDS for w in {word, word.upper(), word.capitalize()})
    + rb")"
)
#: Filler characters, anywhere.
_FILLER = (b"xxxxxx", b"XXXXXX", b"******", b"...", b"\xe2\x80\xa6")  # … is U+2026

#: What Python's ``\s`` and ``$`` match in a bytes pattern, spelled for RE2 (whose ``\s`` has no vertical tab
#: and whose ``$`` is the end only): these expressions were first written for Python's engine.
_SPACE = rb" \t\n\r\f\x0b"
_END = rb"(?:\n?\z)"
#: Template and variable syntax: ${VAR}, {{ var }}, $(cmd), %s, %(name)s, <password>, #{x}, $VAR, %VAR%, !Ref.
_TEMPLATE = (
    rb"\$\{|\{\{|\}\}|\$\(|(?:^|[" + _SPACE + rb""":/=@'"])%[sd](?:""" + _END + rb"|[" + _SPACE + rb""":/@'"&])"""
    rb"|%\([a-z_]+\)[sd]|%\{|#\{|<[A-Za-z][A-Za-z0-9_ .-]*>"
    rb"|^\$[A-Za-z_][A-Za-z0-9_]*"
    + _END
    + rb"|^%[A-Za-z_][A-Za-z0-9_]*%"
    + _END
    + rb"|^![A-Za-z]+"
    + _END
    + rb"|^@[A-Za-z_][A-Za-z0-9_.]*"
    + _END
)


class _Occurs:
    """Whether an RE2 expression occurs in a value, read as bytes (Latin-1: one byte is one character, as
    in a Python bytes pattern). One DFA pass however many alternatives; Python's engine tries each of them
    at each position, which made these checks most of a dense text's scan.

    The compiled object is called directly when the binding has it (the public ``search`` builds a match
    object per call), as scanner._Confirm does.
    """

    def __init__(self, pattern: bytes) -> None:
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1
        self._regex = re2.compile(pattern, options)
        self._anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
        self._raw = getattr(self._regex, "_regexp", None)
        try:
            probe = self._raw.Match(self._anchor, b"", 0, 0) if self._raw is not None else None
            usable = isinstance(probe, list) and len(probe) == self._regex.groups + 1
        except Exception:  # another binding version: the public API below always works
            usable = False
        if not usable:
            self._raw = None

    def __call__(self, value: bytes) -> bool:
        if self._raw is not None:
            return bool(self._raw.Match(self._anchor, value, 0, len(value))[0][0] >= 0)
        return self._regex.search(value) is not None


#: Words, filler and template syntax: any of them makes a placeholder.
_PLACEHOLDER_MARKS = _Occurs(b"|".join([_PLACEHOLDER_WORDS, *(re.escape(f) for f in _FILLER), _TEMPLATE]))

#: Passwords so common in dev configs and tutorials that reporting them is noise.
WEAK_DEFAULTS = frozenset(
    {
        b"password",
        b"passwd",
        b"pass",
        b"pwd",
        b"secret",
        b"admin",
        b"root",
        b"toor",
        b"guest",
        b"test",
        b"testing",
        b"user",
        b"username",
        b"postgres",
        b"mysql",
        b"redis",
        b"mongo",
        b"rabbitmq",
        b"default",
        b"letmein",
        b"qwerty",
        b"123456",
        b"12345678",
        b"password1",
        b"password123",
        b"mypassword",
        b"mysecret",
        b"supersecret",
        b"s3cr3t",
        b"p@ssw0rd",
        b"pa55word",
        b"none",
        b"null",
        b"nil",
        b"true",
        b"false",
        b"undefined",
        b"empty",
    }
)

_HEX = re.compile(rb"[0-9a-fA-F]+")
_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_IDENTIFIER = re.compile(rb"[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.|::|->)[A-Za-z_$][A-Za-z0-9_$]*)*(?:\(\))?")
_NUMBER = re.compile(rb"[-+]?[0-9][0-9_.,:eE+-]*[a-zA-Z]{0,3}")
_REPEAT = re.compile(rb"(.)\1{5,}")
#: Password hashes (bcrypt, argon2, crypt(3) SHA, PBKDF2, scrypt): what a system stores instead of a secret.
_PASSWORD_HASH = re.compile(rb"^\$(?:2[abxy]?|argon2(?:id|i|d)|[156]|pbkdf2[-_a-z0-9]*|scrypt|y|gy)\$")
#: Runs of keys, searched in the lowercased value.
_SEQUENCES = _Occurs(b"|".join(re.escape(s) for s in (b"0123456", b"1234567", b"abcdefg", b"qwertyu")))


def is_example(value: bytes) -> bool:
    return value in EXAMPLE_VALUES or b"EXAMPLE" in value.upper()


def is_placeholder(value: bytes) -> bool:
    """Template syntax, filler and documentation markers (xxx, changeme, <password>, ${VAR}, ****)."""
    return _placeholder(value, len(set(value)))


def _placeholder(value: bytes, distinct: int) -> bool:
    """is_placeholder for a value of ``distinct`` distinct characters (random_body counts them too)."""
    if _PLACEHOLDER_MARKS(value):
        return True
    if distinct <= 2:
        return True
    if distinct < max(6, len(value) // 3) and _REPEAT.search(value):
        return True
    return _SEQUENCES(value.lower()) and entropy(value) < 4.0


def is_hash_like(value: bytes) -> bool:
    """Hex digests (md5/sha1/sha256/sha512, git SHAs) and UUIDs: identifiers, not credentials."""
    if len(value) in (32, 40, 56, 64, 96, 128) and _HEX.fullmatch(value):
        return True
    if value.startswith((b"sha1:", b"sha256:", b"sha384:", b"sha512:", b"md5:")) or _PASSWORD_HASH.match(value):
        return True
    return bool(_UUID.fullmatch(value))


def random_body(value: bytes, min_distinct: int = 8) -> bool:
    """A token body that looks generated: enough distinct characters, not filler."""
    distinct = len(set(value))
    return distinct >= min(min_distinct, len(value)) and not _placeholder(value, distinct)


def _codeish(value: bytes) -> bool:
    """Names in code (settings.SECRET_KEY, self.api_token, getSecret) have no digits and few case
    changes; generated tokens have both."""
    if any(48 <= c <= 57 for c in value):
        return False
    letters = [c for c in value if 65 <= c <= 90 or 97 <= c <= 122]
    switches = sum(1 for a, b in itertools.pairwise(letters) if (a < 97) != (b < 97))
    return switches <= max(2, len(letters) // 5)


def looks_like_reference(value: bytes) -> bool:
    """A value that names where the secret lives instead of being it: code, variables, paths, URLs."""
    if _IDENTIFIER.fullmatch(value) and any(c in value for c in b"._($") and _codeish(value):
        return True
    if value.startswith((b"/", b"./", b"../", b"~/", b"file:", b"vault:", b"ref+", b"arn:", b"ssm:", b"sm://")):
        return True
    if b"://" in value:
        return True
    if any(s in value for s in (b"(", b")", b"[", b"]", b"os.environ", b"process.env", b"getenv", b"ENV[")):
        return True
    lower = value.lower()
    return lower.endswith((b".pem", b".key", b".json", b".txt", b".yaml", b".yml", b".crt", b".p12", b".env"))


def assess_secret_value(value: bytes, min_len: int = 8) -> float | None:
    """Confidence that a value assigned to a secret-sounding name is a real credential (None: it is not)."""
    if len(value) < min_len or len(value) > 512:
        return None
    if value.lower() in WEAK_DEFAULTS or is_example(value) or is_placeholder(value):
        return None
    if _PASSWORD_HASH.match(value) or value.startswith((b"sha256:", b"sha512:", b"sha1:")):
        return None
    if looks_like_reference(value) or _NUMBER.fullmatch(value):
        return None
    if _UUID.fullmatch(value):
        return 0.5
    h = entropy(value)
    classes = char_classes(value)
    if _HEX.fullmatch(value):
        return 0.65 if len(value) >= 16 and h >= 3.0 else None
    if _IDENTIFIER.fullmatch(value) and classes <= 2 and _codeish(value):
        # plain words or camelCase names: code, not a credential
        return None
    if (classes >= 3 and h >= 3.0) or (h >= 3.7 and len(value) >= 16):
        return 0.85 if len(value) >= 12 else 0.75
    if classes >= 2 and h >= 2.8:
        return 0.6
    return None


# --- structured formats ---------------------------------------------------------------------------

_JWT_ALGS = frozenset(
    {
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "RS384",
        "RS512",
        "ES256",
        "ES384",
        "ES512",
        "ES256K",
        "PS256",
        "PS384",
        "PS512",
        "EdDSA",
        "none",
    }
)


def b64url_decode(segment: bytes) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def _json_object(raw: bytes | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def jwt_confidence(token: bytes) -> float | None:
    """A JWT/JWS: header and payload are base64url JSON objects, the header names a real alg."""
    parts = token.split(b".")
    if len(parts) != 3:
        return None
    header = _json_object(b64url_decode(parts[0]))
    payload = _json_object(b64url_decode(parts[1]))
    if header is None or payload is None:
        return None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _JWT_ALGS:
        return None
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or "jwt" not in typ.lower()):
        return None
    if alg == "none" or not parts[2]:
        return 0.5
    return 0.85


#: RFC 7617's own example (Aladdin:open sesame), copied into countless docs and tests.
_BASIC_EXAMPLES = frozenset({b"QWxhZGRpbjpvcGVuIHNlc2FtZQ=="})


def basic_auth_confidence(token: bytes) -> float | None:
    """`Authorization: Basic b64(user:pass)` with a real-looking password."""
    if token in _BASIC_EXAMPLES:
        return None
    try:
        decoded = base64.b64decode(token, validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password or not text.isprintable():
        return None
    pw = password.encode()
    if pw.lower() in WEAK_DEFAULTS or is_placeholder(pw) or is_example(pw) or len(pw) < 4:
        return None
    return 0.9


_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: What decoded text may contain: printable ASCII and line breaks. Random bytes (a key, a hash, a PNG) have
#: a byte outside this set with probability ~1 - (98/256)^n: 16 random bytes pass one time in 4.6 million.
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n"


def printable_b64(value: bytes, min_len: int = 12) -> bytes | None:
    """The text ``value`` encodes, if it is standard base64 of printable ASCII (at least ``min_len``
    characters of it), else None. Hex digests, random tokens and binary files decode to bytes that are not."""
    body = value.rstrip(b"=")
    if len(value) - len(body) > 2 or len(body) % 4 == 1 or body.translate(None, _B64_CHARS):
        return None
    try:
        decoded = base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(decoded) < min_len or decoded.translate(None, _TEXT_BYTES):
        return None
    return decoded


@per_scan
def aws_secret_ok(value: bytes) -> bool:
    """40 characters of an AWS secret access key: random base64, not a hex digest or an example."""
    if len(value) != 40 or is_example(value) or _HEX.fullmatch(value):
        return False
    return char_classes(value) >= 3 and entropy(value) >= 4.0 and random_body(value)


def redact(value: str) -> str:
    """First 4 + … + last 2 characters; less of shorter values, nothing of very short ones."""
    n = len(value)
    if n >= 20:
        return f"{value[:4]}…{value[-2:]}"
    if n >= 12:
        return f"{value[:2]}…{value[-1:]}"
    if n >= 8:
        return f"{value[:1]}…"
    return "…"
