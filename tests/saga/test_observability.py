"""Metrics and logs of the running product: /metrics after real rotations (time to remediation, per-step
durations, calls by method and outcome), JSON log lines per call and per saga step, and no value in any of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.support import free_port
from tests.saga.support import ARQ, EMBEDDED, Stack, running_stack, wait_for

STEPS = ("create", "validate", "shift", "retire", "verify")
CANARY = "lzcanary-" + "Q7x9Zr2LmP4vT8wK1nB6"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and labels (parsed by prometheus-client)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def rotate_and_finish(stack: Stack, *, request_id: str) -> tuple[str, str, str]:
    """A generated secret imported from a canary value, a pull dependent, one rotation to its end; returns the
    tenant, the rotation id and the new value (which must appear in no log either)."""
    tenant, key = stack.tenant_and_key()
    stack.server.cli(
        "secret", "add", "prod/obs/token", "--tenant", tenant, "--provider", "generated", "--environment", "prod",
        "--value-stdin", stdin=CANARY.encode(),
    )  # fmt: skip
    token = stack.server.dependent(tenant, "prod/obs/token", "billing")["token"]
    r = stack.server.call(
        key,
        "rotate_secret",
        {"secret_id": "prod/obs/token", "reason": "observability test"},
        headers={"X-Request-Id": request_id},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == request_id, r.text
    rotation_id = r.json()["result"]["rotation_id"]

    def adopted() -> dict[str, Any] | None:
        pulled = stack.pull(token, "prod/obs/token").json()  # the dependent adopts the new version by pulling it
        return pulled if pulled["version"] == "v2" else None

    new_value = wait_for(adopted, 30, "v2 to be current")["value"]
    assert stack.wait_finished(key, "prod/obs/token", rotation_id)["status"] == "completed"
    # A leak scan of the old value is a call whose argument is a secret: it must not reach the logs.
    found = stack.server.result(key, "detect_exposure", {"text": f"token={CANARY}\n"})
    assert found["findings"], found
    return tenant, rotation_id, new_value


def assert_saga_observed(metrics_text: str, log_lines: list[dict[str, Any]], rotation_id: str) -> None:
    found = samples(metrics_text)
    ttr = "lockzero_time_to_remediation_seconds"
    assert value(found, f"{ttr}_count", kind="rotate", outcome="completed") >= 1, metrics_text
    assert value(found, f"{ttr}_sum", kind="rotate", outcome="completed") > 0
    assert value(found, "lockzero_rotations_total", kind="rotate", outcome="completed") >= 1
    for step in STEPS:
        labels = {"step": step, "compensating": "false", "outcome": "completed"}
        assert value(found, "lockzero_saga_step_duration_seconds_count", **labels) >= 1, step
        assert value(found, "lockzero_saga_step_duration_seconds_bucket", le="+Inf", **labels) >= 1, step
    steps = [line for line in log_lines if line.get("msg") == "saga step" and line.get("rotation_id") == rotation_id]
    assert [s["step"] for s in steps] == list(STEPS), steps
    assert all(s["outcome"] == "completed" and s["duration_ms"] >= 0 for s in steps), steps
    finished = [line for line in log_lines if line.get("msg") == "saga finished" and line["rotation_id"] == rotation_id]
    assert len(finished) == 1 and finished[0]["outcome"] == "completed" and finished[0]["ttr_ms"] > 0, finished


def test_metrics_and_logs_embedded(tmp_path: Path) -> None:
    with running_stack(EMBEDDED, tmp_path / "emb") as stack:
        tenant, rotation_id, new_value = rotate_and_finish(stack, request_id="req-obs-embedded")
        r = stack.server.http.get(f"{stack.server.base}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r
        found = samples(r.text)
        assert value(found, "lockzero_calls_total", method="rotate_secret", outcome="ok") == 1, r.text
        assert value(found, "lockzero_calls_total", method="detect_exposure", outcome="ok") == 1
        assert value(found, "lockzero_call_duration_seconds_count", method="rotate_secret") == 1
        assert value(found, "lockzero_audit_commit_batch_size_count") >= 1
        assert ("lockzero_queue_depth", frozenset()) in found
        stack.stop()
        lines = json_lines(stack.server.stderr_path)
        assert_saga_observed(r.text, lines, rotation_id)
        calls = [line for line in lines if line.get("msg") == "call" and line.get("method") == "rotate_secret"]
        assert len(calls) == 1, calls
        call = calls[0]
        assert call["request_id"] == "req-obs-embedded" and call["tenant"] == tenant, call
        assert call["outcome"] == "ok" and call["secret_id"] == "prod/obs/token" and call["duration_ms"] > 0, call
        assert call["key_id"].startswith("key_"), call
        logs = stack.logs()
        for secret in (CANARY, new_value):
            assert secret not in logs


@pytest.mark.postgres
def test_worker_serves_the_saga_metrics(tmp_path: Path) -> None:
    """arq mode: the saga runs in `lockzero worker`, so its metrics and step lines are the worker's."""
    with running_stack(ARQ, tmp_path / "arq", redis_db=9, worker=False) as stack:
        port = free_port()
        stack.server.env["LOCKZERO_METRICS_PORT"] = str(port)
        stack.start_worker()
        _, rotation_id, new_value = rotate_and_finish(stack, request_id="req-obs-arq")
        worker_metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

        def drained() -> dict[Any, float] | None:
            # The worker's cron jobs (reconcile every 3 s) pass through the same queue: a sample may catch one
            # in the instant between enqueue and pickup, so read until the queue is seen empty.
            found = samples(stack.server.http.get(f"{stack.server.base}/metrics").text)
            return found if value(found, "lockzero_queue_depth") == 0 else None

        api = wait_for(drained, 10, "the queue to be empty (every job taken)", interval=0.1)
        assert value(api, "lockzero_queue_depth") == 0  # every job taken
        # The API process ran no saga: no time-to-remediation samples there.
        assert value(api, "lockzero_time_to_remediation_seconds_count", kind="rotate", outcome="completed") == 0
        stack.stop()
        assert_saga_observed(worker_metrics, json_lines(tmp_path / "arq" / "worker0.stderr"), rotation_id)
        logs = stack.logs()
        for secret in (CANARY, new_value):
            assert secret not in logs
