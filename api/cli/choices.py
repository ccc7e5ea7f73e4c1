"""The fixed value sets options accept (providers, statuses, roles…), read from the engine only when asked.

argparse needs them to check a value and to print help or an error, never to build the parser: a lazy
container keeps `lockzero --help` from importing the provider registry, the events or argon2. Help strings
name them with argparse's own ``%(choices)s``, which is expanded only when that help is printed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any, get_args, overload


class LazyChoices(Sequence[str]):
    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load

    @cached_property
    def values(self) -> tuple[str, ...]:
        return tuple(self._load())

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return self.values[i]

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __contains__(self, value: object) -> bool:
        return value in self.values


def _attr(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


PROVIDERS = LazyChoices(lambda: tuple(_attr("lockzero.providers.registry", "MODULES")))
SECRET_STATUSES = LazyChoices(lambda: get_args(_attr("lockzero.engine.domain.events", "SecretStatus")))
INCIDENT_KINDS = LazyChoices(lambda: _attr("lockzero.engine.commands.incidents", "KINDS"))
SEVERITIES = LazyChoices(lambda: _attr("lockzero.engine.commands.incidents", "SEVERITIES"))
ROTATION_STATUSES = LazyChoices(lambda: _attr("lockzero.engine.queries.rotations", "STATUSES"))
AUDIT_OUTCOMES = LazyChoices(lambda: _attr("lockzero.engine.audit.log", "OUTCOMES"))
OPERATOR_ROLES = LazyChoices(lambda: _attr("lockzero.engine.security.operators", "ROLES"))
