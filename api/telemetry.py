"""The API's tracer: a span per call (method, tenant, outcome; never argument values). Set-up is shared with
the workers (engine/tracing.py)."""

from __future__ import annotations

from opentelemetry import trace

from lockzero.engine.tracing import setup_tracing

__all__ = ["setup_tracing", "tracer"]

tracer = trace.get_tracer("lockzero.api")
