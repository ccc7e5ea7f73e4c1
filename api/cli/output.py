"""Printing: a table or lines for people, one JSON document with --json for machines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def emit_json(value: Any) -> None:
    import msgspec  # here, not at import: `lockzero --help` never encodes anything

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def error(message: str, *, code: str, as_json: bool) -> None:
    if as_json:
        emit_json({"error": {"code": code, "message": message}})
    print(f"lockzero: error: {message}", file=sys.stderr)
