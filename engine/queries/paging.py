"""Opaque cursors and page sizes shared by every list query."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from lockzero.engine.domain.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Cursors we issue hold ids, ISO times and positions; anything longer was not made here.
_MAX_CURSOR_TEXT = 300
_BAD_CURSOR = "cursor is not one this server returned; start again without a cursor"


def page_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIMIT}")
    return limit


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, kinds: tuple[type, ...] | None = None) -> list[Any]:
    """The values of a cursor we issued. A cursor is caller input: every element is checked to be a
    scalar the database can bind (``kinds`` pins each position's type), so a forged one is
    invalid_params, never a driver error."""
    try:
        values = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        values = None
    if not isinstance(values, list) or len(values) != arity or not all(map(_bindable, values)):
        raise InvalidInput(_BAD_CURSOR)
    if kinds is not None and not all(
        isinstance(v, k) and not isinstance(v, bool) for v, k in zip(values, kinds, strict=True)
    ):
        raise InvalidInput(_BAD_CURSOR)
    return values


def _bindable(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, str):
        # PostgreSQL text cannot hold NUL.
        return len(value) <= _MAX_CURSOR_TEXT and "\x00" not in value
    return False
