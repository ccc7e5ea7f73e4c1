"""`lockzero backup` and `lockzero restore`: the event store and its side tables, from one snapshot, encrypted.

What is copied: every table except the read models (PROJECTION_TABLES: restore rebuilds them by replaying the
events), the migration history (the target's own migrate writes it) and PostgreSQL's append head (derived: the
last position). So the events with their hash-chain columns, the chain heads, the wrapped tenant keys, the
sealed values and configs, checkpoints, sessions and the other side tables travel, including tables that later
releases add, with no list to keep up to date here.

Restore runs in one transaction on an empty store: rows, then the append head, then a replay that rebuilds every
read model; a backup that fails authentication part-way leaves the store as it was.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import msgspec

from lockzero.engine.app import Engine
from lockzero.engine.domain.errors import Conflict, InvalidInput, Unavailable
from lockzero.engine.readmodels import projections
from lockzero.engine.readmodels.schema import PROJECTION_TABLES
from lockzero.engine.security.backup_format import BackupInvalid, ChunkWriter, KeySource, read_chunks, read_header
from lockzero.engine.security.crypto import CryptoError, MasterKey
from lockzero.eventstore import Dialect, RecordedEvent, Transaction
from lockzero.eventstore.chain import verify_chain
from lockzero.eventstore.common import replay_pages
from lockzero.eventstore.snapshot import open_snapshot

ROWS_PER_CHUNK = 500
#: Not copied: written by the target's own migrate, or derived from the events.
SKIPPED = frozenset({"lz_schema_migrations", "lz_event_head"})
#: Rows the target's migrations already inserted (single-row state): restore replaces them.
SEEDED = frozenset({"lz_chain_start"})
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RowsFrame(msgspec.Struct, array_like=True, tag="rows"):
    table: str
    columns: list[str]
    rows: list[list[Any]]


class EndFrame(msgspec.Struct, array_like=True, tag="end"):
    counts: dict[str, int]


Frame = RowsFrame | EndFrame
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


@dataclass(frozen=True)
class BackupSummary:
    path: str
    source: str
    key: str
    rows: dict[str, int]
    bytes: int


@dataclass(frozen=True)
class RestoreSummary:
    source: str
    created_at: str
    rows: dict[str, int]
    events_replayed: int
    audit_chain_ok: bool
    audit_chain_problem: str | None = None


class _Reads(Protocol):
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


async def list_tables(tx: _Reads, dialect: Dialect) -> list[str]:
    if dialect == "sqlite":
        rows = await tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        return sorted(str(r[0]) for r in rows if not str(r[0]).startswith("sqlite_"))
    rows = await tx.fetchall(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    )
    return sorted(str(r[0]) for r in rows)


async def table_columns(tx: _Reads, dialect: Dialect, table: str) -> list[str]:
    if dialect == "sqlite":
        rows = await tx.fetchall("SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,))
    else:
        rows = await tx.fetchall(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
    return [str(r[0]) for r in rows]


def copied_tables(tables: Sequence[str]) -> list[str]:
    """The tables a backup holds, events first (restore reads them in file order)."""
    keep = [t for t in tables if t not in SKIPPED and t not in PROJECTION_TABLES and _NAME.fullmatch(t)]
    return sorted(keep, key=lambda t: (t != "lz_events", t))


def _plain(value: Any) -> Any:
    # Portable between the backends: PostgreSQL hands out datetimes and UUIDs where SQLite stores text.
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def _check_tenant_keys(master_key: MasterKey, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    tenant_at, wrapped_at = columns.index("tenant"), columns.index("wrapped_key")
    for row in rows:
        try:
            master_key.unwrap_tenant_key(str(row[tenant_at]), bytes(row[wrapped_at]))
        except CryptoError:
            raise BackupInvalid(
                f"tenant {row[tenant_at]!r}'s key is wrapped by another master key: set LOCKZERO_MASTER_KEY"
                " (or LOCKZERO_MASTER_KEY_FILE) to the master key of the store the backup was made from"
            ) from None


def _open_new(out: Path) -> tuple[Path, BinaryIO]:
    """``<out>.partial``, created owner-only; ``out`` itself must not exist yet."""
    if out.exists():
        raise InvalidInput(f"--out {out} already exists; choose a new file name")
    partial = out.with_name(out.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{partial} exists: another backup is being written, or remove it") from None
    except OSError as exc:
        raise InvalidInput(f"--out {out}: cannot create it ({exc.strerror})") from None
    return partial, os.fdopen(fd, "wb")


def _publish(fh: BinaryIO, partial: Path, out: Path) -> int:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    os.replace(partial, out)
    return out.stat().st_size


async def create_backup(database_url: str, master_key: MasterKey, keys: KeySource, out: Path) -> BackupSummary:
    """Write the store at ``database_url`` to ``out`` (a new file, mode 0600), from one snapshot.

    The file appears only when complete: it is written as ``<out>.partial`` and renamed at the end."""
    counts: Counter[str] = Counter()
    partial, fh = _open_new(out)
    try:
        async with open_snapshot(database_url) as snap:
            tables = await list_tables(snap, snap.dialect)
            if "lz_events" not in tables or "lz_tenant_keys" not in tables:
                raise Unavailable("the database schema is not migrated; there is nothing to back up")
            migrations = [
                (str(ns), int(v))
                for ns, v in await snap.fetchall(
                    "SELECT namespace, version FROM lz_schema_migrations ORDER BY namespace, version"
                )
            ]
            header = keys.new_header(datetime.now(UTC).isoformat(), snap.dialect, migrations)
            writer = ChunkWriter(fh, keys, header)
            for table in copied_tables(tables):
                columns = await table_columns(snap, snap.dialect, table)
                order = " ORDER BY position" if table == "lz_events" else ""
                counts[table] += 0
                async for batch in snap.stream(f"SELECT {', '.join(columns)} FROM {table}{order}", ROWS_PER_CHUNK):
                    rows = [[_plain(v) for v in r] for r in batch]
                    if table == "lz_tenant_keys":
                        _check_tenant_keys(master_key, columns, rows)
                    writer.write(_encoder.encode(RowsFrame(table, columns, rows)))
                    counts[table] += len(rows)
            writer.write(_encoder.encode(EndFrame(dict(counts))), final=True)
        size = _publish(fh, partial, out)
    except BaseException:
        fh.close()
        partial.unlink(missing_ok=True)
        raise
    return BackupSummary(str(out), header.source, header.key, dict(counts), size)


def _recorded(row: tuple[Any, ...]) -> RecordedEvent:
    at = row[7] if isinstance(row[7], datetime) else datetime.fromisoformat(str(row[7]))
    event_id = row[3] if isinstance(row[3], uuid.UUID) else uuid.UUID(str(row[3]))
    return RecordedEvent(
        position=int(row[0]),
        stream=str(row[1]),
        version=int(row[2]),
        event_id=event_id,
        type=str(row[4]),
        data=bytes(row[5]),
        metadata=bytes(row[6]),
        recorded_at=at,
    )


async def _not_empty(tx: _Reads, dialect: Dialect, tables: Sequence[str]) -> str | None:
    """The first table that holds rows (other than rows seeded by migrations), or None."""
    for table in tables:
        if table in SEEDED:
            continue
        if await tx.fetchall(f"SELECT 1 FROM {table} LIMIT 1"):
            return table
    return None


def _refuse_not_empty(table: str) -> Conflict:
    return Conflict(
        f"the target store is not empty ({table} holds rows): restore only into a new, empty database"
        " (a fresh PostgreSQL database, or a new LOCKZERO_DATABASE_URL sqlite file)"
    )


async def restore_backup(engine: Engine, master_key: MasterKey, source: BinaryIO, keys: KeySource) -> RestoreSummary:
    """Restore ``source`` into the empty store of ``engine`` (migrating it first), then rebuild the read models."""
    header, raw_header = read_header(source)
    dialect = engine.store.dialect
    async with engine.store.reader() as tx:
        existing = await list_tables(tx, dialect)
        # Before migrate: a refused restore must not even upgrade someone else's schema.
        if (table := await _not_empty(tx, dialect, copied_tables(existing))) is not None:
            raise _refuse_not_empty(table)
    await engine.migrate()
    async with engine.store.reader() as tx:
        have = {(str(ns), int(v)) for ns, v in await tx.fetchall("SELECT namespace, version FROM lz_schema_migrations")}
    unknown = [f"{ns}:{v}" for ns, v in header.migrations if (ns, v) not in have]
    if unknown:
        raise BackupInvalid(
            f"the backup was made by a newer Lockzero (schema steps {', '.join(unknown[:3])} are unknown here);"
            " restore it with that release or a later one"
        )
    counts: Counter[str] = Counter()
    expected: dict[str, int] | None = None
    async with engine.store.transaction() as tx:
        if dialect == "postgresql":
            # Appends wait on the head row until the restore commits (a server already pointed at the new store).
            await tx.execute("SELECT position FROM lz_event_head WHERE id = 1 FOR UPDATE")
        tables = await list_tables(tx, dialect)
        targets = set(copied_tables(tables))
        if (table := await _not_empty(tx, dialect, sorted(targets))) is not None:
            raise _refuse_not_empty(table)
        columns_of = {t: set(await table_columns(tx, dialect, t)) for t in targets}
        for plaintext in read_chunks(source, keys, header, raw_header):
            try:
                frame = _decoder.decode(plaintext)
            except msgspec.DecodeError:
                raise BackupInvalid("a chunk of the backup does not hold what this release expects") from None
            if expected is not None:
                raise BackupInvalid("the backup has chunks after its end marker")
            if isinstance(frame, EndFrame):
                expected = frame.counts
                continue
            await _insert(tx, frame, targets, columns_of, master_key, first=frame.table not in counts)
            counts[frame.table] += len(frame.rows)
        if (
            expected is None
            or any(expected.get(t, 0) != n for t, n in counts.items())
            or sum(expected.values()) != sum(counts.values())
        ):
            raise BackupInvalid("the backup's row counts do not match its end marker")
        if dialect == "postgresql":
            await tx.execute("UPDATE lz_event_head SET position = (SELECT COALESCE(MAX(position), 0) FROM lz_events)")
            # As an append does: servers already on this store count the head from the notification at commit.
            await tx.execute("SELECT pg_notify('lz_events', position::text) FROM lz_event_head WHERE id = 1")
        replayed = await replay_pages(tx, projections.reset, projections.project, 5000, _recorded)
        report = await verify_chain(tx)
    first = report.first
    return RestoreSummary(
        header.source,
        header.created_at,
        dict(counts),
        replayed,
        report.ok,
        first.line() if first is not None else None,
    )


async def _insert(
    tx: Transaction,
    frame: RowsFrame,
    targets: set[str],
    columns_of: dict[str, set[str]],
    master_key: MasterKey,
    *,
    first: bool,
) -> None:
    table = frame.table
    if table not in targets:
        raise BackupInvalid(f"the backup holds table {table!r}, which this release's schema does not have")
    missing = [c for c in frame.columns if c not in columns_of[table] or not _NAME.fullmatch(c)]
    if missing:
        raise BackupInvalid(f"the backup's table {table} has column {missing[0]!r}, unknown to this schema")
    if any(len(r) != len(frame.columns) for r in frame.rows):
        raise BackupInvalid(f"a row of {table} in the backup has the wrong number of values")
    if table == "lz_tenant_keys":
        _check_tenant_keys(master_key, frame.columns, frame.rows)
    if first and table in SEEDED:
        await tx.execute(f"DELETE FROM {table}")
    if frame.rows:
        marks = ", ".join("?" for _ in frame.columns)
        await tx.executemany(f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({marks})", frame.rows)
