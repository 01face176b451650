-- Officers' enrolment: registration details, template history, optional
-- sealed photos, accounts and API tokens, and an append-only audit log.

-- Which park's jurisdiction holds the record. NULL only for people enrolled
-- before this migration (the CLI); the API always sets it.
ALTER TABLE people
    ADD COLUMN organisation text NOT NULL DEFAULT '' CHECK (length(organisation) <= 200),
    ADD COLUMN home_park    text CHECK (home_park IN ('hk', 'sz'));

CREATE INDEX people_name_idx ON people (lower(name) text_pattern_ops);

-- Re-enrolment can replace templates. A replaced template's embedding is
-- deleted (a biometric is kept only while it is in use); its history row
-- keeps when, why and by whom, never the embedding. Deleting the person
-- removes the history too.
CREATE TABLE template_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    template_id  bigint NOT NULL,
    enrolment_id bigint,
    event        text NOT NULL CHECK (event IN ('added', 'replaced')),
    actor        text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX template_history_person_idx ON template_history (person_id, at);

-- Enrolment photos, kept only when the site turns retention on. The image
-- is sealed with AES-256-GCM by the application (the key never enters the
-- database); expires_at bounds how long it is kept.
CREATE TABLE photos (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    template_id  bigint REFERENCES face_templates (id) ON DELETE SET NULL,
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    key_id       text NOT NULL,
    sealed       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX photos_person_idx ON photos (person_id);
CREATE INDEX photos_expiry_idx ON photos (expires_at);

-- Officers and admins. password_hash is an argon2id PHC string.
CREATE TABLE accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    role          text NOT NULL CHECK (role IN ('officer', 'admin')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- Machine credentials. Only the SHA-256 of the secret is stored (the secret
-- is 256 random bits, so a fast hash is enough).
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    role         text NOT NULL CHECK (role IN ('officer', 'admin')),
    secret_sha256 bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Every enrolment action: who, what, when, from where. No biometric data:
-- detail holds ids, names, reasons and quality figures only. person_id is
-- not a foreign key so entries outlive a deleted person.
CREATE TABLE enrolment_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('account', 'token', 'cli', 'system')),
    actor_role  text NOT NULL DEFAULT '',
    remote_addr text NOT NULL DEFAULT '',
    action      text NOT NULL,
    subject     text NOT NULL DEFAULT '',
    person_id   bigint,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX enrolment_audit_at_idx ON enrolment_audit (at);
CREATE INDEX enrolment_audit_subject_idx ON enrolment_audit (subject, at);

-- Append-only even for the table's owner: rows can be inserted, never
-- changed or removed. (deploy/roles.sql also grants the application's role
-- INSERT and SELECT only.)
CREATE FUNCTION enrolment_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'enrolment_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER enrolment_audit_no_update BEFORE UPDATE OR DELETE ON enrolment_audit
    FOR EACH ROW EXECUTE FUNCTION enrolment_audit_append_only();
CREATE TRIGGER enrolment_audit_no_truncate BEFORE TRUNCATE ON enrolment_audit
    FOR EACH STATEMENT EXECUTE FUNCTION enrolment_audit_append_only();
