"""Recall and precision per credential kind on the labeled corpus (tests/detection/corpus.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from lockzero.engine.detection import scanner
from lockzero.engine.detection.rules import KINDS
from tests.detection.corpus import Document, concatenated, generate

SEED = 20260601
THRESHOLD = 0.97


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def recall(self, kind: str) -> float:
        found = self.tp[kind] + self.fn[kind]
        return self.tp[kind] / found if found else 1.0

    def precision(self, kind: str) -> float:
        reported = self.tp[kind] + self.fp[kind]
        return self.tp[kind] / reported if reported else 1.0

    def table(self) -> str:
        rows = [f"{'kind':22} {'planted':>7} {'found':>6} {'missed':>6} {'false+':>6} {'recall':>7} {'precision':>9}"]
        for kind in sorted(set(self.tp) | set(self.fn) | set(self.fp)):
            rows.append(
                f"{kind:22} {self.tp[kind] + self.fn[kind]:7d} {self.tp[kind]:6d} {self.fn[kind]:6d}"
                f" {self.fp[kind]:6d} {self.recall(kind):7.3f} {self.precision(kind):9.3f}"
            )
        return "\n".join(rows)


def score(docs: list[Document]) -> Score:
    """A finding counts when its kind, line and column equal a label's; anything else reported is a false
    positive of the kind it was reported as."""
    s = Score()
    for d in docs:
        data = d.text.encode()
        kept = scanner.resolve(scanner.scan_formats(data))
        where = scanner.locate(data, [c.start for c in kept])
        reported = {(c.kind, *where[c.start]) for c in kept}
        labeled = {(x.kind, x.line, x.column) for x in d.labels}
        for key in labeled:
            if key in reported:
                s.tp[key[0]] += 1
            else:
                s.fn[key[0]] += 1
                s.misses.append(f"missed {key} in {d.name}")
        for key in reported - labeled:
            s.fp[key[0]] += 1
            s.misses.append(f"false positive {key} in {d.name}")
    return s


def test_corpus_is_deterministic_by_seed() -> None:
    a, b, c = generate(7, docs=20), generate(7, docs=20), generate(8, docs=20)
    assert [d.text for d in a] == [d.text for d in b]
    assert [d.text for d in a] != [d.text for d in c]
    text, labels = concatenated(7, 50_000)
    assert len(text.encode()) >= 50_000 and labels


def test_labels_point_at_the_planted_values() -> None:
    for d in generate(3, docs=60):
        lines = d.text.split("\n")
        for x in d.labels:
            assert lines[x.line - 1][x.column - 1 :].startswith(x.value.split("\n")[0]), (d.name, x)


def test_every_kind_is_planted() -> None:
    planted = {x.kind for d in generate(SEED, docs=100) for x in d.labels}
    assert planted == set(KINDS)


def test_recall_and_precision_per_kind() -> None:
    s = score(generate(SEED, docs=400))
    print(f"\ndetect_exposure on the labeled corpus (seed {SEED}, 400 documents)\n{s.table()}")
    for line in s.misses[:20]:
        print(line)
    low = [k for k in KINDS if s.recall(k) < THRESHOLD or s.precision(k) < THRESHOLD]
    assert not low, f"below {THRESHOLD}: {low}\n{s.table()}"
    assert min(s.tp[k] + s.fn[k] for k in KINDS) >= 40  # enough of each kind to mean something
    # No regression: before the families of test_families.py were added (timestamped CI logs, base64 values,
    # Basic settings, driver-qualified/JDBC URLs, telling names), every kind here measured 1.000 recall and
    # 1.000 precision at this seed (1,200 credentials, no miss, no false positive). One now is a regression.
    assert sum(s.fn.values()) == 0 and sum(s.fp.values()) == 0, "\n".join(s.misses[:20])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_other_seeds_hold_too(seed: int) -> None:
    s = score(generate(seed, docs=200))
    low = [k for k in KINDS if s.recall(k) < THRESHOLD or s.precision(k) < THRESHOLD]
    assert not low, f"seed {seed} below {THRESHOLD}: {low}\n{s.table()}\n" + "\n".join(s.misses[:20])
