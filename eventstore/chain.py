"""The per-tenant hash chain over events (audit records are events of ``audit-<tenant>``).

Every event appended after the chain migration carries ``chain_seq`` (1, 2, … within its tenant's
chain) and ``chain_hash`` = SHA-256 over canonical bytes of the event and the previous hash of that
chain. ``lz_chain_heads`` holds each chain's last (seq, position, hash), written in the append's own
transaction. PostgreSQL computes the hash inside ``lz_append_batch`` (migration eventstore:3); SQLite
in :func:`link_rows`; both must produce the bytes of :func:`canonical` exactly, and the tests check it.

A plain hash chain proves order and integrity against edits of single rows; someone who rewrites a
whole chain can recompute it, which is what the signed, witnessed checkpoints (engine/audit/chain.py)
are for. Values are never in events (they live in lz_secret_versions), so crypto-shredding a value
does not touch the chain.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lockzero.eventstore.interface import Transaction

GENESIS = bytes(32)
SYSTEM_CHAIN = "_system"
#: Mirrors the SQL ``coalesce(substring(stream from '^[a-z]+-([^/]+)'), '_system')``: the tenant of
#: `secret-<tenant>/<id>`, `audit-<tenant>`, … Tenant names hold no '/', so the match is exact.
_CHAIN_OF = re.compile(r"[a-z]+-([^/]+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAGIC = b"LZC1"


def chain_of(stream: str) -> str:
    m = _CHAIN_OF.match(stream)
    return m.group(1) if m else SYSTEM_CHAIN


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _field(b: bytes) -> bytes:
    # Length-prefixed: no field can bleed into the next, whatever bytes it holds.
    return struct.pack(">I", len(b)) + b


def canonical(
    prev: bytes,
    position: int,
    seq: int,
    stream: str,
    version: int,
    event_id: uuid.UUID,
    type_: str,
    data: bytes,
    metadata: bytes,
    recorded_at: datetime,
) -> bytes:
    return b"".join(
        (
            _MAGIC,
            prev,
            struct.pack(">qq", position, seq),
            _field(stream.encode()),
            struct.pack(">i", version),
            event_id.bytes,
            _field(type_.encode()),
            _field(data),
            _field(metadata),
            struct.pack(">q", _micros(recorded_at)),
        )
    )


def link(prev: bytes, *content: Any) -> bytes:
    return hashlib.sha256(canonical(prev, *content)).digest()


#: SQLite: the store's head position and the chain's head in one statement (one round trip to the
#: connection's thread instead of two); the head columns are NULL for a chain's first record.
HEADS_SQL = (
    "SELECT (SELECT COALESCE(MAX(position), 0) FROM lz_events), h.seq, h.hash"
    " FROM (SELECT 1) LEFT JOIN lz_chain_heads h ON h.chain = ?"
)


def link_rows(
    rows: Sequence[tuple[Any, ...]], at: datetime, seq: int | None, prev: bytes | None
) -> list[tuple[Any, ...]]:
    """SQLite: extend ``rows`` (position, stream, version, event_id, type, data, metadata, recorded_at) with
    (chain_seq, chain_hash, chain), continuing from the chain's head (seq, hash) as read by :data:`HEADS_SQL`
    inside the same write transaction (None, None for a new chain). Inserted through the view
    ``lz_chained_events`` (migration eventstore:5), whose trigger writes the event and moves the chain's head
    in the same statement."""
    seq, prev = (int(seq), bytes(prev)) if seq is not None and prev is not None else (0, GENESIS)
    out: list[tuple[Any, ...]] = []
    for r in rows:
        seq += 1
        prev = link(prev, r[0], seq, r[1], r[2], uuid.UUID(str(r[3])), r[4], r[5], r[6], at)
        out.append((*r, seq, prev, chain_of(r[1])))
    return out


# --------------------------------------------------------------------------------------------------
# verification


@dataclass(frozen=True)
class Failure:
    chain: str
    position: int
    kind: str  # modified | deleted | inserted | reordered
    detail: str

    def line(self) -> str:
        return f"position {self.position}: {self.kind} ({self.detail}) in the chain of tenant {self.chain!r}"


@dataclass
class ChainState:
    seq: int = 0
    hash: bytes = GENESIS
    position: int = 0
    records: int = 0
    legacy: int = 0
    failed: bool = False


@dataclass
class VerifyReport:
    chains: dict[str, ChainState] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    #: The last position the walk read (``since`` - 1 when it read none).
    last_position: int = 0
    #: Whether the walk read every record up to ``until`` (the last one when None); a ``limit`` can stop it before.
    reached_end: bool = True

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first(self) -> Failure | None:
        return min(self.failures, key=lambda f: f.position) if self.failures else None

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains.values())


_ROW = "position, stream, version, event_id, type, data, metadata, recorded_at, chain_seq, chain_hash"
_PAGE = 2000


def _uuid(v: Any) -> uuid.UUID:
    return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))


def _time(v: Any) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))


def _like_prefilter(tenant: str) -> str:
    # A superset of the tenant's streams for SQL (the exact test is chain_of in Python).
    return "%-" + tenant.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class _Verifier:
    def __init__(
        self,
        tx: Transaction,
        tenant: str | None,
        since: int,
        start: int,
        anchors: Mapping[str, ChainState] | None = None,
        limit: int | None = None,
        until: int | None = None,
    ) -> None:
        self.tx = tx
        self.tenant = tenant
        self.since = since
        self.anchors = anchors
        self.limit = limit
        self.until = until
        #: Events at or below this position predate the chain (the migration that added it).
        self.start = start
        self.report = VerifyReport()
        self.heads: dict[str, tuple[int, int, bytes]] = {}

    def _mine(self, chain: str) -> bool:
        return self.tenant is None or chain == self.tenant

    def _fail(self, state: ChainState, chain: str, position: int, kind: str, detail: str) -> None:
        state.failed = True
        self.report.failures.append(Failure(chain, position, kind, detail))

    async def _chain_rows_with_seq(self, chain: str, seq: int, after: int) -> list[int]:
        rows = await self.tx.fetchall(
            "SELECT position, stream FROM lz_events WHERE chain_seq = ? AND position > ? ORDER BY position",
            (seq, after),
        )
        return [int(p) for p, s in rows if chain_of(s) == chain]

    async def _missing(self, after: int, before: int) -> list[int]:
        rows = await self.tx.fetchall(
            "SELECT position FROM lz_events WHERE position > ? AND position < ? ORDER BY position", (after, before)
        )
        present = {int(r[0]) for r in rows}
        # Lazily: ``before`` comes from a head row, which a forger may set to any number.
        first = next((p for p in range(after + 1, before) if p not in present), None)
        return [] if first is None else [first]

    async def run(self) -> VerifyReport:
        for chain, seq, pos, h in await self.tx.fetchall("SELECT chain, seq, position, hash FROM lz_chain_heads"):
            self.heads[chain] = (int(seq), int(pos), bytes(h))
        if self.anchors is not None:
            self.report.chains = {
                c: ChainState(seq=s.seq, hash=s.hash, position=s.position, failed=s.failed)
                for c, s in self.anchors.items()
                if self._mine(c)
            }
        elif self.since > 1:
            await self._anchor()
        where = "position >= ?"
        params: list[object] = [self.since]
        if self.until is not None:
            where += " AND position <= ?"
            params.append(self.until)
        if self.tenant is not None:
            where += " AND stream LIKE ? ESCAPE '\\'"
            params.append(_like_prefilter(self.tenant))
        after = self.since - 1
        # Whole-store runs also check that global positions are gap-free (they are, by construction).
        expect_pos = max(self.since, 1) if self.tenant is None else None
        left = self.limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            rows = await self.tx.fetchall(
                f"SELECT {_ROW} FROM lz_events WHERE {where} AND position > ? ORDER BY position LIMIT ?",
                (*params, after, page),
            )
            if left is not None:
                left -= len(rows)
            if not rows:
                break
            for row in rows:
                position = int(row[0])
                if expect_pos is not None:
                    if position > expect_pos:
                        self.report.failures.append(
                            Failure("?", expect_pos, "deleted", f"positions {expect_pos}..{position - 1} are missing")
                        )
                    expect_pos = position + 1
                await self._row(row)
            after = int(rows[-1][0])
            if len(rows) < page:
                break
        self.report.last_position = after
        self.report.reached_end = left is None or left > 0
        await self._tails()
        return self.report

    async def _anchor(self) -> None:
        """--since: trust each chain's last record before the start position, verify from there on."""
        rows = await self.tx.fetchall(
            "SELECT position, stream, chain_seq, chain_hash FROM lz_events"
            " WHERE position < ? AND chain_seq IS NOT NULL ORDER BY position",
            (self.since,),
        )
        for position, stream, seq, h in rows:
            chain = chain_of(stream)
            if self._mine(chain):
                self.report.chains[chain] = ChainState(seq=int(seq), hash=bytes(h), position=int(position))

    async def _row(self, row: tuple[Any, ...]) -> None:
        position, stream = int(row[0]), str(row[1])
        chain = chain_of(stream)
        if not self._mine(chain):
            return
        state = self.report.chains.setdefault(chain, ChainState())
        if state.failed:
            return
        seq, stored = row[8], row[9]
        if seq is None or stored is None:
            if position <= self.start:
                state.legacy += 1
                return
            self._fail(state, chain, position, "inserted", "a record without a chain link after the chain began")
            return
        seq, stored = int(seq), bytes(stored)
        expected = state.seq + 1
        if seq > expected:
            later = await self._chain_rows_with_seq(chain, expected, position)
            if later:
                self._fail(
                    state, chain, position, "reordered", f"holds record #{seq}; record #{expected} is at {later[0]}"
                )
            else:
                gone = await self._missing(state.position, position)
                at = gone[0] if gone else position
                self._fail(state, chain, at, "deleted", f"records #{expected}..#{seq - 1} are missing")
            return
        if seq < expected:
            self._fail(state, chain, position, "inserted", f"repeats record #{seq}")
            return
        content = (position, seq, stream, int(row[2]), _uuid(row[3]), str(row[4]), bytes(row[5]), bytes(row[6]))
        computed = link(state.hash, *content, _time(row[7]))
        if computed != stored:
            twins = await self._chain_rows_with_seq(chain, seq, position)
            head = self.heads.get(chain)
            if twins or (head is not None and head[0] < seq):
                self._fail(state, chain, position, "inserted", f"a forged record #{seq}")
            else:
                self._fail(state, chain, position, "modified", f"record #{seq} does not match its hash")
            return
        state.seq, state.hash, state.position = seq, stored, position
        state.records += 1

    async def _head_beyond(self, chain: str, seq: int, position: int, h: bytes) -> None:
        """A head past ``until`` names a record this walk did not reach: that record must be there, and be it."""
        row = await self.tx.fetchone(
            "SELECT stream, chain_seq, chain_hash FROM lz_events WHERE position = ?", (position,)
        )
        state = self.report.chains.setdefault(chain, ChainState())
        if state.failed:
            return
        if row is None or chain_of(str(row[0])) != chain or row[1] is None or int(row[1]) != seq:
            self._fail(state, chain, position, "deleted", f"record #{seq}, the recorded head, is not at {position}")
        elif bytes(row[2]) != h:
            self._fail(state, chain, position, "modified", "the chain head does not match its record")

    async def _tails(self) -> None:
        """The head table must agree with the last record: a truncated tail shows here. A walk that stopped
        before the last record (``limit``, ``until``) holds to this only the heads at or before where it stopped."""
        if not self.report.reached_end:
            read_to: float = self.report.last_position
        else:
            read_to = float("inf") if self.until is None else max(self.until, self.report.last_position)
        for chain, (seq, position, h) in self.heads.items():
            if not self._mine(chain):
                continue
            if position > read_to:
                if self.until is not None and self.report.reached_end:
                    await self._head_beyond(chain, seq, position, h)
                continue
            state = self.report.chains.setdefault(chain, ChainState())
            if state.failed:
                continue
            if seq > state.seq:
                gone = await self._missing(state.position, position + 1)
                at = gone[0] if gone else position
                self._fail(state, chain, at, "deleted", f"records #{state.seq + 1}..#{seq} (the tail) are missing")
            elif seq < state.seq:
                self._fail(state, chain, state.position, "inserted", f"records after #{seq}, the recorded head")
            elif h != state.hash or position != state.position:
                self._fail(state, chain, position, "modified", "the chain head does not match the last record")
        for chain, state in self.report.chains.items():
            # state.seq: a chain the walk took from its anchors, with no record in this walk, must have a head too.
            if chain not in self.heads and (state.records or state.seq) and not state.failed:
                self._fail(state, chain, state.position, "inserted", "records of a chain that has no head")


async def verify_chain(
    tx: Transaction,
    *,
    tenant: str | None = None,
    since: int = 0,
    anchors: Mapping[str, ChainState] | None = None,
    limit: int | None = None,
    until: int | None = None,
) -> VerifyReport:
    """Walk the chains (one tenant's, or all) from position ``since``; the report names every chain's
    first bad record. Reads only: run it on a snapshot (EventStore.snapshot), so that records appended
    meanwhile are not taken for forged ones.

    ``anchors`` are the chain states an earlier walk ended on (its report's ``chains``), trusted as the
    records before ``since`` instead of reading those; ``limit`` stops the walk after that many records and
    ``until`` after that position (a slice of the history: only the chain heads it passed are checked)."""
    row = await tx.fetchone("SELECT position FROM lz_chain_start WHERE id = 1")
    return await _Verifier(tx, tenant, max(since, 0), int(row[0]) if row else 0, anchors, limit, until).run()
