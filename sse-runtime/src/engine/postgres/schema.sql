-- The schema of sse's Postgres engine and outbox, version 1. Every statement may run again:
-- `sse::postgres::migrate` applies it, and so does the engine when it starts.
-- Times are microseconds since 1970 on Postgres's clock; ids are a group's own sequence.

-- A group's sequence. Its row is locked by a publish until that publish's transaction ends,
-- so the ids of a group's events rise in the order their transactions commit.
CREATE TABLE IF NOT EXISTS sse_groups (
    name  text   PRIMARY KEY,
    seq   bigint NOT NULL,      -- the last id given (a new sequence starts at the clock)
    epoch bigint NOT NULL,      -- the first id of the sequence: older ids are not from it
    at    bigint NOT NULL       -- when it was last published to
);

-- A group's history: a row per batch of events published together, trimmed to the history
-- the settings keep (by count at each publish, by age every few seconds).
CREATE TABLE IF NOT EXISTS sse_events (
    grp   text   NOT NULL,
    last  bigint NOT NULL,      -- the id of the batch's last event
    first bigint NOT NULL,      -- the id of its first event
    at    bigint NOT NULL,      -- when it was published
    batch bytea  NOT NULL,      -- '<first id>:<length>,<length>... <the events, back to back>',
                                -- each event as sent, without its `id:` line
    PRIMARY KEY (grp, last)
);
CREATE INDEX IF NOT EXISTS sse_events_at ON sse_events (at);

-- Idempotency keys: the id a key's publish got, remembered for the idempotency window.
CREATE TABLE IF NOT EXISTS sse_once (
    grp text   NOT NULL,
    key text   NOT NULL,
    id  bigint NOT NULL,
    at  bigint NOT NULL,
    PRIMARY KEY (grp, key)
);

-- Presence: each process's count of a user's streams in a group, until it expires unless the
-- process writes it again.
CREATE TABLE IF NOT EXISTS sse_presence (
    grp     text    NOT NULL,
    process text    NOT NULL,
    usr     text    NOT NULL,
    streams integer NOT NULL,
    meta    text    NOT NULL,
    expires bigint  NOT NULL,
    PRIMARY KEY (grp, process, usr)
);

-- Relays into other engines (`sse::postgres::Relay`): while a relay is registered, a group's
-- events are trimmed only once relayed, up to the id in `sse_relayed`.
CREATE TABLE IF NOT EXISTS sse_relays (
    name text PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS sse_relayed (
    grp text   PRIMARY KEY,
    id  bigint NOT NULL         -- every event of the group up to this id was relayed
);

CREATE OR REPLACE FUNCTION sse_now() RETURNS bigint LANGUAGE sql AS
$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint $$;

-- Rung by every publish made inside an app's transaction (`sse_publish`), which sends no
-- notification: listening processes read it every few milliseconds, and look at their groups
-- while it moves. (A notification would make every committing transaction that publishes wait
-- for the others: Postgres holds one lock for the whole server from the commit of a transaction
-- that notified until its commit is on disk.)
CREATE SEQUENCE IF NOT EXISTS sse_published;

-- Waits until `sse_published` moves away from `seen` (at once when `seen` is null), or for
-- `wait_ms`, looking every 5 ms: its value then. A listening process waits here, so that
-- waiting costs it no round trip. (The statement's snapshot holds back vacuum only as long as
-- one wait.)
CREATE OR REPLACE FUNCTION sse_ring(seen bigint, wait_ms integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    rung bigint;
    deadline timestamptz := clock_timestamp() + wait_ms * interval '1 millisecond';
BEGIN
    LOOP
        SELECT s.last_value INTO rung FROM sse_published s;
        IF seen IS NULL OR rung <> seen OR clock_timestamp() >= deadline THEN
            RETURN rung;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
END
$$;

-- Numbers `n` events of group `g` (`events`: '<length>,<length>... <the events>') and keeps
-- them: the first one's id, and the batch as kept; with an idempotency key `once` given within
-- `once_us`, keeps nothing and returns the id the key got, and no batch. Keeps the events of
-- the group's last `keep` ids, and up to `keep / 16` more: it trims when the ids cross a
-- multiple of that, since each trim walks the index past the rows deleted since the last
-- vacuum, as many for one row as for many.
-- Publishes to one group wait for each other on an advisory lock taken before the group's row:
-- waiting on the row itself, every waiter would wake and retry at each commit.
CREATE OR REPLACE FUNCTION sse_store(
    g text, events bytea, n integer, once text, keep bigint, once_us bigint,
    OUT first bigint, OUT batch bytea
) LANGUAGE plpgsql AS $$
DECLARE
    now_us bigint;
    v_last bigint;
    v_kept bigint;
    v_step bigint := greatest(keep / 16, 1);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('sse_groups:' || g, 0));
    -- Read under the lock, so that a group's times rise with its ids (readers order by them).
    now_us := sse_now();
    IF once IS NULL THEN
        INSERT INTO sse_groups AS s (name, seq, epoch, at) VALUES (g, now_us + n - 1, now_us, now_us)
            ON CONFLICT (name) DO UPDATE SET seq = s.seq + n, at = now_us
            RETURNING s.seq INTO v_last;
    ELSE
        INSERT INTO sse_groups AS s (name, seq, epoch, at) VALUES (g, now_us - 1, now_us, now_us)
            ON CONFLICT (name) DO UPDATE SET at = now_us
            RETURNING s.seq INTO v_last;
        SELECT o.id INTO first FROM sse_once o
            WHERE o.grp = g AND o.key = once AND o.at >= now_us - once_us;
        IF FOUND THEN
            RETURN;
        END IF;
        v_last := v_last + n;
        UPDATE sse_groups SET seq = v_last WHERE name = g;
        INSERT INTO sse_once (grp, key, id, at) VALUES (g, once, v_last - n + 1, now_us)
            ON CONFLICT (grp, key) DO UPDATE SET id = EXCLUDED.id, at = EXCLUDED.at;
    END IF;
    first := v_last - n + 1;
    batch := convert_to(first::text || ':', 'UTF8') || events;
    INSERT INTO sse_events (grp, last, first, at, batch) VALUES (g, v_last, first, now_us, batch);
    v_kept := v_last - keep;
    IF EXISTS (SELECT 1 FROM sse_relays) THEN
        v_kept := least(v_kept, coalesce((SELECT r.id FROM sse_relayed r WHERE r.grp = g), 0));
    END IF;
    IF v_last / v_step <> (v_last - n) / v_step THEN
        DELETE FROM sse_events e WHERE e.grp = g AND e.last <= v_kept;
    END IF;
END
$$;

-- Tells listening processes, on channel `sse_events` when the transaction commits, of the
-- batch of group `g` that `sse_store` kept: '<group>\n<batch>', or '<group>\n<first id>-<last
-- id>' for a batch too large for a notification (or holding a NUL), which they read from
-- `sse_events`.
CREATE OR REPLACE FUNCTION sse_notify(g text, first bigint, n integer, batch bytea)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(batch) + octet_length(g) <= 7900 AND position('\x00'::bytea IN batch) = 0 THEN
        PERFORM pg_notify('sse_events', g || E'\n' || convert_from(batch, 'UTF8'));
    ELSE
        PERFORM pg_notify('sse_events', g || E'\n' || first || '-' || (first + n - 1));
    END IF;
END
$$;

-- Publishes inside the caller's transaction (`sse::postgres::publish`): `sse_store`, then rings
-- `sse_published` instead of notifying, so that concurrent transactions that publish share
-- their commits' flushes. Listening processes find the events in `sse_events` within a few
-- milliseconds of the commit. With no history to find them in (`keep` 0), it notifies.
-- Returns the first event's id.
CREATE OR REPLACE FUNCTION sse_publish(
    g text, events bytea, n integer, once text, keep bigint, once_us bigint
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    stored record;
BEGIN
    SELECT * INTO stored FROM sse_store(g, events, n, once, keep, once_us);
    IF stored.batch IS NOT NULL THEN
        IF keep = 0 THEN
            PERFORM sse_notify(g, stored.first, n, stored.batch);
        ELSE
            PERFORM nextval('sse_published');
        END IF;
    END IF;
    RETURN stored.first;
END
$$;

-- Where group `g` stands, and its history: none (`after` and `last_n` null), the batches
-- holding its events after id `after` (at most `max` batches), or its last `last_n` batches.
-- `trimmed` is the highest id no longer kept (all of them when nothing is).
CREATE OR REPLACE FUNCTION sse_read(
    g text, after bigint, last_n integer, max integer,
    OUT seq bigint, OUT epoch bigint, OUT now_us bigint, OUT trimmed bigint,
    OUT ats bigint[], OUT batches bytea[]
) LANGUAGE plpgsql AS $$
BEGIN
    now_us := sse_now();
    -- Inserted only when missing: an insert that meets the row while a transaction that
    -- published to the group is open waits for it to end, and publishing transactions may
    -- follow each other for longer than a statement may take.
    SELECT s.seq, s.epoch INTO seq, epoch FROM sse_groups s WHERE s.name = g;
    IF NOT FOUND THEN
        INSERT INTO sse_groups (name, seq, epoch, at) VALUES (g, now_us - 1, now_us, now_us)
            ON CONFLICT (name) DO NOTHING;
        SELECT s.seq, s.epoch INTO seq, epoch FROM sse_groups s WHERE s.name = g;
    END IF;
    trimmed := 0;
    ats := '{}';
    batches := '{}';
    IF after IS NULL AND last_n IS NULL THEN
        RETURN;
    END IF;
    SELECT e.first - 1 INTO trimmed FROM sse_events e WHERE e.grp = g ORDER BY e.last LIMIT 1;
    IF NOT FOUND THEN
        trimmed := seq;
        RETURN;
    END IF;
    IF last_n IS NOT NULL THEN
        SELECT coalesce(array_agg(x.at ORDER BY x.last), '{}'), coalesce(array_agg(x.batch ORDER BY x.last), '{}')
            INTO ats, batches
            FROM (SELECT e.last, e.at, e.batch FROM sse_events e WHERE e.grp = g
                  ORDER BY e.last DESC LIMIT last_n) x;
    ELSE
        SELECT coalesce(array_agg(x.at ORDER BY x.last), '{}'), coalesce(array_agg(x.batch ORDER BY x.last), '{}')
            INTO ats, batches
            FROM (SELECT e.last, e.at, e.batch FROM sse_events e WHERE e.grp = g AND e.last > after
                  ORDER BY e.last LIMIT max) x;
    END IF;
END
$$;

-- The engine's publishes (`Hub::publish`): several batches at once, in order, each kept by
-- `sse_store` and notified; the first id of each. With `sse.durable_publish = off`
-- (`ALTER DATABASE … SET`, or the connection's options), the engine's own transaction commits
-- without waiting for its WAL to reach the disk (the WAL writer flushes it within 3 ×
-- `wal_writer_delay`, 600 ms by default), so that it holds the notification lock, which the
-- whole server's notifying commits share, for no flush; but a crash of Postgres (not a clean
-- stop) can then lose the engine's last publishes after subscribers got them, and their ids
-- are given again.
CREATE OR REPLACE FUNCTION sse_publish_all(
    gs text[], events bytea[], ns integer[], onces text[], keep bigint, once_us bigint
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    firsts bigint[] := '{}';
    stored record;
BEGIN
    IF current_setting('sse.durable_publish', true) = 'off' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    FOR i IN 1 .. coalesce(cardinality(gs), 0) LOOP
        SELECT * INTO stored FROM sse_store(gs[i], events[i], ns[i], onces[i], keep, once_us);
        firsts := firsts || stored.first;
        IF stored.batch IS NOT NULL THEN
            PERFORM sse_notify(gs[i], stored.first, ns[i], stored.batch);
        END IF;
    END LOOP;
    RETURN firsts;
END
$$;

-- Drops what outlived its time: events older than `age_us` (once relayed, while relays are
-- registered), idempotency keys older than `once_us`, expired presence entries, and groups
-- quiet for `seq_us`.
CREATE OR REPLACE FUNCTION sse_trim(age_us bigint, once_us bigint, seq_us bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    now_us bigint := sse_now();
    relaying boolean := EXISTS (SELECT 1 FROM sse_relays);
BEGIN
    DELETE FROM sse_events e WHERE e.at < now_us - age_us
        AND (NOT relaying OR e.last <= coalesce((SELECT r.id FROM sse_relayed r WHERE r.grp = e.grp), 0));
    DELETE FROM sse_once o WHERE o.at < now_us - once_us;
    DELETE FROM sse_presence p WHERE p.expires < now_us;
    DELETE FROM sse_groups s WHERE s.at < now_us - seq_us
        AND NOT EXISTS (SELECT 1 FROM sse_events e WHERE e.grp = s.name);
END
$$;

-- Writes `process`'s entries of group `g` (users, their counts of streams there, the metadata
-- of their latest one; a count of 0 removes the entry), for `ttl_us`; with `whole`, they are all
-- of the process's entries of the group, and expired entries are dropped. Returns the users
-- who thereby joined the group (their first stream in any live process) or left it (their
-- last one). Syncs of a group run one at a time (an advisory lock), so each first stream and
-- each last one is seen by exactly one of them.
CREATE OR REPLACE FUNCTION sse_presence_sync(
    g text, process text, ttl_us bigint, whole boolean,
    users text[], counts integer[], metas text[]
) RETURNS TABLE (usr text, joined boolean, meta text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_us bigint := sse_now();
    before text[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sse_presence'), hashtext(g));
    SELECT coalesce(array_agg(DISTINCT p.usr), '{}') INTO before
        FROM sse_presence p WHERE p.grp = g AND p.expires >= now_us;
    IF whole THEN
        DELETE FROM sse_presence p WHERE p.grp = g
            AND (p.expires < now_us OR (p.process = sse_presence_sync.process AND p.usr <> ALL (users)));
    END IF;
    DELETE FROM sse_presence p USING unnest(users, counts) AS u(usr, streams)
        WHERE p.grp = g AND p.process = sse_presence_sync.process AND p.usr = u.usr AND u.streams <= 0;
    INSERT INTO sse_presence AS p (grp, process, usr, streams, meta, expires)
        SELECT g, sse_presence_sync.process, u.usr, u.streams, u.meta, now_us + ttl_us
        FROM unnest(users, counts, metas) AS u(usr, streams, meta) WHERE u.streams > 0
        ON CONFLICT (grp, process, usr) DO UPDATE
        SET streams = EXCLUDED.streams, meta = EXCLUDED.meta, expires = EXCLUDED.expires;
    RETURN QUERY
        SELECT a.usr, true, coalesce((SELECT m.meta FROM unnest(users, metas) AS m(usr, meta)
                                      WHERE m.usr = a.usr), '')
        FROM (SELECT DISTINCT p.usr FROM sse_presence p WHERE p.grp = g AND p.expires >= now_us) a
        WHERE a.usr <> ALL (before)
        UNION ALL
        SELECT b.usr, false, ''
        FROM unnest(before) AS b(usr)
        WHERE NOT EXISTS (SELECT 1 FROM sse_presence p
                          WHERE p.grp = g AND p.usr = b.usr AND p.expires >= now_us);
END
$$;

-- The users with streams of group `g` in live processes: their streams summed, with the
-- metadata of their latest entry.
CREATE OR REPLACE FUNCTION sse_presence_read(g text)
RETURNS TABLE (usr text, streams bigint, meta text) LANGUAGE sql AS $$
    SELECT p.usr, sum(p.streams), (array_agg(p.meta ORDER BY p.expires DESC))[1]
    FROM sse_presence p WHERE p.grp = g AND p.expires >= sse_now()
    GROUP BY p.usr ORDER BY p.usr
$$;
