"""Moving baselines of who uses a token and how often: the addresses it was used from and an exponentially
weighted rate per minute. Shared by pull tokens (dependents) and MCP keys (their write calls).

Baselines live in memory and are persisted when they change (a new address, a closed window), so ordinary use
costs no write. Each process keeps its own view; a table row is what a restarted process starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import msgspec

from lockzero.eventstore import EventStore

#: Rate windows: one minute each; the baseline is an exponentially weighted mean of past windows.
RATE_WINDOW_S: Final = 60
RATE_ALPHA: Final = 0.2
#: A window counts as anomalous above max(FACTOR × baseline, FLOOR) once the baseline has MIN_WINDOWS behind it.
RATE_FACTOR: Final = 10.0
RATE_FLOOR: Final = 30
RATE_MIN_WINDOWS: Final = 5
MAX_ADDRESSES: Final = 64
_MAX_CACHED: Final = 100_000


@dataclass
class _Baseline:
    addresses: set[str]
    windows: int
    rate: float
    window: int = -1
    count: int = 0
    flagged: bool = False
    dirty: bool = False


@dataclass(frozen=True)
class Deviation:
    kind: Literal["new_source", "rate"]
    #: new_source: the address; rate: the window's number (a fingerprint part: once per window).
    subject: str
    threshold: int = 0
    baseline: float = 0.0


class Baselines:
    """Baselines of one kind of token, kept in ``table`` (columns tenant, <id_column>, addresses, windows,
    rate_ewma)."""

    def __init__(self, store: EventStore, table: Literal["lz_pull_baseline", "lz_key_baseline"], id_column: str):
        self._store = store
        self._select = f"SELECT addresses, windows, rate_ewma FROM {table} WHERE tenant = ? AND {id_column} = ?"
        self._upsert = (
            f"INSERT INTO {table} (tenant, {id_column}, addresses, windows, rate_ewma) VALUES (?, ?, ?, ?, ?)"
            f" ON CONFLICT (tenant, {id_column}) DO UPDATE SET"
            " addresses = excluded.addresses, windows = excluded.windows, rate_ewma = excluded.rate_ewma"
        )
        self._cache: dict[tuple[str, str], _Baseline] = {}

    async def _load(self, tenant: str, token_id: str) -> _Baseline:
        key = (tenant, token_id)
        found = self._cache.get(key)
        if found is not None:
            return found
        async with self._store.reader() as tx:
            row = await tx.fetchone(self._select, (tenant, token_id))
        if row is None:
            base = _Baseline(set(), 0, 0.0)
        else:
            base = _Baseline(set(msgspec.json.decode(row[0], type=list[str])), int(row[1]), float(row[2]))
        if len(self._cache) > _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = base
        return base

    async def _save(self, tenant: str, token_id: str, base: _Baseline) -> None:
        addresses = msgspec.json.encode(sorted(base.addresses)).decode()
        async with self._store.transaction() as tx:
            await tx.execute(self._upsert, (tenant, token_id, addresses, base.windows, base.rate))
        base.dirty = False

    async def observe(self, tenant: str, token_id: str, source: str, now: datetime) -> list[Deviation]:
        """One use of the token from ``source``: learn the first address; report a later new one (once per
        address) and a window far above the baseline (once per window)."""
        base = await self._load(tenant, token_id)
        window = int(now.timestamp()) // RATE_WINDOW_S
        if window != base.window:
            if base.window >= 0:
                # Close the finished window and decay over the empty ones since (a quiet token's baseline drops).
                base.rate = base.rate * (1 - RATE_ALPHA) + RATE_ALPHA * base.count
                base.rate *= (1 - RATE_ALPHA) ** min(max(window - base.window - 1, 0), 50)
                base.windows += 1
                base.dirty = True
            base.window, base.count, base.flagged = window, 0, False
        base.count += 1
        found: list[Deviation] = []
        if source not in base.addresses and len(base.addresses) < MAX_ADDRESSES:
            if base.addresses:
                found.append(Deviation("new_source", source))
            base.addresses.add(source)
            base.dirty = True
        if base.dirty:
            await self._save(tenant, token_id, base)
        threshold = max(RATE_FACTOR * base.rate, RATE_FLOOR)
        if base.windows >= RATE_MIN_WINDOWS and not base.flagged and base.count > threshold:
            base.flagged = True
            found.append(Deviation("rate", str(window), int(threshold), base.rate))
        return found
