"""The syslog audit sink (issue 16) against a real receiver over TCP and TLS (a certificate authority the test
makes): every message is RFC 5424 with octet-counting framing; the stream resumes after the receiver was down
or died mid-batch, losing nothing, repeating at most the unconfirmed batch; no secret value ever leaves."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockzero.engine.app import Engine
from lockzero.engine.audit import export as audit_export
from lockzero.engine.audit import records as audit
from lockzero.engine.audit import syslog_sink
from lockzero.engine.domain.errors import InvalidInput, Unavailable
from tests.api.tls_support import TlsFiles, make_certificates
from tests.engine.support import OPERATOR
from tests.engine.syslog_support import Message, SyslogReceiver, parse_rfc5424, split_frames
from tests.engine.test_audit_export import CANARY, _setup


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("syslog-tls"))


@pytest.fixture(params=["tcp", "tls"])
def receiver(request: pytest.FixtureRequest, certs: TlsFiles) -> Iterator[SyslogReceiver]:
    ctx = None
    if request.param == "tls":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs.cert, certs.key)
    r = SyslogReceiver(ctx)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _url(r: SyslogReceiver) -> str:
    return f"syslog+{'tls' if r.context else 'tcp'}://127.0.0.1:{r.port}"


async def test_resumes_after_down_and_crash_nothing_lost(
    engine: Engine, receiver: SyslogReceiver, certs: TlsFiles
) -> None:
    tls = syslog_sink.TlsFiles(ca_file=str(certs.ca))
    url = _url(receiver)
    await _setup(engine, 30)
    first = await syslog_sink.stream_to_syslog(engine, "acme", url, batch=10, tls=tls, hostname="lz-test")
    assert first.delivered == 30 and len(receiver.frames) == 30 and receiver.connections == 3
    for i in range(40):
        await audit.record(engine, "acme", OPERATOR, "list_secrets", "ok", detail=f"while down {i}")
    confirmed = await audit_export.cursor(engine, f"syslog:acme:{_sink_hash(url)}")
    assert confirmed == first.cursor

    receiver.stop()  # refused connections
    with pytest.raises(Unavailable, match="unreachable"):
        await syslog_sink.stream_to_syslog(engine, "acme", url, batch=10, tls=tls, hostname="lz-test")
    receiver.mode = "crash"  # accepts, reads part of the first batch, resets
    receiver.start()
    with pytest.raises(Unavailable, match=r"closed early|unreachable"):
        await syslog_sink.stream_to_syslog(engine, "acme", url, batch=10, tls=tls, hostname="lz-test")
    assert await audit_export.cursor(engine, f"syslog:acme:{_sink_hash(url)}") == confirmed

    receiver.mode = "up"
    second = await syslog_sink.stream_to_syslog(engine, "acme", url, batch=10, tls=tls, hostname="lz-test")
    assert second.delivered == 40
    assert (await syslog_sink.stream_to_syslog(engine, "acme", url, tls=tls)).delivered == 0

    expected = [r.position async for r in audit_export.records(engine, "acme")]
    messages = [parse_rfc5424(f) for f in receiver.frames]
    positions = [int(m.sd["lockzero@32473"]["position"]) for m in messages]
    assert set(positions) == set(expected) and len(expected) == 70  # nothing lost
    repeated = {p for p, n in Counter(positions).items() if n > 1}
    assert all(n <= 2 for n in Counter(positions).values())
    assert repeated and repeated <= set(expected[30:40])  # only the batch the crashed receiver never confirmed
    assert CANARY.encode() not in b"".join(receiver.frames)
    for m in messages:
        _check_message(m)


def _sink_hash(url: str) -> str:
    return hashlib.sha256(str(syslog_sink.parse_target(url)).encode()).hexdigest()[:16]


def _check_message(m: Message) -> None:
    sd = m.sd["lockzero@32473"]
    assert m.version == 1 and m.app_name == "lockzero" and m.hostname == "lz-test" and m.msgid == "audit"
    assert m.pri // 8 == 13 and m.pri % 8 == {"ok": 6, "denied": 4}[sd["outcome"]]
    assert m.timestamp.utcoffset() is not None
    assert m.msg.startswith(b"\xef\xbb\xbf")
    body = json.loads(m.msg[3:])
    assert body["position"] == int(sd["position"]) and body["chain_hash"] == sd["chain_hash"]
    assert sd["tenant"] == "acme" and sd["method"] == body["method"]


async def test_untrusted_certificate_is_refused_and_nothing_advances(engine: Engine, tmp_path: Path) -> None:
    theirs, ours = make_certificates(tmp_path / "theirs"), make_certificates(tmp_path / "ours")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(theirs.cert, theirs.key)
    r = SyslogReceiver(ctx)
    r.start()
    try:
        await _setup(engine, 3)
        url = f"syslog+tls://127.0.0.1:{r.port}"
        with pytest.raises(Unavailable, match="certificate not trusted"):
            await syslog_sink.stream_to_syslog(engine, "acme", url, tls=syslog_sink.TlsFiles(ca_file=str(ours.ca)))
        assert r.frames == [] and await audit_export.cursor(engine, f"syslog:acme:{_sink_hash(url)}") == 0
    finally:
        r.stop()


@pytest.mark.parametrize(
    "url",
    ["syslog://h:1", "syslog+udp://h:514", "syslog+tcp://", "syslog+tcp://h:x", "syslog+tcp://u@h:1", "tcp://h"],
)
def test_bad_targets_are_one_line_errors(url: str) -> None:
    with pytest.raises(InvalidInput, match="syslog"):
        syslog_sink.parse_target(url)


def test_default_ports() -> None:
    assert syslog_sink.parse_target("syslog+tcp://siem.example").port == 601
    assert syslog_sink.parse_target("syslog+tls://siem.example").port == 6514


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(actor=_text, method=_text, detail=_text, secret=st.none() | _text, host=_text)
def test_any_field_round_trips_through_rfc5424(
    actor: str, method: str, detail: str, secret: str | None, host: str
) -> None:
    r = audit_export.ExportRecord(
        7, "e1", "2030-01-01T12:00:00.123456Z", "acme", actor, "agent", method, secret, "error", detail, 3, "ab" * 32
    )
    frames, rest = split_frames(syslog_sink.frame(syslog_sink.format_message(r, "jsonl", host)) * 2)
    assert rest == b"" and len(frames) == 2
    m = parse_rfc5424(frames[0])
    sd = m.sd["lockzero@32473"]
    assert (sd["actor_id"], sd["method"], sd.get("secret_id")) == (actor, method, secret)
    assert m.pri == 13 * 8 + 3 and m.timestamp.microsecond == 123456
    assert json.loads(m.msg[3:])["detail"] == detail
    assert m.hostname == (host if host.isascii() and host.isprintable() and " " not in host else "-")
