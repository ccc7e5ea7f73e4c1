"""Format rules, validators and the scanner, without a store."""

from __future__ import annotations

import base64
import binascii
import json
import random
import time

import pytest

from lockzero.engine.detection import scanner
from lockzero.engine.detection import validators as v
from lockzero.engine.detection.rules import KINDS, RULES
from tests.detection.corpus import Maker


def findings(text: str) -> list[tuple[str, int, int, str]]:
    """(detector, line, column, value) of each finding."""
    data = text.encode()
    kept = scanner.resolve(scanner.scan_formats(data))
    where = scanner.locate(data, [c.start for c in kept])
    return [(c.detector, *where[c.start], data[c.start : c.end].decode()) for c in kept]


def detectors(text: str) -> list[str]:
    return [f[0] for f in findings(text)]


@pytest.fixture
def m() -> Maker:
    return Maker(random.Random(20260601))


def test_rule_table_is_one_table_of_unique_names() -> None:
    assert len({r.detector for r in RULES}) == len(RULES)
    assert set(KINDS) >= {"github", "aws", "private_key", "jwt", "db_url", "generic"}
    scanner.compiled()  # every anchor compiles into the one Hyperscan database, every confirm into RE2


def test_github_checksum_is_crc32_base62() -> None:
    # A public test vector of the format (GitHub's token scanning partners use the same check).
    assert v.crc32_base62_ok(b"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", 4)
    assert not v.crc32_base62_ok(b"ghp_M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq11T4V3", 4)
    body = b"a" * 30
    token = b"npm_" + body + v.base62_encode(binascii.crc32(body))
    assert v.crc32_base62_ok(token, 4)


def test_known_formats_found_at_their_first_character(m: Maker) -> None:
    gh, npm, pat = m.github(), m.npm(), m.github_fine_grained()
    text = f"first line\n  token: {gh}\nx={npm} and {pat}\n"
    assert findings(text) == [
        ("github_token", 2, 10, gh),
        ("npm_token", 3, 3, npm),
        ("github_fine_grained_pat", 3, len(f"x={npm} and ") + 1, pat),
    ]


def test_columns_count_characters_not_bytes(m: Maker) -> None:
    token = m.github()
    text = f"naïve → ünïcödé 🙂 {token}\n"
    ((_, line, column, value),) = findings(text)
    assert (line, value) == (1, token)
    assert column == text.index(token) + 1


def test_wrong_checksums_are_not_findings(m: Maker) -> None:
    assert detectors(f"GITHUB_TOKEN={m.github_bad_checksum()}\nNPM_TOKEN={m.npm_bad_checksum()}\n") == []


@pytest.mark.parametrize(
    "line",
    [
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'",
        "STRIPE_SECRET_KEY=sk_live_XXXXXXXXXXXXXXXXXXXXXXXX",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "password = changeme",
        "password: <password>",
        "DB_PASSWORD=${DB_PASSWORD}",
        "password: {{ .Values.db.password }}",
        'cur.execute("SELECT * FROM users WHERE password = %s", (pw,))',
        "secret: '****************'",
        "token: ${{ secrets.GITHUB_TOKEN }}",
        "api_key = os.environ['API_KEY']",
        "self.secret_key = settings.SECRET_KEY",
        "password_hash: $2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "Digest: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "d41d8cd98f00b204e9800998ecf8427e  empty.txt",
        "request_id=123e4567-e89b-12d3-a456-426614174000",
        "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
        "DATABASE_URL=postgres://postgres:postgres@localhost:5432/test",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "Authorization: Bearer <token>",
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
        ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "max_tokens: 4096",
        "OPENAI_API_KEY=sk-...",
    ],
)
def test_hard_negatives(line: str) -> None:
    assert findings(line + "\n") == []


def test_jwt_needs_json_header_with_a_real_alg() -> None:
    def seg(o: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()

    good = f"{seg({'alg': 'RS256', 'typ': 'JWT'})}.{seg({'sub': 'svc-42', 'exp': 1900000000})}.{'Qw9x' * 20}"
    assert detectors(f"Authorization: Bearer {good}") == ["jwt"]
    no_alg = f"{seg({'typ': 'JWT'})}.{seg({'sub': 'x'})}.{'Qw9x' * 20}"
    not_json = f"eyJ{'A' * 20}.eyJ{'B' * 20}.{'Qw9x' * 20}"
    bad_typ = f"{seg({'alg': 'HS256', 'typ': 'XML'})}.{seg({'sub': 'x'})}.{'Qw9x' * 20}"
    for token in (no_alg, not_json, bad_typ):
        assert "jwt" not in detectors(f"session={token}"), token
    assert v.jwt_confidence(f"{seg({'alg': 'none'})}.{seg({'sub': 'x'})}.".encode()) == 0.5


def test_basic_auth_is_decoded(m: Maker) -> None:
    good = base64.b64encode(f"deploy:{m.password()}".encode()).decode()
    assert detectors(f"Authorization: Basic {good}") == ["basic_auth"]
    no_colon = base64.b64encode(b"just-a-long-random-string-1234").decode()
    assert detectors(f"Authorization: Basic {no_colon}") == []


def test_aws_key_id_pairs_with_the_nearby_secret(m: Maker) -> None:
    key_id, secret = m.aws_id(), m.aws_secret()
    found = findings(f"deploy,{key_id},{secret},https://console\n")
    assert [(f[0], f[3]) for f in found] == [("aws_access_key_id", key_id), ("aws_secret_access_key", secret)]
    alone = findings(f"key id {key_id} in a log\n")
    assert [f[0] for f in alone] == ["aws_access_key_id"]


def test_stripe_test_keys_are_lower_confidence(m: Maker) -> None:
    data = f"a=sk_live_{m.s(24)} b=sk_test_{m.s(24)}".encode()
    conf = {c.detector + data[c.start : c.start + 8].decode(): c.confidence for c in scanner.scan_formats(data)}
    assert conf["stripe_secret_keysk_live_"] > 0.9 > 0.6 > conf["stripe_secret_keysk_test_"]


def test_specific_rules_win_overlaps(m: Maker) -> None:
    token = m.openai()
    assert detectors(f"OPENAI_API_KEY={token}\n") == ["openai_api_key"]  # not also generic_secret
    assert detectors(f'password = "{m.password()}"\n') == ["generic_secret"]


def test_private_key_blocks_and_service_accounts(m: Maker) -> None:
    pem = m.pem()
    assert findings(f"key:\n{pem}\n") == [("private_key", 2, 1, pem)]
    escaped = m.pem("").replace("\n", "\\n")
    sa = json.dumps({"type": "service_account", "client_email": "x@p.iam.gserviceaccount.com"})[:-1]
    text = sa + ', "private_key": "' + escaped + '"}'
    assert detectors(text) == ["gcp_service_account_key"]


def test_each_private_key_block_is_found_once(m: Maker) -> None:
    first, second = m.pem(), m.pem("EC ")
    dangling = "-----BEGIN RSA PRIVATE KEY-----\n# copied from the vault, see below\n"
    text = f"{first}\n\n{dangling}{second}\n"
    found = findings(text)
    assert [(f[0], f[1]) for f in found] == [
        ("private_key", 1),
        ("private_key", first.count("\n") + 5),
    ]
    assert found[1][3] == second


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_…89"),
        ("0123456789abcdefghij", "0123…ij"),
        ("S3cr3t-Passw0rd!", "S3…!"),
        ("hunter22", "h…"),
        ("short", "…"),
    ],
)
def test_redaction_shows_at_most_four_and_two(value: str, expected: str) -> None:
    assert v.redact(value) == expected


@pytest.mark.parametrize(
    "attack",
    [
        "a" * 5_000_000,
        "password=" * 550_000,
        "password=Xk29!qPz" * 290_000,
        "-----BEGIN RSA PRIVATE KEY-----\n" * 150_000,
        "eyJhbGciOiJIUzI1NiJ9." * 230_000,
        "xoxb-1234567890-" * 300_000,
        "AKIAABCDEFGHIJKLMNOP " * 230_000,
        "postgres://u:" * 380_000,
        "Authorization: Basic " * 230_000,
        "sk-" + "A" * 4_999_990,
    ],
    ids=[
        "run",
        "keywords",
        "assignments",
        "pem-begins",
        "jwt-heads",
        "slack",
        "aws-ids",
        "urls",
        "basic",
        "long-token",
    ],
)
def test_hostile_input_stays_linear(attack: str) -> None:
    """5 MB of what makes backtracking engines or per-anchor windows blow up: bounded time (generous,
    for slow CI machines: the point is seconds, not minutes)."""
    data = attack.encode()[: 5 * 1024 * 1024]
    started = time.perf_counter()
    scanner.resolve(scanner.scan_formats(data))
    assert time.perf_counter() - started < 20


def test_confirmation_through_the_public_re2_api_gives_the_same_spans(m: Maker) -> None:
    """The scanner reads spans from the compiled RE2 object when the binding allows; the public-API
    fallback must agree."""
    text = f"GITHUB_TOKEN={m.github()}\npassword = '{m.password()}'\nDATABASE_URL=postgres://app:{m.s(20)}@db/x\n"
    data = text.encode()
    fast = scanner.compiled().confirm
    for i, rule in enumerate(RULES):
        slow = scanner._Confirm(rule.confirm, scanner.re2.Options(), direct=False)
        for pos in range(len(data)):
            assert fast[i].span(data, pos, len(data)) == slow.span(data, pos, len(data)), (rule.detector, pos)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_new_families_report_the_first_character_in_the_original_text(m: Maker) -> None:
    """One example of each family from the issue, at the position a person would go and fix."""
    pem = m.pem()
    ts = "2024-05-01T12:00:00.1234567Z "
    logged = "\n".join(ts + line for line in pem.split("\n"))
    assert [(f[0], f[1], f[2]) for f in findings(f"{ts}Run cat key\n{logged}\n")] == [("private_key", 2, len(ts) + 1)]

    url = f"postgresql://app:{m.password(symbols='-_')}@db.prod/app"
    manifest = f"data:\n  DATABASE_URL: {_b64(url)}\n  tls.key: {_b64(pem)}\n"
    assert [(f[0], f[1], f[2]) for f in findings(manifest)] == [
        ("connection_string_password", 2, 17),  # the encoded value's first character
        ("private_key", 3, 12),
    ]

    basic = _b64(f"ci:{m.password()}")
    assert [(f[0], f[2]) for f in findings(f"auth-header=Basic {basic}\n")] == [("basic_auth", 19)]

    pw = m.password(symbols="-_")
    for text, column in [
        (f"postgresql+psycopg2://app:{pw}@db/app", 27),
        (f"jdbc:postgresql://db/app?user=u&password={pw}", 42),
        (f"jdbc:mysql://u:{pw}@db/app", 16),
    ]:
        assert [(f[1], f[2], f[3]) for f in findings(text)] == [(1, column, pw)], text

    key = m.hex(64)
    named = f'ENCRYPTION_KEY={key}\nos.environ["DB_PASSWORD"] = "{pw}"\ndocker login -u bot -p {pw} ghcr.io\n'
    assert [(f[1], f[2], f[3]) for f in findings(named)] == [(1, 16, key), (2, 30, pw), (3, 24, pw)]
    # None of the values is in what a finding carries outward: the decoded URL is never a span.
    assert all(url not in f[3] for f in findings(manifest))


@pytest.mark.parametrize(
    "line",
    [
        f"  password: {base64.b64encode(b'changeme').decode()}",
        f"  DATABASE_URL: {base64.b64encode(b'postgres://app:${DB_PASSWORD}@db/app').decode()}",
        f"  GITHUB_TOKEN: {base64.b64encode(b'ghp_M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq11T4V3').decode()}",  # bad checksum
        "  logo.png: iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        f"  note: {base64.b64encode(b'just some words, nothing secret here').decode()}",
        "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        f"auth-header=Basic {base64.b64encode(b'a-long-token-without-any-colon').decode()}",
        "SQLALCHEMY_DATABASE_URI=postgresql+psycopg2://app:${DB_PASSWORD}@db/app",
        "jdbc:postgresql://localhost/test?user=fred&password=secret&ssl=true",
        "ENCRYPTION_KEY=${ENCRYPTION_KEY}",
        "ENCRYPTION_KEY_ID=123e4567-e89b-12d3-a456-426614174000",
        "CHECKSUM=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        'os.environ["DB_PASSWORD"] = "<password>"',
        "docker login -u ci -p ${{ secrets.DOCKERHUB_TOKEN }} docker.io",
        'echo "$PW" | docker login --password-stdin -u ci docker.io',
        "2024-05-01T12:00:00.1234567Z -----BEGIN RSA PRIVATE KEY-----\n2024-05-01T12:00:00.1234567Z ***\n"
        "2024-05-01T12:00:00.1234567Z -----END RSA PRIVATE KEY-----",
    ],
)
def test_hard_negatives_of_the_new_families(line: str) -> None:
    assert findings(line + "\n") == []
