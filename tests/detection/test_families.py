"""Recall and precision per family on the documentation-built corpus (tests/detection/corpus_families.py):
timestamped CI logs, base64 values, HTTP Basic, driver-qualified/JDBC DB URLs, secrets under telling names.

A finding counts when its kind, line and column equal a label's; anything else reported in a family's
documents (which also hold that family's hard negatives, and half of which hold nothing else) is a false
positive of that family.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from lockzero.engine.detection import scanner
from tests.detection.corpus_families import FAMILIES, FamilyDocument, generate

SEED = 20260601
#: Floors, with the figures measured when they were set (seed SEED, 150 documents with a credential per
#: family): every family found all its credentials, so one miss in a hundred fails the test. (base64 used to
#: miss a password encoded with no name on its line, ``echo '<b64>' | base64 -d > /tmp/POSTGRES_PASSWORD``,
#: 0.953 on 300 documents; the file's name now names the value.) On 300 documents of seeds SEED, 1, 2 and 3 the
#: one miss is a password that ends in "..." (basic_auth, seed SEED), which every rule reads as elided.
#: Precision: no false positive was measured in any family, and a new one on a hash, digest, UUID or
#: placeholder is what this corpus is here to catch.
RECALL_FLOOR = {"ci_log": 0.99, "base64": 0.99, "basic_auth": 0.99, "db_url": 0.99, "named": 0.99}
PRECISION_FLOOR = 0.99


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def recall(self, family: str) -> float:
        planted = self.tp[family] + self.fn[family]
        return self.tp[family] / planted if planted else 1.0

    def precision(self, family: str) -> float:
        reported = self.tp[family] + self.fp[family]
        return self.tp[family] / reported if reported else 1.0

    def table(self) -> str:
        rows = [f"{'family':12} {'planted':>7} {'found':>6} {'missed':>6} {'false+':>6} {'recall':>7} {'precision':>9}"]
        for f in FAMILIES:
            rows.append(
                f"{f:12} {self.tp[f] + self.fn[f]:7d} {self.tp[f]:6d} {self.fn[f]:6d} {self.fp[f]:6d}"
                f" {self.recall(f):7.3f} {self.precision(f):9.3f}"
            )
        return "\n".join(rows)


def score(docs: list[FamilyDocument]) -> Score:
    s = Score()
    for fd in docs:
        d, family = fd.document, fd.family
        data = d.text.encode()
        kept = scanner.resolve(scanner.scan_formats(data))
        where = scanner.locate(data, [c.start for c in kept])
        reported = {(c.kind, *where[c.start]) for c in kept}
        labeled = {(x.kind, x.line, x.column) for x in d.labels}
        for key in labeled:
            if key in reported:
                s.tp[family] += 1
            else:
                s.fn[family] += 1
                s.misses.append(f"missed {key} in {d.name}")
        for key in reported - labeled:
            s.fp[family] += 1
            s.misses.append(f"false positive {key} in {d.name}")
    return s


def test_the_corpus_is_deterministic_and_labels_point_at_the_planted_values() -> None:
    a, b = generate(5, per_family=10), generate(5, per_family=10)
    assert [d.document.text for d in a] == [d.document.text for d in b]
    assert [d.document.text for d in a] != [d.document.text for d in generate(6, per_family=10)]
    for fd in a:
        lines = fd.document.text.split("\n")
        for x in fd.document.labels:
            assert lines[x.line - 1][x.column - 1 :].startswith(x.value.split("\n")[0]), (fd.document.name, x)
    assert {fd.family for fd in a if fd.document.labels} == set(FAMILIES)


def test_recall_and_precision_per_family() -> None:
    s = score(generate(SEED, per_family=150))
    print(f"\nnew families on the documentation corpus (seed {SEED}, 150 + 150 documents per family)\n{s.table()}")
    for line in s.misses[:20]:
        print(line)
    low_recall = [f for f in FAMILIES if s.recall(f) < RECALL_FLOOR[f]]
    low_precision = [f for f in FAMILIES if s.precision(f) < PRECISION_FLOOR]
    assert not low_recall and not low_precision, f"{low_recall} {low_precision}\n{s.table()}\n" + "\n".join(
        s.misses[:20]
    )
    assert min(s.tp[f] + s.fn[f] for f in FAMILIES) >= 150


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_hold_too(seed: int) -> None:
    s = score(generate(seed, per_family=80))
    low = [f for f in FAMILIES if s.recall(f) < RECALL_FLOOR[f] or s.precision(f) < PRECISION_FLOOR]
    assert not low, f"seed {seed}: {low}\n{s.table()}\n" + "\n".join(s.misses[:20])


def test_hard_negative_documents_alone_report_nothing() -> None:
    """Half the corpus is hard negatives only: there, every report is a false positive."""
    reported = []
    for fd in generate(SEED, per_family=150):
        if fd.document.labels:
            continue
        data = fd.document.text.encode()
        kept = scanner.resolve(scanner.scan_formats(data))
        reported += [(fd.document.name, c.detector) for c in kept]
    assert reported == []


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "attack",
    [
        # every value decodes to printable text: the decoded views are many, and scanned in one pass
        ("k: " + _b64("hello world, plain text") + "\n") * 160_000,
        # runs longer than a value may be: read once each, never decoded
        ("x=" + "QUJD" * 20_000 + "\n") * 60,
        # encodings nested deeper than they are decoded, each level a value of its own
        ("v: " + _b64("v: " + _b64("v: " + _b64("v: " + _b64("password = 'Kx8!pQ2#mZ7v'")))) + "\n") * 25_000,
        # timestamped PEM blocks whose bodies are too long to close within a key's window
        (
            "2024-05-01T12:00:00.1234567Z -----BEGIN RSA PRIVATE KEY-----\n"
            + "2024-05-01T12:00:00.1234567Z QUJDRA==\n" * 600
            + "2024-05-01T12:00:00.1234567Z -----END RSA PRIVATE KEY-----\n"
        )
        * 200,
        # values decoded into files, each line's path one long run of directories
        ("echo '" + _b64("Kx8!pQ2#mZ7vRt4w") + "' | base64 -d > /" + "d/" * 2_000 + "DB_PASSWORD\n") * 1_000,
    ],
    ids=["printable-views", "long-runs", "nested", "prefixed-pem", "decoded-into-files"],
)
def test_hostile_input_for_the_new_families_stays_linear(attack: str) -> None:
    data = attack.encode()[: 5 * 1024 * 1024]
    started = time.perf_counter()
    scanner.resolve(scanner.scan_formats(data))
    assert time.perf_counter() - started < 20
