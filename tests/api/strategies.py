"""Hypothesis strategies shared by the API fuzz tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_scalars(max_text: int) -> st.SearchStrategy[Any]:
    """Any JSON scalar: null, booleans, integers well past 64 bits, finite floats, text up to ``max_text``."""
    return (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=max_text)
    )
