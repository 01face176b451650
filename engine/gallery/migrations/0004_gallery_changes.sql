-- A change feed of the gallery, so gate nodes keep a local copy of it
-- (engine/localgallery) and refresh only the people who changed.
--
-- Every statement that touches people, face_templates or person_gates adds
-- one row per affected person here (ids only: no template, no name, no
-- biometric data) and notifies channel 'loopgate_gallery' with the newest
-- seq. NOTIFY reaches listeners on the primary only (a hot standby delivers
-- no notifications), so readers on a streaming replica poll this table; the
-- poll is one index scan.
--
-- seq alone cannot tell a reader what it has seen: identity values are taken
-- when a row is inserted, not when its transaction commits, so a lower seq
-- can become visible after a higher one. xid is the writing transaction's id:
-- a reader that remembers the xmin of the snapshot it last read at re-reads
-- every row with xid >= that xmin, which covers each transaction that was
-- still running then (engine/localgallery's package doc has the argument).

CREATE TABLE gallery_changes (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: anything may have changed (a TRUNCATE), reload everything.
    person_id  bigint,
    xid        bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gallery_changes_xid_idx ON gallery_changes (xid);
CREATE INDEX gallery_changes_changed_idx ON gallery_changes (changed_at);

-- Statement-level: one feed row per distinct person a statement touched.
-- TG_ARGV[0] names the column holding the person's id.
CREATE FUNCTION gallery_note_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO gallery_changes (person_id) VALUES (NULL) RETURNING seq INTO top;
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format('WITH ins AS (INSERT INTO gallery_changes (person_id) SELECT DISTINCT %I FROM new_rows RETURNING seq)
                        SELECT max(seq) FROM ins', TG_ARGV[0]) INTO top;
    ELSIF TG_OP = 'UPDATE' THEN
        EXECUTE format('WITH ins AS (INSERT INTO gallery_changes (person_id) SELECT %1$I FROM new_rows UNION SELECT %1$I FROM old_rows RETURNING seq)
                        SELECT max(seq) FROM ins', TG_ARGV[0]) INTO top;
    ELSE
        EXECUTE format('WITH ins AS (INSERT INTO gallery_changes (person_id) SELECT DISTINCT %I FROM old_rows RETURNING seq)
                        SELECT max(seq) FROM ins', TG_ARGV[0]) INTO top;
    END IF;
    IF top IS NOT NULL THEN
        PERFORM pg_notify('loopgate_gallery', top::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER people_changes_ins AFTER INSERT ON people
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('id');
CREATE TRIGGER people_changes_upd AFTER UPDATE ON people
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('id');
CREATE TRIGGER people_changes_del AFTER DELETE ON people
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('id');
CREATE TRIGGER people_changes_trunc AFTER TRUNCATE ON people
    FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change();

CREATE TRIGGER face_templates_changes_ins AFTER INSERT ON face_templates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('person_id');
CREATE TRIGGER face_templates_changes_upd AFTER UPDATE ON face_templates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('person_id');
CREATE TRIGGER face_templates_changes_del AFTER DELETE ON face_templates
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('person_id');
CREATE TRIGGER face_templates_changes_trunc AFTER TRUNCATE ON face_templates
    FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change();

CREATE TRIGGER person_gates_changes_ins AFTER INSERT ON person_gates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('person_id');
CREATE TRIGGER person_gates_changes_upd AFTER UPDATE ON person_gates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('person_id');
CREATE TRIGGER person_gates_changes_del AFTER DELETE ON person_gates
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change('person_id');
CREATE TRIGGER person_gates_changes_trunc AFTER TRUNCATE ON person_gates
    FOR EACH STATEMENT EXECUTE FUNCTION gallery_note_change();

-- gallery_changes_prune deletes feed rows older than keep and returns how
-- many. Run it from cron (say daily). keep must be longer than every node's
-- gallery.max_staleness: a node whose copy went stale reloads everything
-- instead of reading the feed, so it never needs rows older than that.
CREATE FUNCTION gallery_changes_prune(keep interval DEFAULT interval '7 days') RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM gallery_changes WHERE changed_at < now() - keep RETURNING 1)
    SELECT count(*) FROM gone
$$;

-- Nodes that read the gallery from a streaming replica write their own
-- clock here, on the primary, every second; the value they read back from
-- the replica bounds how far the replica lags (a replica cut off from its
-- primary keeps answering, with old data). One row per node.
CREATE TABLE gallery_heartbeats (
    node text PRIMARY KEY CHECK (length(node) BETWEEN 1 AND 200),
    beat timestamptz NOT NULL
);
