"""An incident's timeline reads in words (never an event class name) and folds an agent's repeated polls
into one entry with a count."""

from __future__ import annotations

import re

from lockzero.engine.app import Engine
from lockzero.engine.audit import records as audit
from lockzero.engine.commands import incidents, secrets, tenants
from lockzero.engine.domain import events as ev
from lockzero.engine.domain.naming import secret_stream
from lockzero.engine.queries import timeline
from tests.engine.support import OPERATOR, ManualClock

AGENT = ev.EventMeta(actor_id="key_agent", actor_type="agent")
OTHER_AGENT = ev.EventMeta(actor_id="key_other", actor_type="agent")
SID = "prod/app/token"
#: Every event class name, e.g. SecretVersionDiscarded: none may appear in a summary.
CLASS_NAMES = sorted(
    name
    for name, obj in vars(ev).items()
    if isinstance(obj, type) and issubclass(obj, ev.Event) and obj is not ev.Event
)


async def test_timeline_in_words_with_polls_collapsed(engine: Engine, clock: ManualClock) -> None:
    await tenants.create_tenant(engine, "acme", OPERATOR)
    await secrets.register_secret(
        engine, "acme", OPERATOR, secret_id=SID, provider="generated", environment="prod", config={}
    )
    incident_id = await incidents.open_incident(
        engine, "acme", OPERATOR, kind="leaked_credential", severity="high", secret_id=SID, summary="token in a log"
    )
    stream = secret_stream("acme", SID)

    async def call(method: str, actor: ev.EventMeta = AGENT, detail: str = "") -> None:
        clock.advance(seconds=1)
        await audit.record(engine, "acme", actor, method, "ok", secret_id=SID, detail=detail)

    async def event(e: ev.Event) -> None:
        clock.advance(seconds=1)
        await engine.append(stream, [e], OPERATOR)

    await call("rotate_secret")
    for n in range(12):
        await call("verify_remediation", detail=f"poll {n}")
        if n == 3:  # events of other streams between the polls do not split them
            await event(
                ev.SecretVersionCreated(at=clock.now(), tenant="acme", secret_id=SID, version=2, origin="rotation")
            )
            await call("verify_remediation", OTHER_AGENT)  # nor do another caller's calls
        if n == 6:
            await event(ev.SecretVersionDiscarded(at=clock.now(), tenant="acme", secret_id=SID, version=2))
            await event(ev.SecretVersionCompromised(at=clock.now(), tenant="acme", secret_id=SID, version=1,
                                                    incident_id=incident_id, source="detect_exposure"))  # fmt: skip
    await call("get_secret_metadata")  # another call of the same caller ends the run
    for _ in range(3):
        await call("verify_remediation", detail="verified")
    await call("verify_remediation", detail="error path")  # same call, same outcome: joins the run
    clock.advance(seconds=1)
    await incidents.mark_mitigated(
        engine, "acme", incident_id, "rotated; one dependent still behind", ref_kind="rotation", ref_id="rot_1",
        actor=OPERATOR,
    )  # fmt: skip

    tl = await timeline.incident_timeline(engine, "acme", incident_id)
    summaries = [e.summary for e in tl.entries]
    for summary in summaries:
        for name in CLASS_NAMES:
            assert not re.search(rf"\b{name}\b", summary), (name, summary)
    assert "v2 discarded (the rotation that created it was undone before it became current)" in summaries
    assert "v1 marked compromised (seen by detect_exposure)" in summaries
    assert "rotated; one dependent still behind" in summaries

    polls = [e for e in tl.entries if "verify_remediation" in e.summary]
    assert [(e.actor_id, e.count) for e in polls] == [("key_agent", 12), ("key_other", 1), ("key_agent", 4)]
    first, other, second = polls
    # The folded entry sits at the first poll, reads as the last answer, and says how many and how long.
    assert first.summary.startswith("call verify_remediation → ok (poll 11)") and "×12 over" in first.summary
    assert first.last_offset_ms is not None and first.last_offset_ms > first.offset_ms
    assert other.last_offset_ms is None and "×" not in other.summary
    assert "×4 over 3.0 s" in second.summary

    # Everything else stays one line per event, in order.
    def pos(prefix: str) -> int:
        return next(i for i, s in enumerate(summaries) if s.startswith(prefix))

    assert pos("call rotate_secret → ok") < pos("v2 created") < pos("v2 discarded") < pos("rotated;")
    assert sum(e.count for e in tl.entries) == len(tl.entries) + 11 + 3
