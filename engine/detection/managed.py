"""Finding the values of managed secrets in text, whatever their format.

Per scan, and only for its duration: the tenant's stored version values are decrypted, turned into
literals (the raw value and its JSON-escaped, URL-encoded and base64 forms), compiled into one
Hyperscan literal database (Aho-Corasick-like multi-literal matching, linear in the text) and matched.
Each hit is decoded back and confirmed by the keyed HMAC fingerprint stored beside the ciphertext
(``TenantKeys.fingerprint(value) == fingerprint``), which also names the secret and version. The
plaintexts and the compiled literals are dropped when the scan returns: nothing derived from a value
is cached between calls (only the rule database in scanner.py, which holds no secret material).

Base64 is matched wherever the value sits in a base64 stream (a whole .env or a `user:password` pair
encoded together): for each of the three byte alignments only the characters that depend on the value
alone are used as the literal, and a hit is decoded from the enclosing quantum to recover the value.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote_to_bytes

import hyperscan
import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.security.crypto import CryptoError, TenantKeys

#: Shorter values are not matched: they occur by chance and their base64 forms would be a few characters.
MIN_VALUE_BYTES = 8
#: Base64 literals shorter than this would match by chance.
MIN_B64_CHARS = 10

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_TO_STD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_PCT = re.compile(rb"%[0-9A-F]{2}")


@dataclass(frozen=True)
class SealedVersion:
    """One stored version as read from lz_secret_versions: ciphertext and fingerprint, never plaintext."""

    secret_id: str
    version: int
    ciphertext: bytes
    fingerprint: bytes


@dataclass(frozen=True)
class ManagedHit:
    start: int
    end: int
    secret_id: str
    version: int
    encoding: str


@dataclass(frozen=True)
class _Form:
    version: int  # index into the sealed list
    encoding: str  # raw | json | url | url_plus | b64 | b64url
    length: int  # literal length in bytes
    b64_offset: int = 0  # bytes of the enclosing stream before the value within its quantum
    b64_lead: int = 0  # characters of that quantum before the literal


async def load_sealed(engine: Engine, tenant: str, visible: Callable[[str], bool]) -> list[SealedVersion]:
    """Every stored (not destroyed) version of the tenant's secrets that the caller may see."""
    async with engine.store.reader() as tx:
        rows = await tx.fetchall(
            "SELECT secret_id, version, ciphertext, fingerprint FROM lz_secret_versions"
            " WHERE tenant = ? AND ciphertext IS NOT NULL AND fingerprint IS NOT NULL AND destroyed_at IS NULL"
            " ORDER BY secret_id, version",
            (tenant,),
        )
    return [SealedVersion(r[0], int(r[1]), bytes(r[2]), bytes(r[3])) for r in rows if visible(r[0])]


def _b64_forms(value: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(literal, alignment offset, lead chars) for the value at byte offset 0, 1 and 2 of a quantum."""
    n = len(value)
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + value)
        lead = (8 * offset + 5) // 6  # first character made of value bits only
        tail = (8 * (offset + n)) // 6  # characters fully inside the value
        literal = encoded[lead:tail]
        if len(literal) >= MIN_B64_CHARS:
            yield literal, offset, lead


def literal_forms(value: bytes) -> Iterator[tuple[bytes, str, int, int]]:
    """The forms a value takes in text: (literal, encoding, b64 offset, b64 lead)."""
    if b"\0" not in value:
        yield value, "raw", 0, 0
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        json_forms = {
            msgspec.json.encode(text)[1:-1],
            _json_ascii(text),
        }
        json_forms |= {f.replace(b"/", b"\\/") for f in json_forms if b"/" in f}
        for form in json_forms:
            if form != value:
                yield form, "json", 0, 0
    url_forms: set[bytes] = set()
    for quoted in (quote(value, safe=""), quote(value, safe="!'()*-._~")):
        url_forms.add(quoted.encode())
    lower_hex = {_PCT.sub(lambda m: m.group(0).lower(), f) for f in url_forms}
    for form in url_forms | lower_hex:
        if form != value:
            yield form, "url", 0, 0
    plus = quote_plus(value, safe="").encode()
    if plus != value and plus not in url_forms:
        yield plus, "url_plus", 0, 0
    for literal, offset, lead in _b64_forms(value):
        yield literal, "b64", offset, lead
        urlsafe = literal.translate(_TO_URLSAFE)
        if urlsafe != literal:
            yield urlsafe, "b64url", offset, lead


def _json_ascii(text: str) -> bytes:
    out = msgspec.json.encode(text)[1:-1].decode("utf-8")
    return "".join(c if ord(c) < 128 else _u_escape(c) for c in out).encode()


def _u_escape(c: str) -> str:
    if ord(c) < 0x10000:
        return f"\\u{ord(c):04x}"
    v = ord(c) - 0x10000
    return f"\\u{0xD800 + (v >> 10):04x}\\u{0xDC00 + (v & 0x3FF):04x}"


def _decode(data: bytes, start: int, end: int, form: _Form, value_len: int) -> bytes | None:
    """The value a hit stands for, decoded from the text (None if it does not decode)."""
    span = data[start:end]
    try:
        if form.encoding == "raw":
            return span
        if form.encoding == "json":
            decoded: str = msgspec.json.decode(b'"' + span + b'"', type=str)
            return decoded.encode("utf-8")
        if form.encoding == "url":
            return unquote_to_bytes(span)
        if form.encoding == "url_plus":
            return unquote_to_bytes(span.replace(b"+", b" "))
    except (msgspec.DecodeError, UnicodeEncodeError, ValueError):
        return None
    # base64: decode from the start of the enclosing quantum, through the value's last bits.
    quantum = start - form.b64_lead
    if quantum < 0:
        return None
    need = 4 * -(-(form.b64_offset + value_len) // 3)
    chunk = data[quantum : quantum + need]
    if form.encoding == "b64url":
        chunk = chunk.translate(_TO_STD)
    usable = 0
    while usable < len(chunk) and chunk[usable] in _B64_ALPHABET:
        usable += 1
    chunk = chunk[:usable]
    chunk += b"A" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError):
        return None
    candidate = raw[form.b64_offset : form.b64_offset + value_len]
    return candidate if len(candidate) == value_len else None


class ManagedMatcher:
    """Literal matcher over one tenant's values, for one scan. Build, match, then let it go."""

    def __init__(self, keys: TenantKeys, sealed: list[SealedVersion]) -> None:
        self._keys = keys
        self._sealed = sealed
        self._lengths: list[int] = [0] * len(sealed)
        literals: dict[bytes, list[_Form]] = {}
        for i, row in enumerate(sealed):
            try:
                value = keys.open(row.ciphertext, ref=row.secret_id, version=row.version, purpose="value")
            except CryptoError:
                continue  # a row that does not authenticate is not this tenant's value
            if len(value) < MIN_VALUE_BYTES:
                continue
            self._lengths[i] = len(value)
            for literal, encoding, offset, lead in literal_forms(value):
                literals.setdefault(literal, []).append(_Form(i, encoding, len(literal), offset, lead))
            del value
        self._forms: list[list[_Form]] = list(literals.values())
        self._db: hyperscan.Database | None = None
        if literals:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(expressions=list(literals), ids=list(range(len(literals))), flags=0, literal=True)
        literals.clear()

    @property
    def empty(self) -> bool:
        return self._db is None

    def match(self, data: bytes) -> list[ManagedHit]:
        if self._db is None or not data:
            return []
        ends: set[tuple[int, int]] = set()

        def on_match(literal_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            ends.add((literal_id, end))

        self._db.scan(data, match_event_handler=on_match, scratch=hyperscan.Scratch(self._db))
        hits: dict[tuple[int, int, str], ManagedHit] = {}
        confirmed: dict[tuple[int, int, int], bool] = {}
        for literal_id, end in sorted(ends, key=lambda x: x[1]):
            for form in self._forms[literal_id]:
                start = end - form.length
                row = self._sealed[form.version]
                key = (start, end, form.version)
                if key in confirmed:
                    continue
                value = _decode(data, start, end, form, self._lengths[form.version])
                ok = value is not None and hmac.compare_digest(self._keys.fingerprint(value), row.fingerprint)
                confirmed[key] = ok
                if ok:
                    hits.setdefault(
                        (start, end, row.secret_id), ManagedHit(start, end, row.secret_id, row.version, form.encoding)
                    )
        return list(hits.values())

    def close(self) -> None:
        self._db = None
        self._forms = []
