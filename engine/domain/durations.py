"""Human durations (`30d`, `12h`, `5m`, `90s`, `2w`) as used by the CLI and policies."""

from __future__ import annotations

import re

from lockzero.engine.domain.errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,9})([smhdw]?)")


def parse_duration(text: str, *, default_unit: str = "d", what: str = "duration") -> int:
    """Seconds in ``text``; a bare number is in ``default_unit``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{what} must look like 30d, 12h, 5m or 90s")
    number, unit = match.groups()
    return int(number) * _UNITS[unit or default_unit]


def format_duration(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
