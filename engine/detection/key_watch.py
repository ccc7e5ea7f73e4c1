"""MCP keys used unlike themselves: a key's write calls from a new address, or far above its own rate.

The evidence joins the usage_anomaly incident of the secret the write call named (every write tool names one), so
the people who own that secret see it, and the secret's ``on_anomaly`` policy decides what happens next. The
baseline is per key, so a key that moves to a new address raises one anomaly, not one per call or per secret.
"""

from __future__ import annotations

import logging

from lockzero.engine.app import Engine
from lockzero.engine.commands.rotations import SagaQueue
from lockzero.engine.detection.anomalies import Evidence, record_deviations
from lockzero.engine.detection.baselines import Baselines, Deviation
from lockzero.engine.domain.errors import LockzeroError
from lockzero.eventstore import EventStoreError

log = logging.getLogger("lockzero.anomalies")


class KeyWatch:
    """One per API process, fed by every successful write call."""

    def __init__(self, engine: Engine, queue: SagaQueue | None = None) -> None:
        self.engine = engine
        self.queue = queue
        self._baselines = Baselines(engine.store, "lz_key_baseline", "key_id")

    async def wrote(self, tenant: str, key_id: str, secret_id: str, method: str, source: str) -> None:
        """Never fails the call it watches: a watch that cannot write is logged and skipped."""
        if not source:
            return  # an in-process caller (tests, the CLI): no address to learn
        try:
            await self._observe(tenant, key_id, secret_id, method, source)
        except (EventStoreError, LockzeroError, OSError) as exc:
            log.warning("key watch of %s skipped (%s)", key_id, type(exc).__name__)

    async def _observe(self, tenant: str, key_id: str, secret_id: str, method: str, source: str) -> None:
        def describe(deviation: Deviation, epoch: str) -> tuple[Evidence, str]:
            if deviation.kind == "new_source":
                detail = f"MCP key {key_id} called {method} from a new address {source}"
                fingerprint = f"key_new_source:{key_id}:{source}:{epoch}"
                summary = f"MCP key {key_id} made write calls from a new address {source}"
                return Evidence("mcp_key_new_source", "MCP endpoint", detail, fingerprint), summary
            detail = (
                f"MCP key {key_id} made over {deviation.threshold} write calls in a minute;"
                f" its baseline is {deviation.baseline:.1f} a minute"
            )
            fingerprint = f"key_rate:{key_id}:{deviation.subject}:{epoch}"
            summary = f"MCP key {key_id} made write calls far above its own rate"
            return Evidence("mcp_key_rate", "MCP endpoint", detail, fingerprint), summary

        found = await self._baselines.observe(tenant, key_id, source, self.engine.clock.now())
        await record_deviations(self.engine, self.queue, tenant, secret_id, found, describe, "high")
