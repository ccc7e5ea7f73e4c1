"""Metrics (Prometheus, prometheus-client) and structured JSON logs for the API and the saga workers.

Labels and log fields carry names, ids, outcomes and timings only: never an argument value, a secret value
or an error's text (a provider's message may quote what it was given). Tenants are in log lines, not in
metric labels: one series per tenant would grow without bound.

Metrics live in the process that observes them. With several API or worker processes each has its own
counters (Prometheus sums them per job); the saga's metrics (steps, rotations, time to remediation,
recoveries) come from whichever process ran the saga: `lockzero serve` in embedded mode, otherwise the
`lockzero worker` processes (their own /metrics on LOCKZERO_METRICS_PORT).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

#: Seconds; calls are mostly milliseconds, revocations and provider round trips seconds.
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: A saga step is a provider round trip (ms) or a wait for dependents' adoption (minutes).
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: Time to remediation: request to end of the saga, adoption waits included.
_TTR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)

CALLS = Counter("lockzero_calls", "MCP/JSON-RPC calls answered, by method and outcome", ("method", "outcome"))
CALL_SECONDS = Histogram(
    "lockzero_call_duration_seconds", "Time to answer a tool call, by method", ("method",), buckets=_CALL_BUCKETS
)
ROTATIONS = Counter("lockzero_rotations", "Sagas finished, by kind and outcome", ("kind", "outcome"))
TTR_SECONDS = Histogram(
    "lockzero_time_to_remediation_seconds",
    "From the rotate/rollback/revoke request to the end of its saga, by kind and outcome",
    ("kind", "outcome"),
    buckets=_TTR_BUCKETS,
)
STEP_SECONDS = Histogram(
    "lockzero_saga_step_duration_seconds",
    "Duration of one saga step's side effect, by step, direction and outcome",
    ("step", "compensating", "outcome"),
    buckets=_STEP_BUCKETS,
)
QUEUE_DEPTH = Gauge("lockzero_queue_depth", "Sagas waiting in the queue (arq) or running in-process (embedded)")
RECOVERIES = Counter("lockzero_reconciler_recoveries", "Stalled sagas the reconciler started again")
AUDIT_BATCH = Histogram(
    "lockzero_audit_commit_batch_size",
    "Audit records made durable by one group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


def metrics_text() -> tuple[bytes, str]:
    """The Prometheus exposition of this process, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# --- structured logs ---------------------------------------------------------------------------------

#: The HTTP request being served (set by the API's middleware), so every line of one request shares it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("lockzero_request_id", default=None)

events_log = logging.getLogger("lockzero.events")

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: an exception's text may quote a value. LOCKZERO_DEBUG=1 adds the traceback.
            line["error_type"] = record.exc_info[0].__name__
            if os.environ.get("LOCKZERO_DEBUG"):
                line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_json_logging() -> None:
    """For the long-running processes (serve, worker): every log line JSON on stderr, and the per-call and
    per-step lines (logger lockzero.events, INFO) switched on. The one-shot CLI keeps its one-line errors."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    events_log.setLevel(logging.INFO)


def log_call(
    *, tenant: str, key_id: str, method: str, outcome: str, duration_ms: float, secret_id: str | None = None
) -> None:
    """One line and the call metrics for an answered call (tool or protocol method)."""
    CALLS.labels(method, outcome).inc()
    events_log.info(
        "call",
        extra={
            "tenant": tenant,
            "key_id": key_id,
            "method": method,
            "outcome": outcome,
            "duration_ms": round(duration_ms, 3),
            "secret_id": secret_id,
        },
    )


def observe_call_latency(method: str, seconds: float) -> None:
    CALL_SECONDS.labels(method).observe(seconds)


@contextmanager
def saga_step(
    *, tenant: str, secret_id: str, rotation_id: str, step: str, compensating: bool, provider: str
) -> Iterator[None]:
    """Times one step's side effect; one log line and one histogram sample, completed or failed."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "completed"
    finally:
        seconds = time.perf_counter() - started
        STEP_SECONDS.labels(step, str(compensating).lower(), outcome).observe(seconds)
        events_log.info(
            "saga step",
            extra={
                "tenant": tenant,
                "secret_id": secret_id,
                "rotation_id": rotation_id,
                "step": step,
                "compensating": compensating,
                "provider": provider,
                "outcome": outcome,
                "duration_ms": round(seconds * 1000, 3),
            },
        )


def rotation_finished(
    *, tenant: str, secret_id: str, rotation_id: str, kind: str, outcome: str, requested_at: datetime, now: datetime
) -> None:
    ttr = max((now - requested_at).total_seconds(), 0.0)
    ROTATIONS.labels(kind, outcome).inc()
    TTR_SECONDS.labels(kind, outcome).observe(ttr)
    events_log.info(
        "saga finished",
        extra={
            "tenant": tenant,
            "secret_id": secret_id,
            "rotation_id": rotation_id,
            "kind": kind,
            "outcome": outcome,
            "ttr_ms": round(ttr * 1000, 3),
        },
    )


def reconciler_recovered(count: int) -> None:
    if count:
        RECOVERIES.inc(count)
        events_log.info("reconciler recovered", extra={"sagas": count})


def audit_batch_committed(size: int) -> None:
    AUDIT_BATCH.observe(size)
