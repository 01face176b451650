-- People who may cross, their enrolments, and their face templates.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE people (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id text NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 64),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per enrolment session (a CLI run, an officer's capture).
CREATE TABLE enrolments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    source      text NOT NULL,          -- 'cli', 'api', ...
    operator    text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE face_templates (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    enrolment_id  bigint NOT NULL REFERENCES enrolments (id) ON DELETE CASCADE,
    embedding     vector(128) NOT NULL,
    -- Which embedding weights produced it: templates from different
    -- weights are never compared with each other.
    model         text NOT NULL,
    photo_sha256  bytea NOT NULL CHECK (length(photo_sha256) = 32),
    face_box      int4[] NOT NULL CHECK (cardinality(face_box) = 4),
    image_width   int NOT NULL,
    image_height  int NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, photo_sha256)
);
CREATE INDEX face_templates_person_idx ON face_templates (person_id);
