"""Load → fold → decide → append, retried on a concurrent append: the one way a command changes a stream.

The stream version makes a decision exact under concurrency: the append names the version the decision was
folded from, so of N racing commands one appends and the others fold again and decide anew (often finding
the winner's result). Every command uses the same policy: a bounded number of attempts with a small random
pause, so contention degrades to a clear Conflict instead of a livelock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from lockzero.engine.app import Engine
from lockzero.engine.domain import events as ev
from lockzero.engine.domain import naming
from lockzero.engine.domain.aggregates.secret import Secret
from lockzero.engine.domain.errors import Conflict, NotFound
from lockzero.eventstore import ConcurrencyError, Transaction

T = TypeVar("T")
S = TypeVar("S")

ATTEMPTS = 20

SideWrites = Callable[[Transaction], Awaitable[None]]


@dataclass(frozen=True)
class Decision(Generic[T]):
    """What a command decided: the events to append (none: nothing to change) and what it returns."""

    result: T
    events: Sequence[ev.Event] = ()
    side: SideWrites | None = None
    #: Runs after the append committed (e.g. enqueue the saga the events started).
    then: Callable[[], Awaitable[None]] | None = field(default=None)


Loader = Callable[[], Awaitable[tuple[S, int]]]
Decider = Callable[[S], Awaitable[Decision[T]] | Decision[T]]


async def decide_and_append(
    engine: Engine, stream: str, actor: ev.EventMeta, load: Loader[S], decide: Decider[S, T], *, what: str
) -> T:
    """Domain errors raised by ``decide`` end the command at once; only a lost race is retried."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(ConcurrencyError),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_random(0, 0.005),
            reraise=True,
        ):
            with attempt:
                state, version = await load()
                decided = decide(state)
                decision = await decided if not isinstance(decided, Decision) else decided
                if decision.events:
                    await engine.append(stream, list(decision.events), actor, version, decision.side)
                if decision.then is not None:
                    await decision.then()
                return decision.result
    except ConcurrencyError:
        raise Conflict(f"{what} is changing too fast; retry") from None
    raise AssertionError("unreachable: tenacity returns or re-raises")


async def load_secret(engine: Engine, tenant: str, secret_id: str) -> tuple[Secret, int]:
    """The secret folded from its stream, and the stream version it was folded at; NotFound when there is none."""
    secret, version = await engine.secrets.load(naming.secret_stream(tenant, naming.secret_id(secret_id)))
    if secret is None:
        raise NotFound(f"no secret {secret_id!r}; list_secrets shows the ids this key can see")
    return secret, version


async def change_secret(
    engine: Engine,
    tenant: str,
    secret_id: str,
    actor: ev.EventMeta,
    decide: Callable[[Secret | None], Awaitable[Decision[T]] | Decision[T]],
) -> T:
    stream = naming.secret_stream(tenant, secret_id)
    return await decide_and_append(
        engine, stream, actor, lambda: engine.secrets.load(stream), decide, what=f"secret {secret_id!r}"
    )
