"""`generated`: a value Lockzero mints and delivers (webhook signing secrets, internal tokens).

There is no external system: a credential "works" while Lockzero considers it live, so validation
and rejection are answered from the live set that this provider keeps in the secret's versions.
The live set is passed in by the saga (it is derived from the events), which keeps this stateless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockzero.engine.security.crypto import random_secret
from lockzero.providers.base import Auth, Credential, Usage, accepted, refused
from lockzero.providers.spec import ProviderConfigError, ProviderSpec


class GeneratedProvider:
    name = "generated"
    overlapping = True

    def __init__(self, config: Mapping[str, Any], live: set[str] | None = None) -> None:
        self.length = int(config.get("length", 40))
        self.prefix = str(config.get("prefix", ""))
        #: Values currently accepted (filled by the engine from the secret's live versions).
        self.live: set[str] = live if live is not None else set()

    def mint(self) -> str:
        return random_secret(self.length, self.prefix)

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        self.live.add(new.value)
        return new

    async def authenticate(self, credential: Credential) -> Auth:
        if credential.value in self.live:
            return accepted("generated: a live version of this secret")
        return refused("generated: not a live version of this secret")

    async def retire(self, credential: Credential) -> None:
        self.live.discard(credential.value)

    async def restore(self, credential: Credential) -> None:
        self.live.add(credential.value)

    async def revoke(self, credentials: list[Credential]) -> None:
        for c in credentials:
            self.live.discard(c.value)

    async def discard(self, credential: Credential) -> None:
        self.live.discard(credential.value)

    async def observed_usage(self) -> list[Usage]:
        return []

    async def close(self) -> None:
        return None


def _check(config: Mapping[str, Any]) -> None:
    length = config.get("length", 40)
    if not isinstance(length, int) or isinstance(length, bool) or not 16 <= length <= 512:
        raise ProviderConfigError("config key 'length' must be an integer from 16 to 512")


SPEC = ProviderSpec(
    name="generated",
    summary="A value Lockzero generates and delivers (webhook signing secrets, internal tokens); no external system.",
    required={},
    optional={
        "length": "characters, 16 to 512; default 40",
        "prefix": "text put in front of the random part, e.g. whsec_",
    },
    permissions="none: there is no admin credential",
    factory=lambda config, ctx: GeneratedProvider(config, ctx.live),
    first_credential="minted",
    mint=lambda config: GeneratedProvider(config).mint(),
    check=_check,
    lockzero_is_authority=True,
)
