"""The benchmarks' own statistics (not a benchmark: runs with `make test`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bench.saga_support import median, median_interval


@pytest.mark.parametrize(
    ("n", "ranks"),
    # The usual table of 95% confidence intervals for a median by order statistics (1-based ranks).
    [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (30, (10, 21)), (40, (14, 27)), (100, (40, 61))],
)
def test_median_interval_takes_the_tabled_order_statistics(n: int, ranks: tuple[int, int]) -> None:
    assert median_interval([float(i) for i in range(1, n + 1)]) == ranks


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=80))
def test_median_interval_holds_the_sample_median(values: list[float]) -> None:
    low, high = median_interval(values)
    assert min(values) <= low <= median(values) <= high <= max(values)
