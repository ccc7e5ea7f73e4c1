"""OpenTelemetry tracing for every Lockzero process (API and workers): spans name methods, tenants, steps and
outcomes, never argument values.

Tracing is off unless an OTEL_* exporter variable is set; then the OTLP exporter reads the standard OTEL_*
variables itself, or spans go to the console exporter with OTEL_TRACES_EXPORTER=console. Each process is one
service instance (``service.instance.id``), so a trace that crosses from the API to a worker shows both.
"""

from __future__ import annotations

import os
import socket

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

_provider: TracerProvider | None = None
_configured = False


def _exporter() -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if kind == "console":
        return ConsoleSpanExporter()
    if kind in ("", "otlp") and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def setup_tracing(role: str) -> None:
    """Once per process; ``role`` ("api", "worker") becomes the ``lockzero.role`` resource attribute."""
    global _configured, _provider
    if _configured:
        return
    _configured = True
    exporter = _exporter()
    if exporter is None:
        return
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "lockzero"),
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            "lockzero.role": role,
        }
    )
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(_provider)


def flush_tracing(timeout_ms: int = 5000) -> None:
    """Export what is buffered (at shutdown: a worker's last saga steps must not be lost with the process)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)
