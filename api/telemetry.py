"""OpenTelemetry: a span per call (method, tenant, outcome; never argument values).

Tracing is off unless an OTEL_* exporter variable is set; then the OTLP exporter reads the standard
OTEL_* variables itself if installed, else spans go to the console exporter when
OTEL_TRACES_EXPORTER=console.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

_configured = False


def _exporter() -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if kind == "console":
        return ConsoleSpanExporter()
    if kind in ("", "otlp") and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            return None
        return OTLPSpanExporter()
    return None


def setup_tracing() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    exporter = _exporter()
    if exporter is None:
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "lockzero")})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


tracer = trace.get_tracer("lockzero.api")
