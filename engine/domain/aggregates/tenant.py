from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from lockzero.engine.domain.events import AnyEvent, TenantCreated


class Tenant(msgspec.Struct, frozen=True):
    name: str
    created_at: datetime


def fold_tenant(events: Iterable[AnyEvent]) -> Tenant | None:
    state: Tenant | None = None
    for event in events:
        if isinstance(event, TenantCreated):
            state = Tenant(event.tenant, event.at)
    return state
