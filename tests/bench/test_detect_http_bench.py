"""detect_exposure over HTTP (issue 17's measure): 4 MiB payloads through the real `lockzero serve`.

Run with ``make bench`` (or ``pytest -s -m bench tests/bench/test_detect_http_bench.py``).

One `lockzero serve` on SQLite (rate limit off), one tenant with MANAGED secrets and a read-write key.
Each payload is 4 MiB cut at a line end from tests/detection/corpus.py's generator: the dense labeled
corpus (a credential every ~400 bytes), its hard negatives only, and plain CI-log/code noise. A client
sends each as a direct JSON-RPC ``detect_exposure`` call, ROUNDS times in turn; the table shows the best
round (MB/s of payload per call, wall time on the client: HTTP, JSON decoding, the server's scan, managed
matching, overlap resolution, line/column, the answer) beside, in this process: detect_exposure called
on an engine (its own SQLite store, as many managed secrets: the server's work without HTTP and JSON),
the format scan alone (overlap resolution and line/column included), and the reference scan of
tests/detection/reference_scan.py (the format scan as first written).

Asserts correctness only (every call answered, the dense payload's findings listed up to the cap),
never a speed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockzero.engine.app import Engine
from lockzero.engine.commands import tenants
from lockzero.engine.detection import scanner
from lockzero.engine.detection.exposure import MAX_FINDINGS, detect_exposure
from lockzero.engine.security.crypto import MasterKey
from lockzero.eventstore import open_store
from tests.api.support import Server, start_server
from tests.detection.corpus import concatenated
from tests.detection.reference_scan import Reference, locate
from tests.detection.test_managed import add_secret
from tests.engine.support import OPERATOR, ManualClock

pytestmark = pytest.mark.bench

PAYLOAD = 4 * 1024 * 1024
ROUNDS = 3
MANAGED = 50


def payload(text: str) -> str:
    """The first 4 MiB of ``text`` (UTF-8), cut after a newline."""
    data = text.encode()[:PAYLOAD]
    return data[: data.rfind(b"\n") + 1].decode()


def payloads() -> dict[str, str]:
    return {
        "dense (labeled)": payload(concatenated(20260601, PAYLOAD + 200_000)[0]),
        "negatives only": payload(concatenated(7, PAYLOAD + 200_000, per_doc=0)[0]),
        "plain logs/code": payload(concatenated(7, PAYLOAD + 200_000, per_doc=0, with_negatives=False)[0]),
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server("sqlite", tmp_path, f"sqlite:///{tmp_path / 'lockzero.db'}")
    try:
        yield s
    finally:
        s.stop()


def in_process(data: bytes) -> int:
    kept = scanner.resolve(scanner.scan_formats(data))
    scanner.locate(data, [c.start for c in kept])
    return len(kept)


def reference(data: bytes, ref: Reference) -> int:
    kept = scanner.resolve(ref.scan(data))
    locate(data, [c.start for c in kept])
    return len(kept)


async def engine_calls(texts: dict[str, str], tmp: Path) -> dict[str, float]:
    """Best seconds per payload of detect_exposure called in this process (an engine on its own SQLite
    store, a tenant with as many managed secrets): the server's work without HTTP and JSON."""
    engine = Engine(await open_store(f"sqlite:///{tmp / 'in-process.db'}"), MasterKey.generate(), ManualClock())
    try:
        await engine.migrate()
        await tenants.create_tenant(engine, "bench", OPERATOR)
        for i in range(MANAGED):
            await add_secret(engine, "bench", f"prod/bench/s{i}", f"managed-{i}-Zq8rT2vXk9LmN4pW".encode())
        best: dict[str, float] = {}
        for _ in range(ROUNDS):
            for name, text in texts.items():
                started = time.perf_counter()
                await detect_exposure(engine, "bench", OPERATOR, text)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
        return best
    finally:
        await engine.close()


def best_of(rounds: int, fn, *args) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - started)
    return best, out


def test_detect_exposure_over_http_on_4_mib_payloads(server: Server, tmp_path: Path) -> None:
    s = server
    tenant = s.tenant("bench")
    key = s.key(tenant)
    rng = random.Random(3)
    for i in range(MANAGED):
        value = "".join(rng.choice("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(32))
        s.secret(tenant, f"prod/bench/s{i}", value=value.encode())
    texts = payloads()
    scanner.compiled()
    ref = Reference()
    s.http.timeout = httpx.Timeout(120.0)  # a dense payload's reference scan alone takes seconds on a slow machine
    s.call(key, "detect_exposure", {"text": "warm-up: password=Zq8rT2vXk9LmN4pW\n"}).raise_for_status()

    rows = []
    best_http: dict[str, float] = {}
    answers: dict[str, dict[str, object]] = {}
    # Encoded once, outside the timing: the client's JSON encoder is not what is measured.
    bodies = {
        name: json.dumps({"jsonrpc": "2.0", "id": 1, "method": "detect_exposure", "params": {"text": text}}).encode()
        for name, text in texts.items()
    }
    for _ in range(ROUNDS):
        for name, body_bytes in bodies.items():
            started = time.perf_counter()
            r = s.post(key=key, content=body_bytes)
            wall = time.perf_counter() - started
            r.raise_for_status()
            body = r.json()
            assert "result" in body, body.get("error")
            answers[name] = body["result"]
            best_http[name] = min(best_http.get(name, wall), wall)
    engine_s = asyncio.run(engine_calls(texts, tmp_path))
    for name, text in texts.items():
        data = text.encode()
        here, found = best_of(ROUNDS, in_process, data)
        before, _ = best_of(ROUNDS, reference, data, ref)
        rows.append((name, len(data), best_http[name], engine_s[name], here, before, found))
        assert answers[name]["scanned_bytes"] == len(data)

    print(f"\ndetect_exposure, {PAYLOAD >> 20} MiB payloads, best of {ROUNDS} (MB/s of payload):")
    print(f"{'payload':18} {'HTTP call':>10} {'engine call':>12} {'format scan':>12} {'reference':>10} {'findings':>9}")
    for name, size, http_s, engine_call_s, here_s, before_s, found in rows:
        mb = size / 1e6
        print(
            f"{name:18} {mb / http_s:10.1f} {mb / engine_call_s:12.1f} {mb / here_s:12.1f} {mb / before_s:10.1f}"
            f" {found:9}"
        )
    dense = answers["dense (labeled)"]["findings"]
    assert isinstance(dense, list) and len(dense) == MAX_FINDINGS
