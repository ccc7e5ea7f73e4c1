from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import datetime

import msgspec

from lockzero.engine.domain.events import AnyEvent, ApiKeyCreated, ApiKeyRevoked


class ApiKey(msgspec.Struct, frozen=True):
    tenant: str
    key_id: str
    name: str
    token_hash: str
    read_only: bool
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def in_scope(self, secret_id: str) -> bool:
        # No scopes = the whole tenant; otherwise any glob may match (`prod/*`, `*/api-key`).
        return not self.scopes or any(fnmatch.fnmatchcase(secret_id, glob) for glob in self.scopes)


def fold_api_key(events: Iterable[AnyEvent]) -> ApiKey | None:
    state: ApiKey | None = None
    for event in events:
        if isinstance(event, ApiKeyCreated):
            state = ApiKey(
                event.tenant,
                event.key_id,
                event.name,
                event.token_hash,
                event.read_only,
                event.scopes,
                event.at,
                event.expires_at,
            )
        elif isinstance(event, ApiKeyRevoked) and state is not None:
            state = msgspec.structs.replace(state, revoked_at=event.at)
    return state
