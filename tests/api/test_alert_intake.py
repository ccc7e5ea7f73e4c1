"""POST /api/v1/alerts on the real app (Litestar in process, SQLite store, a real Redis ACL user): an
Alertmanager alert firing, then resolved, opens then annotates one usage_anomaly incident; an agent over
direct JSON-RPC sees it, rotates, and the verified rotation resolves it. Bad input opens nothing."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from lockzero.api.app import create_app
from lockzero.engine.app import Engine
from lockzero.engine.commands.intake import create_intake, revoke_intake
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.config import Settings
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.security.keys import create_key
from lockzero.workers.inprocess import InProcessQueue
from tests.engine.support import OPERATOR, migrated_engine, scalar
from tests.saga.support import AclUser

TENANT = "acme"


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Engine]:
    async with migrated_engine(sqlite_url, TENANT) as e:
        yield e


def alertmanager(status: str, fingerprint: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "lockzero",
        "groupLabels": {},
        "commonLabels": labels,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": summary},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": fingerprint,
            }
        ],
    }


async def incident_events(engine: Engine, incident_id: str) -> list[ev.AnyEvent]:
    return (await engine.load(naming.incident_stream(TENANT, incident_id)))[0]


async def test_alertmanager_firing_resolved_then_agent_rotates_and_it_resolves(
    engine: Engine, acl_user: AclUser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sid = f"prod/redis/{acl_user.name}"
    await register_secret(
        engine, TENANT, OPERATOR, secret_id=sid, provider="redis_acl", environment="prod", labels={"app": "billing"},
        config={"url": "redis://127.0.0.1:6379/0", "username": acl_user.name}, value=acl_user.password.encode(),
    )  # fmt: skip
    key = await create_key(engine, TENANT, OPERATOR, name="agent")
    intake = await create_intake(engine, TENANT, OPERATOR, name="alertmanager")
    assert intake.token.startswith("lz_int_")
    queue = InProcessQueue(engine, watch_every_s=0)
    settings = Settings("sqlite://", None, "127.0.0.1", 0, (), None, rate_limit_per_s=0)
    app = create_app(engine, settings, queue)
    leaked = "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    marker = f"MARKER-{secrets.token_hex(6)}"
    labels = {"alertname": "UnusualRedisUsage", "lockzero_app": "billing", "severity": "critical"}
    auth = {"Authorization": f"Bearer {intake.token}"}

    async def rpc(method: str, params: dict[str, Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        r = await client.post("/api/mcp", json=body, headers={"Authorization": f"Bearer {key.key}"})
        assert r.status_code == 200, r.text
        return r.json()["result"]

    async with AsyncTestClient(app) as client:
        firing = alertmanager("firing", "fp-1", labels, f"{marker} odd commands; token {leaked} seen")
        r = await client.post("/api/v1/alerts", json=firing, headers=auth)
        assert r.status_code == 202, r.text
        assert (r.json()["opened"], r.json()["duplicates"]) == (1, 0)
        [incident_id] = r.json()["incidents"]

        # The same alert again (Alertmanager repeats): deduplicated, nothing new.
        r = await client.post("/api/v1/alerts", json=firing, headers=auth)
        assert (r.status_code, r.json()["duplicates"], r.json()["incidents"]) == (202, 1, [incident_id])

        seen = await rpc("get_active_incidents", {"kind": "usage_anomaly"})
        assert [(i["incident_id"], i["secret_id"], i["severity"]) for i in seen["incidents"]] == [
            (incident_id, sid, "critical")
        ]

        r = await client.post("/api/v1/alerts", json=alertmanager("resolved", "fp-1", labels, "ok"), headers=auth)
        assert (r.status_code, r.json()["joined"], r.json()["incidents"]) == (202, 1, [incident_id])
        evidence = [e for e in await incident_events(engine, incident_id) if isinstance(e, ev.UsageAnomalyObserved)]
        assert [e.status for e in evidence] == ["firing", "resolved"]
        assert leaked not in evidence[0].detail and "AKIA" in evidence[0].detail  # redacted, not dropped
        # The source resolving it annotates; the credential may still be abused: the incident stays open.
        assert (await rpc("get_active_incidents", {"kind": "usage_anomaly"}))["incidents"]

        started = await rpc("rotate_secret", {"secret_id": sid, "reason": f"usage anomaly {incident_id}"})
        for _ in range(100):  # the saga runs in the app's own event loop (the test client's portal)
            check = await rpc("verify_remediation", {"secret_id": sid, "rotation_id": started["rotation_id"]})
            if check["status"] not in ("in_progress", "pending_approval"):
                break
            await asyncio.sleep(0.1)
        assert check["verified"] is True, check
        assert (await rpc("get_active_incidents", {"kind": "usage_anomaly"}))["incidents"] == []
        resolved = [e for e in await incident_events(engine, incident_id) if isinstance(e, ev.IncidentResolved)]
        assert started["rotation_id"] in resolved[0].resolution
        timeline = await rpc("get_rotation_history", {"secret_id": sid})
        assert timeline["rotations"][0]["rotation_id"] == started["rotation_id"]
    await queue.close()
    # Nothing logs the payload: not Lockzero's loggers, and the raw credential nowhere (even SQL debug logs
    # of the driver, which carry the stored, redacted evidence).
    assert leaked not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("lockzero") and marker in r.getMessage()]


async def count_incidents(engine: Engine) -> int:
    return int(await scalar(engine, "SELECT count(*) FROM rm_incidents WHERE tenant = ?", (TENANT,)))


async def test_bad_intake_input_is_refused_and_opens_nothing(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sid = "prod/gen/api-key"
    await register_secret(
        engine, TENANT, OPERATOR, secret_id=sid, provider="generated", environment="prod", labels={"app": "shop"},
        config={}, value=b"v1-value-0123456789abcdef",
    )  # fmt: skip
    intake = await create_intake(engine, TENANT, OPERATOR)
    auth = {"Authorization": f"Bearer {intake.token}"}
    settings = Settings("sqlite://", None, "127.0.0.1", 0, (), None, rate_limit_per_s=0)
    queue = InProcessQueue(engine, watch_every_s=0)
    marker = f"MARKER-{secrets.token_hex(6)}"
    generic = {"secret_id": sid, "severity": "high", "summary": marker, "source": "siem"}
    async with AsyncTestClient(create_app(engine, settings, queue)) as client:
        r = await client.post("/api/v1/alerts", json=generic, headers={"Authorization": "Bearer lz_int_nope"})
        assert r.status_code == 401 and "lockzero intake create" in r.json()["error_description"]
        r = await client.post("/api/v1/alerts", content=b'{"alerts": [', headers=auth)
        assert (r.status_code, r.json()["error"]) == (422, "invalid_alert") and "JSON" in r.json()["error_description"]
        r = await client.post(
            "/api/v1/alerts", json={**generic, "secret_id": None, "labels": {"app": marker}}, headers=auth
        )
        assert r.status_code == 422 and "select no secret" in r.json()["error_description"]
        assert marker not in r.text
        r = await client.post("/api/v1/alerts", json={**generic, "severity": "apocalyptic"}, headers=auth)
        assert r.status_code == 422 and "severity" in r.json()["error_description"]
        # 10,000 alerts in one request: refused whole (too big to read, or over the per-request cap).
        flood = {"alerts": [{"labels": {"lockzero_secret_id": sid}, "fingerprint": str(i)} for i in range(10_000)]}
        r = await client.post("/api/v1/alerts", json=flood, headers=auth)
        assert r.status_code in (413, 422), r.text
        # One valid and one bad alert: the whole payload is refused, the valid one opens nothing either.
        mixed = {"alerts": [{"labels": {"lockzero_secret_id": sid}}, {"labels": {"lockzero_app": "nothing"}}]}
        r = await client.post("/api/v1/alerts", json=mixed, headers=auth)
        assert r.status_code == 422 and "alerts[1]" in r.json()["error_description"]
        assert await count_incidents(engine) == 0

        # A burst: 100-alert requests until the per-token budget (200 alerts) says 429 with Retry-After.
        statuses = []
        for n in range(4):
            batch = {"alerts": [{"labels": {"lockzero_secret_id": sid}, "fingerprint": f"{n}-{i}"} for i in range(100)]}
            r = await client.post("/api/v1/alerts", json=batch, headers=auth)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["retry_after_ms"] > 0
        assert statuses[0] == 202 and 429 in statuses
        assert await count_incidents(engine) == 1  # every accepted alert joined the one incident

        await revoke_intake(engine, TENANT, intake.intake_id, OPERATOR)
        r = await client.post("/api/v1/alerts", json=generic, headers=auth)
        assert r.status_code == 401
    await queue.close()
    assert not [r for r in caplog.records if r.name.startswith("lockzero") and marker in r.getMessage()]
