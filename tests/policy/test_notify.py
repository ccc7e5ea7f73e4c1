"""Notifications to a policy's notify URLs: signed POSTs to a real local receiver, a failing receiver
that never blocks a rotation, the records of both, and the Slack body shape."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from lockzero.engine.commands.secrets import read_version_value
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.saga.notify import _body
from lockzero.engine.security.outbound import redact_url
from tests.api.support import Server
from tests.policy.support import Receiver, run_cli, stream_events, wait_for, wait_verified, with_engine


@pytest.fixture
def receiver() -> Any:
    with Receiver({"/fail": 500}) as r:
        yield r


def notifications(server: Server, tenant: str, secret_id: str) -> list[ev.NotificationSent | ev.NotificationFailed]:
    return [
        e
        for e, _ in stream_events(server, naming.adoption_stream(tenant, secret_id))
        if isinstance(e, ev.NotificationSent | ev.NotificationFailed)
    ]


def test_signed_notifications_and_a_failing_receiver(server: Server, receiver: Receiver) -> None:
    tenant = server.tenant("notify")
    key = server.key(tenant)
    sid = "prod/webhooks/signing"
    server.secret(tenant, sid)
    ok_url, fail_url = receiver.url("/ok"), receiver.url("/fail")
    out = server.cli("secret", "policy", sid, "--tenant", tenant, "--notify", ok_url, "--notify", fail_url)
    # Keyed by the redacted URL (host and a short hash: URLs often carry tokens), told apart all the same.
    assert set(out["notify_signing_secrets"]) == {redact_url(ok_url), redact_url(fail_url)}
    secrets = {url: out["notify_signing_secrets"][redact_url(url)] for url in (ok_url, fail_url)}
    assert all(v.startswith("whsec_") for v in secrets.values()) and len(set(secrets.values())) == 2
    assert out["policy"]["notify"] == [redact_url(ok_url), redact_url(fail_url)]
    # Shown once: the same URLs again create (and print) nothing new.
    assert (
        server.cli("secret", "policy", sid, "--tenant", tenant, "--notify", ok_url, "--notify", fail_url)[
            "notify_signing_secrets"
        ]
        == {}
    )
    text = run_cli(server, "secret", "policy", sid, "--tenant", tenant, "--notify", ok_url, "--notify", fail_url)
    assert text.returncode == 0 and "whsec_" not in text.stdout
    assert server.result(key, "check_rotation_policy", {"secret_id": sid})["notification_rules"]

    started = server.result(key, "rotate_secret", {"secret_id": sid, "reason": "routine"})
    rot = started["rotation_id"]
    done = wait_verified(server, key, sid, rot)
    assert done["status"] == "completed"  # the 500 receiver did not hold the rotation back

    def completed_posts() -> list[Any]:
        return [r for r in receiver.at("/ok") if r.json.get("topic") == "rotation.completed"]

    (post,) = wait_for(completed_posts, 15, "rotation.completed at the receiver")
    body = post.json
    assert (body["secret_id"], body["rotation_id"], body["kind"], body["outcome"]) == (sid, rot, "rotate", "completed")
    assert (body["from_version"], body["to_version"]) == ("v1", "v2")
    assert post.headers["content-type"].startswith("application/json")
    assert post.signed_with(secrets[ok_url])
    tampered = post.body.replace(b'"completed"', b'"failed"', 1)
    assert tampered != post.body and not post.signed_with(secrets[ok_url], tampered)
    assert not post.signed_with(secrets[fail_url])  # one signing secret per URL
    assert not post.signed_with(secrets[ok_url] + "x")

    async def values(engine: Any) -> list[bytes]:
        return [v for n in (1, 2) if (v := await read_version_value(engine, tenant, sid, n)) is not None]

    for value in with_engine(server, values):
        assert value not in post.body  # nothing secret in a notification

    def recorded() -> list[ev.NotificationSent | ev.NotificationFailed] | None:
        got = [e for e in notifications(server, tenant, sid) if e.topic == "rotation.completed"]
        return got if len(got) == 2 else None

    events = wait_for(recorded, 20, "both notification outcomes recorded")
    sent = [e for e in events if isinstance(e, ev.NotificationSent)]
    failed = [e for e in events if isinstance(e, ev.NotificationFailed)]
    assert [(e.url, e.status) for e in sent] == [(redact_url(ok_url), 204)]
    assert [e.url for e in failed] == [redact_url(fail_url)] and "500" in failed[0].error
    assert "/fail" not in failed[0].error  # the error names the redacted URL too
    assert len(receiver.at("/fail")) >= 2  # retried before giving up
    for r in receiver.at("/fail"):
        assert r.signed_with(secrets[fail_url])


def test_policy_violation_incident_is_notified(server: Server, receiver: Receiver) -> None:
    tenant = server.tenant("notify")
    key = server.key(tenant)
    sid = "prod/no-agents"
    server.secret(tenant, sid)
    url = receiver.url("/incidents")
    secret = server.cli("secret", "policy", sid, "--tenant", tenant, "--notify", url, "--no-agent-rotation")[
        "notify_signing_secrets"
    ][redact_url(url)]
    r = server.call(key, "rotate_secret", {"secret_id": sid, "reason": "x"})
    incident_id = r.json()["error"]["data"]["incident_id"]
    (post,) = wait_for(lambda: receiver.at("/incidents"), 15, "the incident notification")
    assert post.signed_with(secret)
    assert post.json["topic"] == "incident.policy_violation"
    assert (post.json["incident_id"], post.json["secret_id"]) == (incident_id, sid)


def test_slack_urls_get_a_text_body() -> None:
    data = {"secret_id": "prod/x", "rotation_id": "rot_1"}
    slack = json.loads(_body("https://hooks.slack.com/services/T0/B0/XYZ", "rotation.completed", "all good", data))
    assert slack == {"text": "[lockzero] all good"}
    plain = msgspec.json.decode(_body("https://example.test/hook", "rotation.completed", "all good", data))
    assert plain == {"topic": "rotation.completed", "summary": "all good", **data}
    for lookalike in ("https://hooks.slack.com.evil.test/x", "https://evil.test/hooks.slack.com"):
        assert "topic" in json.loads(_body(lookalike, "t", "s", data))
