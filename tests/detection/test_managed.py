"""Managed values through the engine, on both backends: any format, encoded forms, positions,
attribution to the secret, incidents opened once and joined, scopes, version statuses, no leaks."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
from datetime import timedelta
from urllib.parse import quote

import msgspec
import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import secrets, tenants
from lockzero.engine.commands.incidents import active_incidents
from lockzero.engine.detection import detect_exposure
from lockzero.engine.detection.managed import ManagedMatcher, SealedVersion, literal_forms
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.clock import iso
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import ANY_VERSION, Transaction
from tests.engine.support import OPERATOR, all_events, table_rows

AGENT = ev.EventMeta(actor_id="key_test", actor_type="agent")
SYMBOLS = "!#$%&*+/=?@^_~\"\\ '"


def password(rng: random.Random, n: int = 17) -> str:
    """A random password with the characters that JSON and URLs must escape."""
    core = [rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789" + SYMBOLS) for _ in range(n - 6)]
    core += ['"', "\\", "/", "%", "+", " "]
    rng.shuffle(core)
    if core[0] == " ":
        core[0], core[1] = core[1], core[0]
    return "".join(core)


async def add_secret(engine: Engine, tenant: str, secret_id: str, value: bytes | None = None) -> str:
    await secrets.register_secret(
        engine, tenant, OPERATOR, secret_id=secret_id, provider="generated", environment="prod", value=value
    )
    stored = await secrets.read_version_value(engine, tenant, secret_id, 1)
    assert stored is not None
    return stored.decode()


async def add_version(
    engine: Engine, tenant: str, secret_id: str, number: int, value: bytes, *events: ev.Event
) -> None:
    """A new version row plus whatever lifecycle events the test wants (a rotation, by hand)."""
    keys = await engine.tenant_keys(tenant)
    now = engine.clock.now()

    async def side(tx: Transaction) -> None:
        await tx.execute(
            "INSERT INTO lz_secret_versions (tenant, secret_id, version, ciphertext, fingerprint, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                tenant,
                secret_id,
                number,
                keys.seal(value, ref=secret_id, version=number, purpose="value"),
                keys.fingerprint(value),
                iso(now),
            ),
        )

    created = ev.SecretVersionCreated(at=now, tenant=tenant, secret_id=secret_id, version=number, origin="rotation")
    await engine.append(naming.secret_stream(tenant, secret_id), [created, *events], OPERATOR, ANY_VERSION, side)


@pytest.fixture
async def acme(engine: Engine) -> str:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    return "acme"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def test_managed_value_found_raw_and_encoded_with_exact_positions(engine: Engine, acme: str) -> None:
    rng = random.Random(17)
    value = password(rng)
    await add_secret(engine, acme, "prod/db/password", value.encode())
    json_form = json.dumps(value)[1:-1]
    url_form = quote(value, safe="")
    assert json_form != value and url_form != value
    lines = [
        "== deploy log ==",
        f"export DB_PASSWORD={value}",
        f"  password: {b64(value)}",
        f'{{"config": {{"dsn_password": "{json_form}"}}}}',
        f"GET /login?user=app&pw={url_form}&next=%2F HTTP/1.1",
        f"  auth: {b64('app:' + value)}",
        f"cfg={base64.urlsafe_b64encode(value.encode()).decode()}",
    ]
    report = await detect_exposure(engine, acme, AGENT, "\n".join(lines) + "\n", source="ci/job/42")
    by_line = {f.line: f for f in report.findings if f.managed}
    assert set(by_line) == {2, 3, 4, 5, 6, 7}, report
    assert by_line[2].column == len("export DB_PASSWORD=") + 1
    assert by_line[3].column == len("  password: ") + 1
    assert by_line[4].column == len('{"config": {"dsn_password": "') + 1
    assert by_line[5].column == len("GET /login?user=app&pw=") + 1
    assert by_line[7].column == len("cfg=") + 1
    # Inside a base64 stream the value starts mid-quantum: the finding points into the encoded pair.
    assert len("  auth: ") + 1 <= by_line[6].column <= len("  auth: ") + 8
    for f in by_line.values():
        assert (f.secret_id, f.confidence, f.recommended_action) == ("prod/db/password", 1.0, "rotate")
    assert report.scanned_bytes == len(("\n".join(lines) + "\n").encode())


async def test_generated_value_of_any_format_and_no_false_attribution(engine: Engine, acme: str) -> None:
    generated = await add_secret(engine, acme, "prod/webhook/signing")
    other = await add_secret(engine, acme, "prod/other/token")
    # One character off (never the same one: a generated value ends in "X" about once in 64 draws).
    near_miss = other[:-1] + ("Y" if other.endswith("X") else "X")
    text = f"2026-01-01T00:00:00Z worker started\nsigning with {generated} ok\n{near_miss} is not it\n"
    report = await detect_exposure(engine, acme, AGENT, text)
    managed = [f for f in report.findings if f.managed]
    assert [(f.secret_id, f.line, f.column) for f in managed] == [("prod/webhook/signing", 2, 14)]


async def test_incident_opened_once_then_joined(engine: Engine, acme: str) -> None:
    value = await add_secret(engine, acme, "prod/api/key")
    first = await detect_exposure(engine, acme, AGENT, f"key={value}\nagain {value}\n", source="slack #ops")
    assert len(first.incident_ids) == 1
    second = await detect_exposure(engine, acme, AGENT, f"leaked: {value}\n", source="gist")
    assert second.incident_ids == first.incident_ids
    incidents = (await active_incidents(engine, acme, kind="leaked_credential")).incidents
    assert [(i.incident_id, i.secret_id, i.severity) for i in incidents] == [
        (first.incident_ids[0], "prod/api/key", "critical")
    ]
    assert "slack #ops" in incidents[0].summary
    events, _ = await engine.load(naming.incident_stream(acme, first.incident_ids[0]))
    assert isinstance(events[0], ev.IncidentOpened)
    links = [(e.ref_kind, e.ref_id) for e in events if isinstance(e, ev.IncidentLinked)]
    finding_ids = [f.finding_id for f in first.findings + second.findings if f.managed]
    assert [r for k, r in links if k == "finding"] == finding_ids
    assert [r for k, r in links if k == "source"] == ["slack #ops", "gist"]


async def test_concurrent_scans_open_one_incident(engine: Engine, acme: str) -> None:
    value = await add_secret(engine, acme, "prod/api/key")
    reports = await asyncio.gather(*(detect_exposure(engine, acme, AGENT, f"k={value}") for _ in range(6)))
    assert len({r.incident_ids[0] for r in reports}) == 1
    assert len((await active_incidents(engine, acme, kind="leaked_credential")).incidents) == 1


async def test_resolved_incident_means_a_new_one(engine: Engine, acme: str) -> None:
    value = await add_secret(engine, acme, "prod/api/key")
    first = await detect_exposure(engine, acme, AGENT, value)
    resolved = ev.IncidentResolved(
        at=engine.clock.now(), tenant=acme, incident_id=first.incident_ids[0], resolution="x"
    )
    await engine.append(naming.incident_stream(acme, first.incident_ids[0]), [resolved], OPERATOR)
    second = await detect_exposure(engine, acme, AGENT, value)
    assert second.incident_ids and second.incident_ids != first.incident_ids


async def test_versions_retired_revoked_discarded(engine: Engine, acme: str) -> None:
    rng = random.Random(5)
    v1 = await add_secret(engine, acme, "prod/db/password", password(rng).encode())
    v2, v3 = password(rng), password(rng)
    now = engine.clock.now()
    s = {"tenant": acme, "secret_id": "prod/db/password"}
    await add_version(
        engine,
        acme,
        "prod/db/password",
        2,
        v2.encode(),
        ev.SecretVersionActivated(at=now, **s, version=2, previous_version=1),
        ev.SecretVersionRetired(at=now, **s, version=1, restorable_until=now + timedelta(days=7)),
    )
    await add_version(
        engine, acme, "prod/db/password", 3, v3.encode(), ev.SecretVersionDiscarded(at=now, **s, version=3)
    )
    report = await detect_exposure(engine, acme, AGENT, f"old={v1}\nnew={v2}\nnever={v3}\n")
    actions = {f.line: (f.managed, f.recommended_action) for f in report.findings}
    assert actions[1] == (True, "investigate")  # retired: may still work during its grace period
    assert actions[2] == (True, "rotate")
    assert actions.get(3, (False, ""))[0] is False  # discarded: never went live
    (incident,) = (await active_incidents(engine, acme)).incidents
    assert incident.severity == "critical"

    revoked = ev.SecretRevoked(at=now, **s, versions=(1, 2))
    await engine.append(naming.secret_stream(acme, "prod/db/password"), [revoked], OPERATOR)
    again = await detect_exposure(engine, acme, AGENT, f"new={v2}\n")
    assert [(f.managed, f.recommended_action) for f in again.findings] == [(True, "investigate")]


async def test_scope_and_tenant_isolation(engine: Engine, acme: str) -> None:
    await tenants.create_tenant(engine, "globex", OPERATOR)
    mine = await add_secret(engine, acme, "prod/github/token", _github_token().encode())
    theirs = await add_secret(engine, "globex", "prod/db/password")
    text = f"token {mine}\npassword {theirs}\n"
    scoped = await detect_exposure(engine, acme, AGENT, text, visible=lambda sid: sid.startswith("staging/"))
    # Out of scope: still a GitHub token by format, but not attributed, and no incident.
    assert [(f.detector, f.managed, f.secret_id) for f in scoped.findings] == [("github_token", False, None)]
    assert scoped.incident_ids == [] and scoped.findings[0].recommended_action == "register_and_rotate"
    full = await detect_exposure(engine, acme, AGENT, text)
    assert [(f.detector, f.secret_id) for f in full.findings] == [("github_token", "prod/github/token")]
    assert (await active_incidents(engine, "globex")).incidents == []


async def test_two_secrets_with_one_value_are_both_reported(engine: Engine, acme: str) -> None:
    shared = b"Shared-Value-2026-x9!"
    await add_secret(engine, acme, "prod/a", shared)
    await add_secret(engine, acme, "prod/b", shared)
    report = await detect_exposure(engine, acme, AGENT, f"x {shared.decode()} y")
    assert sorted(f.secret_id or "" for f in report.findings) == ["prod/a", "prod/b"]
    assert len(report.incident_ids) == 2


async def test_the_value_is_never_stored_or_returned(engine: Engine, acme: str) -> None:
    rng = random.Random(99)
    value = password(rng)
    await add_secret(engine, acme, "prod/db/password", value.encode())
    forms = {value, b64(value), json.dumps(value)[1:-1], quote(value, safe="")}
    text = "\n".join(f"line {i}: {form}" for i, form in enumerate(sorted(forms)))
    report = await detect_exposure(engine, acme, AGENT, text, source="paste")
    assert len([f for f in report.findings if f.managed]) == len(forms)
    encoded = msgspec.json.encode(report).decode()
    blobs: list[str] = [encoded]
    for e in await all_events(engine):
        blobs.append(bytes(e.data).decode() + bytes(e.metadata).decode())
    for table in ("rm_incidents", "rm_audit", "rm_secrets"):
        blobs.extend(repr(row) for row in await table_rows(engine, table))
    everything = "\n".join(blobs)
    for form in forms:
        assert form not in everything
        assert form[:10] not in encoded


def _github_token() -> str:
    import binascii

    from lockzero.engine.detection.validators import base62_encode

    body = "Zq8Lm3Nx7Pw2Rt5Vy9Ab4Cd6Ef1Gh0Jk"[:30]
    return "ghp_" + body + base62_encode(binascii.crc32(body.encode())).decode()


def test_base64_at_every_alignment_and_other_encodings() -> None:
    """The literal matcher alone: a value inside a base64 stream at byte offsets 0-5, url-safe base64,
    lowercase percent-escapes, JSON \\u escapes of non-ASCII."""
    keys, _ = MasterKey.generate().new_tenant_key("t")
    value = "pässwörd-Ω-2026/xyz+Q".encode()
    sealed = [
        SealedVersion("s/1", 1, keys.seal(value, ref="s/1", version=1, purpose="value"), keys.fingerprint(value)),
    ]
    matcher = ManagedMatcher(keys, sealed)
    try:
        for offset in range(6):
            blob = base64.b64encode(b"P" * offset + value + b"trailing-bytes").decode()
            hits = matcher.match(f"data: {blob}\n".encode())
            assert [h.secret_id for h in hits] == ["s/1"], offset
        urlsafe = base64.urlsafe_b64encode(b"xy" + value).decode()
        assert matcher.match(urlsafe.encode())
        lower = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value, safe=""))
        assert lower != quote(value, safe="") and matcher.match(lower.encode())
        escaped = json.dumps(value.decode(), ensure_ascii=True)
        assert matcher.match(escaped.encode())
        assert not matcher.match(b"p\xc3\xa4sswo\xcc\x88rd-\xce\xa9-2026/xyz+Q")  # same text, other normalisation
    finally:
        matcher.close()
    forms = {f for f, *_ in literal_forms(value)}
    assert value in forms and len(forms) > 6
