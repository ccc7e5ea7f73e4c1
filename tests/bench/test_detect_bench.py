"""detect_exposure benchmark: scan speed on one core beside detect-secrets, on the same input, in one run.

Run with ``make bench`` (or ``pytest -s -m bench tests/bench/test_detect_bench.py``).

Input: about 10 MB of the labeled corpus (tests/detection/corpus.py: CI logs, diffs, stack traces,
.env/YAML/JSON configs with planted credentials of 22 kinds and hard negatives), fixed seed.

Rows:
- lockzero formats: the format scan exactly as detect_exposure runs it (one Hyperscan pass, RE2
  confirmation, validators, overlap resolution, line/column), on 5 MiB pieces (the API's limit per call)
  cut at line ends. Single thread.
- lockzero formats again on text with less to find: the generator's documents with hard negatives only
  (still keyword-dense: every document has several), and plain CI-log/code noise. Real logs sit between.
- lockzero managed: the managed-value matcher for a tenant of 1,000 secrets (raw, JSON, URL and three
  base64 alignments of each value: the literal set a scan builds), its build (decrypt + compile) and match
  timed apart; 50 of the values are planted in the text, and all 50 must be found.
- the same two texts scanned with the base64 assignment trigger as one Hyperscan expression (as it was
  written first) and as one expression per first character of the value (as it is now): the same findings,
  best of 5 runs each, alternating, so both figures come from the same run on the same machine state.
- lockzero formats on the families corpus (tests/detection/corpus_families.py: timestamped CI logs, base64
  values, HTTP Basic, driver-qualified/JDBC URLs, telling names, with their hard negatives): speed, and the
  strict per-family table of tests/detection/test_families.py.
- issue 17, before and after: the format scan as first written (tests/detection/reference_scan.py: every
  anchor confirmed with capture groups, every value validated afresh, Python's engine for the placeholder
  checks) beside the engine's, on the dense corpus, its hard negatives and plain logs: best of 3 runs each,
  alternating, same findings required (lines here; tests/detection/test_scan_equivalence.py compares spans).
- detect-secrets: its own file scan (``detect_secrets.core.scan.scan_file`` with the default plugins and
  filters, as ``detect-secrets scan`` runs it) on the same text written to a temporary file.

Quality beside speed: a label counts as found when a tool reports something on its line, a report counts
as correct when a label is on its line (line level: detect-secrets reports lines, not columns). Lockzero's
strict per-kind figures (kind, line and column must match) are in tests/detection/test_corpus.py.

Asserts correctness only (managed values all found), never a speed.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockzero.engine.detection import scanner
from lockzero.engine.detection.managed import ManagedMatcher, SealedVersion
from lockzero.engine.detection.rules import B64_TRIGGERS_IN_ONE, RULES
from lockzero.engine.security.crypto import MasterKey, random_secret
from tests.detection import corpus_families
from tests.detection.corpus import Label, concatenated
from tests.detection.reference_scan import Reference, locate
from tests.detection.test_families import RECALL_FLOOR, score

pytestmark = pytest.mark.bench

TARGET_BYTES = 10_000_000
PIECE = 5 * 1024 * 1024


def pieces(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(line offset, piece) of at most 5 MiB each, cut after a newline."""
    start, line = 0, 0
    while start < len(data):
        end = min(len(data), start + PIECE)
        if end < len(data):
            end = data.rfind(b"\n", start, end) + 1
        chunk = data[start:end]
        yield line, chunk
        line += chunk.count(b"\n")
        start = end


def lockzero_lines(data: bytes, compiled: scanner._Compiled | None = None) -> list[int]:
    c = compiled or scanner.compiled()
    lines: list[int] = []
    for offset, chunk in pieces(data):
        kept = scanner.resolve(scanner._scan(chunk, 0, c))
        where = scanner.locate(chunk, [c.start for c in kept])
        lines.extend(offset + where[c.start][0] for c in kept)
    return lines


def reference_lines(data: bytes, ref: Reference) -> list[int]:
    """lockzero_lines through the reference scan (the baseline of issue 17)."""
    lines: list[int] = []
    for offset, chunk in pieces(data):
        kept = scanner.resolve(ref.scan(chunk))
        where = locate(chunk, [c.start for c in kept])
        lines.extend(offset + where[c.start][0] for c in kept)
    return lines


def before_and_after(blobs: dict[str, bytes], rounds: int = 3) -> list[tuple[str, float, dict[str, float]]]:
    """(name, MB, best cpu seconds per form) for the reference scan and the engine's, run alternately."""
    ref = Reference()
    rows = []
    for name, blob in blobs.items():
        best: dict[str, float] = {}
        found: dict[str, list[int]] = {}
        for _ in range(rounds):
            for form in ("before", "now"):
                if form == "before":
                    found[form], _, cpu = timed(reference_lines, blob, ref)
                else:
                    found[form], _, cpu = timed(lockzero_lines, blob)
                best[form] = min(best.get(form, cpu), cpu)
        assert found["before"] == found["now"], name
        rows.append((name, len(blob) / 1e6, best))
    return rows


def detect_secrets_lines(text: str) -> list[int]:
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.log"
        path.write_text(text)
        with default_settings():
            return [s.line_number for s in scan_file(str(path))]


def line_quality(reported: list[int], labels: list[Label]) -> tuple[float, float]:
    labeled = {x.line for x in labels}
    found = {x.line for x in labels if x.line in set(reported)}
    correct = sum(1 for line in reported if line in labeled)
    recall = len(found) / len(labeled) if labeled else 1.0
    precision = correct / len(reported) if reported else 1.0
    return recall, precision


def timed(fn, *args):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def test_detect_throughput_beside_detect_secrets() -> None:
    text, labels = concatenated(20260601, TARGET_BYTES)
    data = text.encode()
    mb = len(data) / 1e6
    scanner.compiled()  # built once per process; not part of a scan

    # Managed values: 1,000 secrets, 50 of them planted into a copy of the text.
    rng = random.Random(1)
    keys, _ = MasterKey.generate().new_tenant_key("bench")
    values = [random_secret(rng.choice([24, 32, 40])).encode() for _ in range(1000)]
    sealed = [
        SealedVersion(f"prod/s{i}", 1, keys.seal(v, ref=f"prod/s{i}", version=1, purpose="value"), keys.fingerprint(v))
        for i, v in enumerate(values)
    ]
    lines = text.split("\n")
    planted = rng.sample(range(len(values)), 50)
    for n, i in enumerate(planted):
        at = (n + 1) * len(lines) // 52
        lines[at] = f"{lines[at]} leaked={values[i].decode()}"
    managed_data = "\n".join(lines).encode()

    ours_lines, ours_wall, ours_cpu = timed(lockzero_lines, data)
    sparse = {
        "negatives only": concatenated(7, TARGET_BYTES, per_doc=0)[0].encode(),
        "plain logs/code": concatenated(7, TARGET_BYTES, per_doc=0, with_negatives=False)[0].encode(),
    }
    sparse_rows = []
    for name, blob in sparse.items():
        reported, wall, cpu = timed(lockzero_lines, blob)
        sparse_rows.append((name, len(blob) / 1e6, wall, cpu, len(reported)))
    in_one = scanner._compile(RULES, B64_TRIGGERS_IN_ONE)
    trigger_rows = []
    for name, blob in sparse.items():
        best: dict[str, tuple[float, float]] = {}
        found: dict[str, list[int]] = {}
        for _ in range(5):
            for form, c in (("in one", in_one), ("per first char", scanner.compiled())):
                found[form], wall, cpu = timed(lockzero_lines, blob, c)
                w, p = best.get(form, (wall, cpu))
                best[form] = (min(w, wall), min(p, cpu))
        assert found["in one"] == found["per first char"]
        trigger_rows.append((name, len(blob) / 1e6, best))
    issue17 = before_and_after({"dense (labeled)": data, **sparse})
    family_docs = corpus_families.generate(20260601, per_family=300)
    family_bytes = sum(len(d.document.text.encode()) for d in family_docs)
    family_score, family_wall, family_cpu = timed(score, family_docs)
    matcher, build_wall, _ = timed(ManagedMatcher, keys, sealed)
    hits: list[object] = []
    match_wall = 0.0
    for _, chunk in pieces(managed_data):
        found, wall, _ = timed(matcher.match, chunk)
        hits.extend(found)
        match_wall += wall
    matcher.close()
    ds_lines, ds_wall, ds_cpu = timed(detect_secrets_lines, text)

    ours_q = line_quality(ours_lines, labels)
    ds_q = line_quality(ds_lines, labels)
    rows = [
        ("lockzero formats", f"{mb / ours_wall:8.1f}", f"{mb / ours_cpu:8.1f}", len(ours_lines), *ours_q),
        ("detect-secrets", f"{mb / ds_wall:8.2f}", f"{mb / ds_cpu:8.2f}", len(ds_lines), *ds_q),
    ]
    print(f"\n{mb:.1f} MB corpus, {len(labels)} planted credentials (22 kinds) plus hard negatives")
    print(f"{'tool':18} {'MB/s':>8} {'MB/s cpu':>8} {'reports':>8} {'recall':>7} {'precision':>9}  (line level)")
    for name, wall, cpu, n, recall, precision in rows:
        print(f"{name:18} {wall:>8} {cpu:>8} {n:8d} {recall:7.3f} {precision:9.3f}")
    print("lockzero formats on text with less to find (same generator):")
    for name, size, wall, cpu, n in sparse_rows:
        print(f"  {name:16} {size:5.1f} MB  {size / wall:7.1f} MB/s  {size / cpu:7.1f} MB/s cpu  {n} reports")
    print("base64 assignment trigger, one expression vs one per first character (best of 5, same findings):")
    for name, size, best in trigger_rows:
        cells = [f"{form} {size / w:7.1f} MB/s ({size / p:7.1f} cpu)" for form, (w, p) in best.items()]
        print(f"  {name:16} " + "   ".join(cells))
    print("issue 17: format scan as first written vs now (MB/s cpu, best of 3, alternating, same findings):")
    for name, size, best in issue17:
        before, now = size / best["before"], size / best["now"]
        print(f"  {name:16} {size:5.1f} MB  before {before:7.1f}  now {now:7.1f}  x{now / before:.1f}")
    print(
        f"lockzero formats on the families corpus: {family_bytes / 1e6:.1f} MB in {len(family_docs)} documents,"
        f" {family_bytes / 1e6 / family_wall:.1f} MB/s, {family_bytes / 1e6 / family_cpu:.1f} MB/s cpu"
        " (per-document scans, as detect_exposure is called)"
    )
    print(family_score.table())
    print(
        f"lockzero managed: 1,000 secrets -> matcher built (decrypt + literal compile) in {build_wall * 1000:.0f} ms,"
        f" matched {len(managed_data) / 1e6:.1f} MB at {len(managed_data) / 1e6 / match_wall:.0f} MB/s,"
        f" {len({h.secret_id for h in hits})}/50 planted values found"  # type: ignore[attr-defined]
    )
    print(f"speed-up over detect-secrets: {ds_wall / ours_wall:.0f}x")
    assert {h.secret_id for h in hits} == {f"prod/s{i}" for i in planted}  # type: ignore[attr-defined]
    # The families are still found at speed (floors as in tests/detection/test_families.py).
    assert all(family_score.recall(f) >= RECALL_FLOOR[f] for f in corpus_families.FAMILIES), family_score.table()
