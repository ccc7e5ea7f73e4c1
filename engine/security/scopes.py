"""Key scopes are globs over secret ids (`prod/*`); the read models filter by them in SQL."""

from __future__ import annotations


def glob_to_like(glob: str) -> str:
    """`*` → `%`, `?` → `_`, everything else literal (LIKE's own wildcards escaped with a backslash)."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def like_patterns(scopes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(glob_to_like(s) for s in scopes)
