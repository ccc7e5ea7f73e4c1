"""One trace from the agent's call to the saga's steps, across processes: `lockzero serve` and a `lockzero
worker` both export OTLP/HTTP to a receiver this test runs; the worker's saga step spans carry the API call's
trace id and hang under its span, and the two come from different service instances. No span attribute holds
the credential it replaced."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.saga.support import ARQ, AclUser, LocalHttpServer, running_stack, wait_for

REDIS_DB = 14


class OtlpReceiver(LocalHttpServer):
    """The OTLP/HTTP traces endpoint (protobuf), keeping every span with its resource attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    def answer(self, path: str, headers: Message, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.bodies.append(body)
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            {
                                "name": s.name,
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex(),
                                "instance": resource.get("service.instance.id"),
                                "role": resource.get("lockzero.role"),
                            }
                        )
        reply = ExportTraceServiceResponse().SerializeToString()
        return 200, {"Content-Type": "application/x-protobuf", "Content-Length": str(len(reply))}, reply

    @property
    def endpoint(self) -> str:
        return self.origin


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.mark.postgres
def test_a_rotation_is_one_trace_from_the_api_call_to_the_worker_steps(
    tmp_path: Path, acl_user: AclUser, receiver: OtlpReceiver
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with running_stack(ARQ, tmp_path / "traces", REDIS_DB, **env) as stack:
        tenant, key = stack.tenant_and_key()
        sid = f"prod/redis/{acl_user.name}"
        stack.add_redis_secret(tenant, sid, acl_user)
        started = stack.server.result(key, "rotate_secret", {"secret_id": sid, "reason": "trace me"})
        assert stack.wait_finished(key, sid, started["rotation_id"])["verified"] is True

        def spans_of_the_call() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
            calls = [s for s in receiver.spans if s["name"] == "tool rotate_secret"]
            if not calls:
                return None
            steps = [
                s for s in receiver.spans if s["name"].startswith("saga ") and s["trace_id"] == calls[0]["trace_id"]
            ]
            names = {s["name"] for s in steps}
            return (calls[0], steps) if {"saga create", "saga verify"} <= names else None

        call, steps = wait_for(spans_of_the_call, 30, "the API's and the worker's spans", interval=0.2)
        assert call["role"] == "api" and {s["role"] for s in steps} == {"worker"}
        assert all(s["instance"] != call["instance"] for s in steps)  # another process
        assert {s["parent"] for s in steps} == {call["span_id"]}  # each step hangs under the call's span
        assert {"saga create", "saga validate", "saga shift", "saga retire", "saga verify"} <= {
            s["name"] for s in steps
        }
        # Nothing exported carries the credential the rotation replaced.
        assert acl_user.password.encode() not in b"".join(receiver.bodies)
