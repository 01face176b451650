-- loopgate database roles: least privilege for gate nodes and the enrolment
-- service. Tested by deploy/roles_test.go against the real database.
--
-- Run it after every `loopgate migrate` (new tables get their grants only
-- then), as the owner of the loopgate tables or a superuser, holding
-- CREATEROLE, with search_path set to the loopgate schema:
--
--   PGOPTIONS='-c search_path=loopgate' \
--     psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f deploy/roles.sql
--
-- (or put options=-csearch_path%3Dloopgate in the URL). It is idempotent and
-- converges: every privilege of the two roles on the schema's tables and
-- sequences is revoked, then exactly the list below is granted again, so a
-- privilege dropped from this file disappears on the next run. Roles are
-- cluster-wide: they are created only when missing (never altered, so two
-- runs at once cannot collide on pg_authid), and a run refuses to continue if
-- one of them exists but can log in.
--
-- The two roles are NOLOGIN groups. Give every node and service its own login
-- role that inherits one of them, so pg_stat_activity and the server log say
-- which node did what, and one node's password can be revoked alone:
--
--   CREATE ROLE gate_hk_lane_a LOGIN PASSWORD '…' IN ROLE loopgate_gate;
--   ALTER ROLE gate_hk_lane_a SET search_path = loopgate, public;
--   CREATE ROLE enrolment_hk LOGIN PASSWORD '…' IN ROLE loopgate_enrolment;
--
-- (login roles INHERIT by default). Passwords belong in the nodes' pgpass
-- credentials (deploy/systemd, LoadCredential=), never in this repository.
--
-- loopgate_gate       reads the gallery (people, face_templates, person_gates,
--                     gallery_changes, schema_migrations), keeps its own
--                     heartbeat row in gallery_heartbeats (engine/localgallery:
--                     INSERT … ON CONFLICT (node) DO UPDATE SET beat) and
--                     appends decisions. It can read no decision back except
--                     the event_id column: the audit sink's
--                     INSERT … ON CONFLICT (event_id) DO NOTHING needs SELECT
--                     on the conflict column (PostgreSQL 15 refuses the
--                     statement with INSERT alone; checked in roles_test.go).
--                     No UPDATE or DELETE of the gallery or of decisions, no
--                     accounts, tokens, photos or audit log.
-- loopgate_enrolment  what enroll/ does: people (DELETE is an admin's erasure;
--                     the database cascades it to templates, gates, history
--                     and photos, and sets decisions.person_id NULL as the
--                     tables' owner), enrolments, face_templates (DELETE:
--                     re-enrolment replaces templates), template_history,
--                     photos (DELETE: retention expiry), person_gates,
--                     gallery_changes (its triggers run as the writer and
--                     read back seq), accounts, api_tokens; enrolment_audit
--                     is append-only (SELECT, INSERT; its triggers refuse
--                     UPDATE, DELETE and TRUNCATE even for the owner). No
--                     access to decisions at all: it cannot read, change or
--                     delete the audit trail of the gates.
--
-- A table named here that does not exist yet is skipped with a NOTICE;
-- run this again after migrating.

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['loopgate_gate', 'loopgate_enrolment'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created by a concurrent run
            END;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = r AND (rolcanlogin OR rolsuper OR rolbypassrls)) THEN
            RAISE EXCEPTION 'roles.sql: role % exists but can log in, is a superuser or bypasses RLS: it must be a NOLOGIN group role', r;
        END IF;
    END LOOP;
END
$roles$;

DO $grants$
DECLARE
    s     text := current_schema();
    g     record;
    seq   regclass;
    roles text := 'loopgate_gate, loopgate_enrolment';
BEGIN
    IF s IS NULL THEN
        RAISE EXCEPTION 'roles.sql: no current schema: set search_path to the loopgate schema';
    END IF;
    IF to_regclass(format('%I.people', s)) IS NULL THEN
        RAISE EXCEPTION 'roles.sql: %.people does not exist: run `loopgate migrate` first, with this search_path', s;
    END IF;

    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %s', s, roles);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %s', s, roles);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %s', s, roles);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', s, roles);

    FOR g IN
        SELECT * FROM (VALUES
            ('loopgate_gate', 'schema_migrations',  'SELECT'),
            ('loopgate_gate', 'people',             'SELECT'),
            ('loopgate_gate', 'face_templates',     'SELECT'),
            ('loopgate_gate', 'person_gates',       'SELECT'),
            ('loopgate_gate', 'gallery_changes',    'SELECT'),
            ('loopgate_gate', 'gallery_heartbeats', 'SELECT, INSERT, UPDATE (beat)'),
            ('loopgate_gate', 'decisions',          'INSERT'),
            ('loopgate_gate', 'decisions',          'SELECT (event_id)'),

            ('loopgate_enrolment', 'schema_migrations', 'SELECT'),
            ('loopgate_enrolment', 'people',            'SELECT, INSERT, UPDATE, DELETE'),
            ('loopgate_enrolment', 'enrolments',        'SELECT, INSERT'),
            ('loopgate_enrolment', 'face_templates',    'SELECT, INSERT, DELETE'),
            ('loopgate_enrolment', 'template_history',  'SELECT, INSERT'),
            ('loopgate_enrolment', 'photos',            'SELECT, INSERT, DELETE'),
            ('loopgate_enrolment', 'person_gates',      'SELECT, INSERT, DELETE'),
            ('loopgate_enrolment', 'gallery_changes',   'SELECT, INSERT'),
            ('loopgate_enrolment', 'accounts',          'SELECT, INSERT, UPDATE'),
            ('loopgate_enrolment', 'api_tokens',        'SELECT, INSERT, UPDATE'),
            ('loopgate_enrolment', 'enrolment_audit',   'SELECT, INSERT')
        ) AS v(role, tbl, privs)
    LOOP
        IF to_regclass(format('%I.%I', s, g.tbl)) IS NULL THEN
            RAISE NOTICE 'roles.sql: %.% does not exist yet: % for % not granted (run this again after migrating)',
                s, g.tbl, g.privs, g.role;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT %s ON TABLE %I.%I TO %I', g.privs, s, g.tbl, g.role);
        -- Identity columns need no sequence privilege to insert; serial ones
        -- do. Either way the role may use the sequences of a table it inserts
        -- into, and no other.
        IF g.privs ~ '\mINSERT\M' THEN
            FOR seq IN
                SELECT d.objid::regclass
                FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                  AND d.refobjid = format('%I.%I', s, g.tbl)::regclass
                  AND c.relkind = 'S' AND d.deptype IN ('a', 'i')
            LOOP
                EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', seq, g.role);
            END LOOP;
        END IF;
    END LOOP;
END
$grants$;
