"""Versioned schema steps. Each backend runs the SQL of its dialect; history is kept per namespace."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lockzero.eventstore.interface import Migration

#: The group-commit append function as migration 2 created it. Migration text is history: a change to the
#: function is a new migration (CREATE OR REPLACE), never an edit here, so every database gets the same steps.
_APPEND_BATCH_FUNCTION_V2 = """
CREATE OR REPLACE FUNCTION lz_append_batch(
    p_streams text[], p_expected int[], p_counts int[],
    p_ids uuid[], p_types text[], p_data bytea[], p_meta bytea[], p_at timestamptz
) RETURNS TABLE (idx int, status text, stream_version int, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    cur int;
    ev int := 1;
    n int;
BEGIN
    -- The one lock that orders all appends: held until COMMIT, so positions follow commit order.
    SELECT position INTO head FROM lz_event_head WHERE id = 1 FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        n := p_counts[i];
        idx := i;
        IF EXISTS (SELECT 1 FROM lz_events WHERE event_id = ANY (p_ids[ev : ev + n - 1])) THEN
            status := 'duplicate'; stream_version := NULL; first_position := NULL;
        ELSE
            SELECT coalesce(max(version), 0) INTO cur FROM lz_events WHERE stream = p_streams[i];
            IF p_expected[i] <> -1 AND p_expected[i] <> cur THEN
                status := 'conflict'; stream_version := cur; first_position := NULL;
            ELSE
                INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at)
                SELECT head + k, p_streams[i], cur + k, p_ids[ev + k - 1], p_types[ev + k - 1],
                       p_data[ev + k - 1], p_meta[ev + k - 1], p_at
                FROM generate_series(1, n) AS k;
                status := 'ok'; stream_version := cur + n; first_position := head + 1;
                head := head + n;
            END IF;
        END IF;
        RETURN NEXT;
        ev := ev + n;
    END LOOP;
    UPDATE lz_event_head SET position = head WHERE id = 1;
    PERFORM pg_notify('lz_events', head::text);
END $$
"""


#: Migration 3: the append function also links each event into its tenant's hash chain (eventstore/chain.py
#: holds the same canonical bytes in Python; the tests check both agree). The head-row lock already
#: serialises appends, so each chain's head row is read and moved here without further locking.
_APPEND_BATCH_FUNCTION_V3 = r"""
CREATE OR REPLACE FUNCTION lz_append_batch(
    p_streams text[], p_expected int[], p_counts int[],
    p_ids uuid[], p_types text[], p_data bytea[], p_meta bytea[], p_at timestamptz
) RETURNS TABLE (idx int, status text, stream_version int, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    cur int;
    ev int := 1;
    n int;
    ch text;
    c_seq bigint;
    c_hash bytea;
    seqs bigint[];
    hashes bytea[];
    at_us bytea := int8send((extract(epoch FROM p_at) * 1000000)::bigint);
BEGIN
    -- The one lock that orders all appends: held until COMMIT, so positions follow commit order.
    SELECT position INTO head FROM lz_event_head WHERE id = 1 FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        n := p_counts[i];
        idx := i;
        IF EXISTS (SELECT 1 FROM lz_events WHERE event_id = ANY (p_ids[ev : ev + n - 1])) THEN
            status := 'duplicate'; stream_version := NULL; first_position := NULL;
        ELSE
            SELECT coalesce(max(version), 0) INTO cur FROM lz_events WHERE stream = p_streams[i];
            IF p_expected[i] <> -1 AND p_expected[i] <> cur THEN
                status := 'conflict'; stream_version := cur; first_position := NULL;
            ELSE
                ch := coalesce(substring(p_streams[i] FROM '^[a-z]+-([^/]+)'), '_system');
                SELECT h.seq, h.hash INTO c_seq, c_hash FROM lz_chain_heads h WHERE h.chain = ch;
                IF NOT FOUND THEN
                    c_seq := 0; c_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
                END IF;
                seqs := '{}'; hashes := '{}';
                FOR k IN 1 .. n LOOP
                    c_seq := c_seq + 1;
                    c_hash := sha256(
                        '\x4c5a4331'::bytea || c_hash || int8send(head + k) || int8send(c_seq)
                        || int4send(octet_length(convert_to(p_streams[i], 'UTF8'))) || convert_to(p_streams[i], 'UTF8')
                        || int4send(cur + k) || uuid_send(p_ids[ev + k - 1])
                        || int4send(octet_length(convert_to(p_types[ev + k - 1], 'UTF8')))
                        || convert_to(p_types[ev + k - 1], 'UTF8')
                        || int4send(octet_length(p_data[ev + k - 1])) || p_data[ev + k - 1]
                        || int4send(octet_length(p_meta[ev + k - 1])) || p_meta[ev + k - 1]
                        || at_us);
                    seqs := seqs || c_seq;
                    hashes := hashes || c_hash;
                END LOOP;
                INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at,
                                       chain_seq, chain_hash)
                SELECT head + k, p_streams[i], cur + k, p_ids[ev + k - 1], p_types[ev + k - 1],
                       p_data[ev + k - 1], p_meta[ev + k - 1], p_at, seqs[k], hashes[k]
                FROM generate_series(1, n) AS k;
                INSERT INTO lz_chain_heads (chain, seq, position, hash) VALUES (ch, c_seq, head + n, c_hash)
                ON CONFLICT (chain) DO UPDATE
                    SET seq = excluded.seq, position = excluded.position, hash = excluded.hash;
                status := 'ok'; stream_version := cur + n; first_position := head + 1;
                head := head + n;
            END IF;
        END IF;
        RETURN NEXT;
        ev := ev + n;
    END LOOP;
    UPDATE lz_event_head SET position = head WHERE id = 1;
    PERFORM pg_notify('lz_events', head::text);
END $$
"""


#: Migration 6: the append function decides every append of the batch first and then writes the accepted
#: events with one INSERT (one statement per append before; each statement is planned afresh, see migration 2's
#: plan_cache_mode), and reads and moves the chain heads once per batch instead of once per append. The chain
#: bytes are those of migration 3 (eventstore/chain.py is unchanged). A stream appended to twice in one batch
#: takes its version from the batch, because its first append is not in lz_events yet.
#: The chain heads are read and moved by two helpers with generic plans: they look rows up by primary key
#: only, so a plan made on a small table stays right, and the append function's per-call planning is spared.
_CHAIN_HEADS_OF = r"""
CREATE OR REPLACE FUNCTION lz_chain_heads_of(p_streams text[], OUT chains text[], OUT seqs bigint[],
                                             OUT positions bigint[], OUT hashes bytea[])
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    SELECT array_agg(c.chain), array_agg(coalesce(h.seq, 0)), array_agg(coalesce(h.position, 0)),
           array_agg(coalesce(h.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea))
      INTO chains, seqs, positions, hashes
      FROM (SELECT DISTINCT coalesce(substring(s FROM '^[a-z]+-([^/]+)'), '_system') AS chain
              FROM unnest(p_streams) AS s) AS c
      LEFT JOIN lz_chain_heads h ON h.chain = c.chain;
END $$;
"""

_CHAIN_HEADS_MOVE = r"""
CREATE OR REPLACE FUNCTION lz_chain_heads_move(p_chains text[], p_seqs bigint[], p_positions bigint[],
                                               p_hashes bytea[], p_before bigint[])
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    UPDATE lz_chain_heads h SET seq = p_seqs[j], position = p_positions[j], hash = p_hashes[j]
      FROM generate_subscripts(p_chains, 1) AS j
     WHERE h.chain = p_chains[j] AND p_before[j] > 0 AND p_seqs[j] <> p_before[j];
    INSERT INTO lz_chain_heads (chain, seq, position, hash)
    SELECT p_chains[j], p_seqs[j], p_positions[j], p_hashes[j] FROM generate_subscripts(p_chains, 1) AS j
     WHERE p_before[j] = 0 AND p_seqs[j] > 0;
END $$;
"""

_APPEND_BATCH_FUNCTION_V4 = r"""
CREATE OR REPLACE FUNCTION lz_append_batch(
    p_streams text[], p_expected int[], p_counts int[],
    p_ids uuid[], p_types text[], p_data bytea[], p_meta bytea[], p_at timestamptz
) RETURNS TABLE (idx int, status text, stream_version int, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    cur int;
    ev int := 1;
    n int;
    si int;
    ci int;
    m int := 0;
    seen_streams text[] := '{}';
    seen_versions int[] := '{}';
    taken_ids uuid[] := '{}';
    -- The accepted events, in position order: written by one INSERT once every append is decided.
    e_at int[] := '{}';
    e_stream text[] := '{}';
    e_version int[] := '{}';
    e_seq bigint[] := '{}';
    e_hash bytea[] := '{}';
    chains text[];
    c_seq bigint[];
    c_pos bigint[];
    c_hash bytea[];
    seq0 bigint[];
    stream_bytes bytea;
    at_us bytea := int8send((extract(epoch FROM p_at) * 1000000)::bigint);
BEGIN
    -- The one lock that orders all appends: held until COMMIT, so positions follow commit order.
    SELECT position INTO head FROM lz_event_head WHERE id = 1 FOR UPDATE;
    SELECT h.chains, h.seqs, h.positions, h.hashes INTO chains, c_seq, c_pos, c_hash
      FROM lz_chain_heads_of(p_streams) AS h;
    seq0 := c_seq;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        n := p_counts[i];
        idx := i;
        IF p_ids[ev : ev + n - 1] && taken_ids
           OR EXISTS (SELECT 1 FROM lz_events WHERE event_id = ANY (p_ids[ev : ev + n - 1])) THEN
            status := 'duplicate'; stream_version := NULL; first_position := NULL;
        ELSE
            -- A stream appended to earlier in this batch is not in lz_events yet: its version is kept here.
            si := array_position(seen_streams, p_streams[i]);
            IF si IS NULL THEN
                SELECT coalesce(max(version), 0) INTO cur FROM lz_events WHERE stream = p_streams[i];
                seen_streams := seen_streams || p_streams[i];
                si := array_length(seen_streams, 1);
            ELSE
                cur := seen_versions[si];
            END IF;
            seen_versions[si] := cur;
            IF p_expected[i] <> -1 AND p_expected[i] <> cur THEN
                status := 'conflict'; stream_version := cur; first_position := NULL;
            ELSE
                ci := array_position(chains, coalesce(substring(p_streams[i] FROM '^[a-z]+-([^/]+)'), '_system'));
                stream_bytes := convert_to(p_streams[i], 'UTF8');
                stream_bytes := int4send(octet_length(stream_bytes)) || stream_bytes;
                FOR k IN 1 .. n LOOP
                    m := m + 1;
                    c_seq[ci] := c_seq[ci] + 1;
                    c_hash[ci] := sha256(
                        '\x4c5a4331'::bytea || c_hash[ci] || int8send(head + k) || int8send(c_seq[ci])
                        || stream_bytes || int4send(cur + k) || uuid_send(p_ids[ev + k - 1])
                        || int4send(octet_length(convert_to(p_types[ev + k - 1], 'UTF8')))
                        || convert_to(p_types[ev + k - 1], 'UTF8')
                        || int4send(octet_length(p_data[ev + k - 1])) || p_data[ev + k - 1]
                        || int4send(octet_length(p_meta[ev + k - 1])) || p_meta[ev + k - 1]
                        || at_us);
                    e_at[m] := ev + k - 1;
                    e_stream[m] := p_streams[i];
                    e_version[m] := cur + k;
                    e_seq[m] := c_seq[ci];
                    e_hash[m] := c_hash[ci];
                END LOOP;
                c_pos[ci] := head + n;
                taken_ids := taken_ids || p_ids[ev : ev + n - 1];
                seen_versions[si] := cur + n;
                status := 'ok'; stream_version := cur + n; first_position := head + 1;
                head := head + n;
            END IF;
        END IF;
        RETURN NEXT;
        ev := ev + n;
    END LOOP;
    IF m > 0 THEN
        INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at,
                               chain_seq, chain_hash)
        SELECT head - m + j, e_stream[j], e_version[j], p_ids[e_at[j]], p_types[e_at[j]], p_data[e_at[j]],
               p_meta[e_at[j]], p_at, e_seq[j], e_hash[j]
        FROM generate_series(1, m) AS j;
        PERFORM lz_chain_heads_move(chains, c_seq, c_pos, c_hash, seq0);
    END IF;
    UPDATE lz_event_head SET position = head WHERE id = 1;
    PERFORM pg_notify('lz_events', head::text);
END $$
"""

#: Migration 7: the append function reads what it decides on (every stream's version and which of the batch's ids
#: are stored) with one statement per batch, in lz_append_reads, before deciding any append; migration 6 ran two
#: statements per append. That statement scans lz_events and is planned on every call (force_custom_plan), as
#: migration 2 found it must be: a plan made while lz_events was small scans it forever after. Every other
#: statement of the append function looks up a primary key, reads arrays or inserts, so it runs on a plan made
#: once per connection (force_generic_plan): planning had been a third of the backend's time, most of it copying
#: the batch's arrays into each statement's plan. A chain is the tenant part of a stream's name, worked out once
#: per distinct stream of the batch; the chain heads are read and moved once per batch.
_APPEND_READS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION lz_append_reads(p_streams text[], p_ids uuid[], OUT streams text[], OUT versions int[],
                                           OUT stored_ids uuid[])
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    SELECT array_agg(d.s),
           array_agg((SELECT coalesce(max(e.version), 0) FROM lz_events e WHERE e.stream = d.s)),
           coalesce((SELECT array_agg(e.event_id) FROM lz_events e WHERE e.event_id = ANY (p_ids)), '{}')
      INTO streams, versions, stored_ids
      FROM (SELECT DISTINCT s FROM unnest(p_streams) AS s) AS d;
END $$;
"""

_APPEND_BATCH_FUNCTION_V5 = r"""
CREATE OR REPLACE FUNCTION lz_append_batch(
    p_streams text[], p_expected int[], p_counts int[],
    p_ids uuid[], p_types text[], p_data bytea[], p_meta bytea[], p_at timestamptz
) RETURNS TABLE (idx int, status text, stream_version int, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    cur int;
    ev int := 1;
    n int;
    si int;
    ci int;
    m int := 0;
    seq bigint;
    hash bytea;
    -- The batch's distinct streams, each with its version (moved on as the batch appends to it), its chain
    -- and its name as the chain's canonical bytes hold it.
    streams text[];
    versions int[];
    stream_chain int[] := '{}';
    stream_field bytea[] := '{}';
    stored_ids uuid[];
    taken_ids uuid[] := '{}';
    chains text[] := '{}';
    heads lz_chain_heads[];
    c_seq bigint[] := '{}';
    c_pos bigint[] := '{}';
    c_hash bytea[] := '{}';
    seq0 bigint[];
    -- The accepted events, in position order: written by one INSERT once every append is decided.
    e_at int[] := '{}';
    e_stream text[] := '{}';
    e_version int[] := '{}';
    e_seq bigint[] := '{}';
    e_hash bytea[] := '{}';
    ch text;
    type_bytes bytea;
    at_us bytea := int8send((extract(epoch FROM p_at) * 1000000)::bigint);
BEGIN
    -- The one lock that orders all appends: held until COMMIT, so positions follow commit order.
    SELECT position INTO head FROM lz_event_head WHERE id = 1 FOR UPDATE;
    SELECT r.streams, r.versions, r.stored_ids INTO streams, versions, stored_ids
      FROM lz_append_reads(p_streams, p_ids) AS r;
    FOR j IN 1 .. coalesce(array_length(streams, 1), 0) LOOP
        ch := coalesce(substring(streams[j] FROM '^[a-z]+-([^/]+)'), '_system');
        ci := array_position(chains, ch);
        IF ci IS NULL THEN
            chains := chains || ch;
            ci := array_length(chains, 1);
        END IF;
        stream_chain[j] := ci;
        stream_field[j] := int4send(octet_length(convert_to(streams[j], 'UTF8'))) || convert_to(streams[j], 'UTF8');
    END LOOP;
    SELECT array_agg(h ORDER BY c.i) INTO heads
      FROM unnest(chains) WITH ORDINALITY AS c(chain, i) LEFT JOIN lz_chain_heads h ON h.chain = c.chain;
    FOR j IN 1 .. coalesce(array_length(chains, 1), 0) LOOP
        c_seq[j] := coalesce((heads[j]).seq, 0);
        c_pos[j] := coalesce((heads[j]).position, 0);
        c_hash[j] := coalesce((heads[j]).hash, '\x0000000000000000000000000000000000000000000000000000000000000000');
    END LOOP;
    seq0 := c_seq;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        n := p_counts[i];
        idx := i;
        IF p_ids[ev : ev + n - 1] && taken_ids OR p_ids[ev : ev + n - 1] && stored_ids THEN
            status := 'duplicate'; stream_version := NULL; first_position := NULL;
        ELSE
            si := array_position(streams, p_streams[i]);
            cur := versions[si];
            IF p_expected[i] <> -1 AND p_expected[i] <> cur THEN
                status := 'conflict'; stream_version := cur; first_position := NULL;
            ELSE
                ci := stream_chain[si];
                seq := c_seq[ci];
                hash := c_hash[ci];
                FOR k IN 1 .. n LOOP
                    m := m + 1;
                    seq := seq + 1;
                    type_bytes := convert_to(p_types[ev + k - 1], 'UTF8');
                    hash := sha256(
                        '\x4c5a4331'::bytea || hash || int8send(head + k) || int8send(seq) || stream_field[si]
                        || int4send(cur + k) || uuid_send(p_ids[ev + k - 1])
                        || int4send(octet_length(type_bytes)) || type_bytes
                        || int4send(octet_length(p_data[ev + k - 1])) || p_data[ev + k - 1]
                        || int4send(octet_length(p_meta[ev + k - 1])) || p_meta[ev + k - 1]
                        || at_us);
                    e_at[m] := ev + k - 1;
                    e_stream[m] := p_streams[i];
                    e_version[m] := cur + k;
                    e_seq[m] := seq;
                    e_hash[m] := hash;
                END LOOP;
                c_seq[ci] := seq;
                c_hash[ci] := hash;
                c_pos[ci] := head + n;
                taken_ids := taken_ids || p_ids[ev : ev + n - 1];
                versions[si] := cur + n;
                status := 'ok'; stream_version := cur + n; first_position := head + 1;
                head := head + n;
            END IF;
        END IF;
        RETURN NEXT;
        ev := ev + n;
    END LOOP;
    IF m > 0 THEN
        INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at,
                               chain_seq, chain_hash)
        SELECT head - m + j, e_stream[j], e_version[j], p_ids[e_at[j]], p_types[e_at[j]], p_data[e_at[j]],
               p_meta[e_at[j]], p_at, e_seq[j], e_hash[j]
        FROM generate_series(1, m) AS j;
        UPDATE lz_chain_heads h SET seq = u.seq, position = u.position, hash = u.hash
          FROM unnest(chains, c_seq, c_pos, c_hash, seq0) AS u(chain, seq, position, hash, before)
         WHERE h.chain = u.chain AND u.before > 0 AND u.seq <> u.before;
        IF array_position(seq0, 0) IS NOT NULL THEN
            INSERT INTO lz_chain_heads (chain, seq, position, hash)
            SELECT u.chain, u.seq, u.position, u.hash
              FROM unnest(chains, c_seq, c_pos, c_hash, seq0) AS u(chain, seq, position, hash, before)
             WHERE u.before = 0 AND u.seq > 0;
        END IF;
    END IF;
    UPDATE lz_event_head SET position = head WHERE id = 1;
    PERFORM pg_notify('lz_events', head::text);
END $$
"""

#: Migration 8. lz_append_reads runs on a plan made once per connection too, with sequential scans off: its only
#: other plans are index scans (the stream's highest version, the batch's ids), right whatever lz_events' size
#: when the plan was made (migration 2's problem was a sequential-scan plan made while the table was small), and
#: planning it on every call had been a sixth of the append's backend CPU. The append function carries each
#: chain on in the event's own statements: an event's previous link is read at its chain's last subscript of
#: the batch's link arrays, whose negative subscripts hold the heads read at the start, and the heads move from
#: those arrays once per batch. Before, six statements per append copied each chain's state in and out.
_APPEND_BATCH_FUNCTION_V6 = r"""
CREATE OR REPLACE FUNCTION lz_append_batch(
    p_streams text[], p_expected int[], p_counts int[],
    p_ids uuid[], p_types text[], p_data bytea[], p_meta bytea[], p_at timestamptz
) RETURNS TABLE (idx int, status text, stream_version int, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    cur int;
    ev int := 1;
    n int;
    si int;
    ci int;
    m int := 0;
    x int;
    streams text[];
    versions int[];
    stored_ids uuid[];
    taken_ids uuid[] := '{}';
    chains text[] := '{}';
    heads lz_chain_heads[];
    -- The batch's distinct streams, each with its chain and its name as the chain's canonical bytes hold it.
    stream_chain int[];
    stream_field bytea[];
    -- e_seq/e_hash: subscripts 1..m are the accepted events; -1..-C hold chain j's head at -j, so an event's
    -- previous link is always at its chain's last subscript (c_last[j]), in this batch or before it: three
    -- statements per event carry the chain on, none per append.
    c_last int[];
    e_at int[] := '{}';
    e_stream text[] := '{}';
    e_version int[] := '{}';
    e_seq bigint[];
    e_hash bytea[];
    ch text;
    at_us bytea := int8send((extract(epoch FROM p_at) * 1000000)::bigint);
BEGIN
    -- The one lock that orders all appends: held until COMMIT, so positions follow commit order.
    SELECT position INTO head FROM lz_event_head WHERE id = 1 FOR UPDATE;
    SELECT r.streams, r.versions, r.stored_ids INTO streams, versions, stored_ids
      FROM lz_append_reads(p_streams, p_ids) AS r;
    FOR j IN 1 .. coalesce(array_length(streams, 1), 0) LOOP
        ch := coalesce(substring(streams[j] FROM '^[a-z]+-([^/]+)'), '_system');
        ci := array_position(chains, ch);
        IF ci IS NULL THEN
            chains := chains || ch;
            ci := array_length(chains, 1);
        END IF;
        stream_chain[j] := ci;
        stream_field[j] := int4send(octet_length(convert_to(streams[j], 'UTF8'))) || convert_to(streams[j], 'UTF8');
    END LOOP;
    SELECT array_agg(h ORDER BY c.i) INTO heads
      FROM unnest(chains) WITH ORDINALITY AS c(chain, i) LEFT JOIN lz_chain_heads h ON h.chain = c.chain;
    FOR j IN 1 .. coalesce(array_length(chains, 1), 0) LOOP
        e_seq[-j] := coalesce((heads[j]).seq, 0);
        e_hash[-j] := coalesce((heads[j]).hash, '\x0000000000000000000000000000000000000000000000000000000000000000');
        c_last[j] := -j;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        n := p_counts[i];
        idx := i;
        IF p_ids[ev : ev + n - 1] && taken_ids OR p_ids[ev : ev + n - 1] && stored_ids THEN
            status := 'duplicate'; stream_version := NULL; first_position := NULL;
        ELSE
            si := array_position(streams, p_streams[i]);
            cur := versions[si];
            IF p_expected[i] <> -1 AND p_expected[i] <> cur THEN
                status := 'conflict'; stream_version := cur; first_position := NULL;
            ELSE
                ci := stream_chain[si];
                FOR k IN 1 .. n LOOP
                    m := m + 1;
                    x := ev + k - 1;
                    e_at[m] := x;
                    e_stream[m] := p_streams[i];
                    e_version[m] := cur + k;
                    e_seq[m] := e_seq[c_last[ci]] + 1;
                    e_hash[m] := sha256(
                        '\x4c5a4331'::bytea || e_hash[c_last[ci]] || int8send(head + k) || int8send(e_seq[m])
                        || stream_field[si] || int4send(cur + k) || uuid_send(p_ids[x])
                        || int4send(octet_length(convert_to(p_types[x], 'UTF8'))) || convert_to(p_types[x], 'UTF8')
                        || int4send(octet_length(p_data[x])) || p_data[x]
                        || int4send(octet_length(p_meta[x])) || p_meta[x]
                        || at_us);
                    c_last[ci] := m;
                END LOOP;
                taken_ids := taken_ids || p_ids[ev : ev + n - 1];
                versions[si] := cur + n;
                status := 'ok'; stream_version := cur + n; first_position := head + 1;
                head := head + n;
            END IF;
        END IF;
        RETURN NEXT;
        ev := ev + n;
    END LOOP;
    IF m > 0 THEN
        INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at,
                               chain_seq, chain_hash)
        SELECT head - m + j, e_stream[j], e_version[j], p_ids[e_at[j]], p_types[e_at[j]], p_data[e_at[j]],
               p_meta[e_at[j]], p_at, e_seq[j], e_hash[j]
        FROM generate_series(1, m) AS j;
        -- Each chain's head moves to its last event of the batch; a chain new in this batch gets its row.
        UPDATE lz_chain_heads h SET seq = e_seq[u.last], position = head - m + u.last, hash = e_hash[u.last]
          FROM unnest(chains, c_last) WITH ORDINALITY AS u(chain, last, i)
         WHERE h.chain = u.chain AND u.last > 0 AND e_seq[-u.i::int] > 0;
        IF 0 = ANY (e_seq[-array_length(chains, 1) : -1]) THEN
            INSERT INTO lz_chain_heads (chain, seq, position, hash)
            SELECT u.chain, e_seq[u.last], head - m + u.last, e_hash[u.last]
              FROM unnest(chains, c_last) WITH ORDINALITY AS u(chain, last, i)
             WHERE u.last > 0 AND e_seq[-u.i::int] = 0;
        END IF;
    END IF;
    UPDATE lz_event_head SET position = head WHERE id = 1;
    PERFORM pg_notify('lz_events', head::text);
END $$
"""

STORE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        namespace="eventstore",
        version=1,
        name="events",
        postgresql=(
            "CREATE TABLE lz_events ("
            " position BIGINT PRIMARY KEY,"
            " stream TEXT NOT NULL,"
            " version INT NOT NULL,"
            " event_id UUID NOT NULL UNIQUE,"
            " type TEXT NOT NULL,"
            " data BYTEA NOT NULL,"
            " metadata BYTEA NOT NULL,"
            " recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),"
            " UNIQUE (stream, version))",
            # One row whose lock orders every append: positions are handed out in commit order.
            "CREATE TABLE lz_event_head (id INT PRIMARY KEY CHECK (id = 1), position BIGINT NOT NULL)",
            "INSERT INTO lz_event_head (id, position) VALUES (1, 0)",
        ),
        sqlite=(
            "CREATE TABLE lz_events ("
            " position INTEGER PRIMARY KEY,"
            " stream TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " event_id TEXT NOT NULL UNIQUE,"
            " type TEXT NOT NULL,"
            " data BLOB NOT NULL,"
            " metadata BLOB NOT NULL,"
            " recorded_at TEXT NOT NULL,"
            " UNIQUE (stream, version))",
        ),
    ),
    Migration(
        namespace="eventstore",
        version=2,
        name="group_commit_function",
        postgresql=(
            _APPEND_BATCH_FUNCTION_V2,
            # Plans cached while lz_events was tiny would scan it forever after; plan each call afresh.
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_custom_plan",
        ),
        sqlite=(),
    ),
    Migration(
        namespace="eventstore",
        version=3,
        name="hash_chain",
        postgresql=(
            "ALTER TABLE lz_events ADD COLUMN chain_seq BIGINT, ADD COLUMN chain_hash BYTEA",
            "CREATE TABLE lz_chain_heads (chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, position BIGINT NOT NULL,"
            " hash BYTEA NOT NULL)",
            # Events up to here predate the chain; any later event without a link is a forgery.
            "CREATE TABLE lz_chain_start (id INT PRIMARY KEY CHECK (id = 1), position BIGINT NOT NULL)",
            "INSERT INTO lz_chain_start (id, position) SELECT 1, position FROM lz_event_head WHERE id = 1",
            _APPEND_BATCH_FUNCTION_V3,
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_custom_plan",
        ),
        sqlite=(
            "ALTER TABLE lz_events ADD COLUMN chain_seq INTEGER",
            "ALTER TABLE lz_events ADD COLUMN chain_hash BLOB",
            "CREATE TABLE lz_chain_heads (chain TEXT PRIMARY KEY, seq INTEGER NOT NULL, position INTEGER NOT NULL,"
            " hash BLOB NOT NULL)",
            "CREATE TABLE lz_chain_start (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
            "INSERT INTO lz_chain_start (id, position) SELECT 1, COALESCE(MAX(position), 0) FROM lz_events",
        ),
    ),
    Migration(
        namespace="eventstore",
        version=4,
        name="audit_checkpoints_and_export_cursors",
        # Signed checkpoints of each tenant's chain head (engine/audit/chain.py), the tenant's Ed25519 key
        # sealed under its data key, and where each export sink has got to (at-least-once, resumable).
        postgresql=(
            "CREATE TABLE lz_audit_signing_keys (tenant TEXT PRIMARY KEY, public_key BYTEA NOT NULL,"
            " sealed_private_key BYTEA NOT NULL, created_at TEXT NOT NULL)",
            "CREATE TABLE lz_audit_checkpoints (tenant TEXT NOT NULL, seq BIGINT NOT NULL, position BIGINT NOT NULL,"
            " hash BYTEA NOT NULL, at TEXT NOT NULL, signature BYTEA NOT NULL, witnessed_at TEXT,"
            " PRIMARY KEY (tenant, seq))",
            "CREATE TABLE lz_audit_export_cursors (sink TEXT PRIMARY KEY, position BIGINT NOT NULL,"
            " updated_at TEXT NOT NULL)",
        ),
        sqlite=(
            "CREATE TABLE lz_audit_signing_keys (tenant TEXT PRIMARY KEY, public_key BLOB NOT NULL,"
            " sealed_private_key BLOB NOT NULL, created_at TEXT NOT NULL)",
            "CREATE TABLE lz_audit_checkpoints (tenant TEXT NOT NULL, seq INTEGER NOT NULL, position INTEGER NOT NULL,"
            " hash BLOB NOT NULL, at TEXT NOT NULL, signature BLOB NOT NULL, witnessed_at TEXT,"
            " PRIMARY KEY (tenant, seq))",
            "CREATE TABLE lz_audit_export_cursors (sink TEXT PRIMARY KEY, position INTEGER NOT NULL,"
            " updated_at TEXT NOT NULL)",
        ),
    ),
    Migration(
        namespace="eventstore",
        version=5,
        name="sqlite_chained_append",
        # SQLite only: appends insert through this view, whose trigger writes the event and moves its chain's
        # head in one statement (each statement is a round trip to aiosqlite's thread; the chain cost two).
        # Rows written into lz_events directly do not fire it. Literal SQL, as every migration.
        postgresql=(),
        sqlite=(
            "CREATE VIEW lz_chained_events AS SELECT position, stream, version, event_id, type, data, metadata,"
            " recorded_at, chain_seq, chain_hash, NULL AS chain FROM lz_events WHERE 0",
            "CREATE TRIGGER lz_chained_events_insert INSTEAD OF INSERT ON lz_chained_events BEGIN"
            " INSERT INTO lz_events (position, stream, version, event_id, type, data, metadata, recorded_at,"
            " chain_seq, chain_hash) VALUES (NEW.position, NEW.stream, NEW.version, NEW.event_id, NEW.type,"
            " NEW.data, NEW.metadata, NEW.recorded_at, NEW.chain_seq, NEW.chain_hash);"
            " INSERT INTO lz_chain_heads (chain, seq, position, hash)"
            " VALUES (NEW.chain, NEW.chain_seq, NEW.position, NEW.chain_hash)"
            " ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, position = excluded.position,"
            " hash = excluded.hash; END",
        ),
    ),
    Migration(
        namespace="eventstore",
        version=6,
        name="append_batch_in_one_insert",
        postgresql=(
            _CHAIN_HEADS_OF,
            _CHAIN_HEADS_MOVE,
            _APPEND_BATCH_FUNCTION_V4,
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_custom_plan",
        ),
        sqlite=(),
    ),
    Migration(
        namespace="eventstore",
        version=7,
        name="append_batch_reads_once",
        postgresql=(
            _APPEND_READS_FUNCTION,
            _APPEND_BATCH_FUNCTION_V5,
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_generic_plan",
            # Migration 6's helpers: the append function now reads and moves the chain heads itself.
            "DROP FUNCTION lz_chain_heads_of(text[])",
            "DROP FUNCTION lz_chain_heads_move(text[], bigint[], bigint[], bytea[], bigint[])",
        ),
        sqlite=(),
    ),
    Migration(
        namespace="eventstore",
        version=8,
        name="append_plans_once",
        postgresql=(
            "ALTER FUNCTION lz_append_reads(text[], uuid[]) SET plan_cache_mode = force_generic_plan",
            "ALTER FUNCTION lz_append_reads(text[], uuid[]) SET enable_seqscan = off",
            _APPEND_BATCH_FUNCTION_V6,
            "ALTER FUNCTION lz_append_batch(text[], int[], int[], uuid[], text[], bytea[], bytea[], timestamptz)"
            " SET plan_cache_mode = force_generic_plan",
        ),
        sqlite=(),
    ),
)


def pending(migrations: Iterable[Migration], done: set[tuple[str, int]]) -> list[Migration]:
    """Migrations not yet applied, in (namespace order of first appearance, version) order."""
    order: dict[str, int] = {}
    for m in migrations:
        order.setdefault(m.namespace, len(order))
    todo = [m for m in migrations if (m.namespace, m.version) not in done]
    _check_unique(todo)
    return sorted(todo, key=lambda m: (order[m.namespace], m.version))


def _check_unique(migrations: Sequence[Migration]) -> None:
    seen: set[tuple[str, int]] = set()
    for m in migrations:
        key = (m.namespace, m.version)
        if key in seen:
            raise ValueError(f"duplicate migration {m.namespace}:{m.version}")
        seen.add(key)
