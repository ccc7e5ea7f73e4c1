"""`lockzero audit stream --sink syslog+tls://…` as a subprocess against a real TLS syslog receiver (issue 16):
a second run resumes at the cursor, bad sinks are one-line usage errors with exit 2."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

from tests.api.tls_support import make_certificates
from tests.cli.test_cli import LOCKZERO, TIMEOUT, base_env, new_key_b64
from tests.engine.syslog_support import SyslogReceiver, parse_rfc5424


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOCKZERO, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_stream_to_tls_syslog_resumes(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert, certs.key)
    receiver = SyslogReceiver(ctx)
    receiver.start()
    env = base_env(LOCKZERO_DATABASE_URL=f"sqlite:///{tmp_path / 'lz.db'}", LOCKZERO_MASTER_KEY=new_key_b64())
    sink = f"syslog+tls://127.0.0.1:{receiver.port}"
    stream = ("audit", "stream", "--tenant", "acme", "--sink", sink, "--ca-file", str(certs.ca), "--json")
    try:
        assert _run(env, tmp_path, "tenant", "create", "acme").returncode == 0
        first = _run(env, tmp_path, *stream)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["delivered"] == 1
        assert _run(env, tmp_path, "key", "create", "--tenant", "acme").returncode == 0
        second = _run(env, tmp_path, *stream, "--format", "ocsf")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["delivered"] == 1  # only the record after the cursor
        messages = [parse_rfc5424(f) for f in receiver.frames]
        assert [m.sd["lockzero@32473"]["method"] for m in messages] == ["tenant.create", "key.create"]
        assert json.loads(messages[1].msg[3:])["class_uid"] == 6003
        assert "lz_mcp_" not in b"".join(receiver.frames).decode()  # the key's token never leaves
    finally:
        receiver.stop()
    assert _run(env, tmp_path, "key", "create", "--tenant", "acme").returncode == 0
    down = _run(env, tmp_path, *stream)
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "unreachable" in down.stderr
    for bad, needle in (
        (("--sink", "syslog+udp://127.0.0.1:514"), "syslog+tcp://"),
        (("--sink", "ftp://x"), "--sink must be"),
        (("--sink", "https://siem.example/in"), "LOCKZERO_AUDIT_SINK_SECRET"),
        (("--sink", sink, "--ca-file", str(tmp_path / "missing.pem")), "TLS files"),
    ):
        r = _run(env, tmp_path, "audit", "stream", "--tenant", "acme", *bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
