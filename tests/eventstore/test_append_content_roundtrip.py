"""Whatever an event holds comes back byte for byte and is chained exactly: names, types, data and metadata with
the characters that array and bytea encodings escape (quotes, backslashes, braces, commas, NUL bytes, non-ASCII).
On PostgreSQL the group commit sends each batch's fields as binary arrays; several appends go at once so that they
share one call."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockzero.eventstore import EventStore, NewEvent
from lockzero.eventstore.chain import verify_chain

# Text columns cannot hold NUL, nor UTF-8 a lone surrogate; everything else is fair, escapes first.
_tricky = st.sampled_from(['"', "\\", "{", "}", ",", " ", "NULL", "ü", "✓", "\u2028", "\n"])
_text = st.lists(
    st.one_of(_tricky, st.characters(exclude_categories=("Cs",), exclude_characters="\x00")), min_size=1, max_size=12
).map("".join)
_bytes = st.one_of(st.binary(max_size=64), st.lists(_tricky, max_size=8).map(lambda parts: "".join(parts).encode()))
_event = st.builds(lambda t, d, m: NewEvent(type=t, data=d, metadata=m), _text, _bytes, _bytes)
_appends = st.lists(st.tuples(_text, st.lists(_event, min_size=1, max_size=3)), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends=_appends)
async def test_any_content_round_trips_and_chains(store: EventStore, appends: list[tuple[str, list[NewEvent]]]) -> None:
    before = await store.head_position()
    results = await asyncio.gather(*(store.append(f"audit-{name}", events) for name, events in appends))
    recorded = await store.read_all(before, limit=1000)
    for (name, events), result in zip(appends, results, strict=True):
        ids = {x.event_id for x in events}
        stored = [e for e in recorded if e.event_id in ids]
        assert [(e.stream, e.type, e.data, e.metadata) for e in stored] == [
            (f"audit-{name}", x.type, x.data, x.metadata) for x in events
        ]
        assert [e.position for e in result.events] == [e.position for e in stored]
    async with store.reader() as tx:
        report = await verify_chain(tx, since=before + 1)
    assert report.ok, report.failures
