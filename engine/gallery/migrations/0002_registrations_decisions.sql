-- Registrations get a lifecycle and a gate scope; decisions get an audit table.

-- Only an active registration inside its validity window may ever produce an
-- open. A NULL bound is open-ended.
ALTER TABLE people
    ADD COLUMN status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    ADD COLUMN revoked_at     timestamptz,
    ADD COLUMN revoked_reason text,
    ADD COLUMN valid_from     timestamptz,
    ADD COLUMN valid_until    timestamptz,
    ADD COLUMN updated_at     timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT people_revoked_has_reason CHECK (status <> 'revoked' OR (revoked_at IS NOT NULL AND revoked_reason IS NOT NULL)),
    ADD CONSTRAINT people_window_ordered CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until);

-- The gates (or zones) each person may use. A gate node searches only the
-- people registered for its own gate and zones: the scope is part of the
-- search, so a smaller gallery means fewer false matches.
CREATE TABLE person_gates (
    person_id bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    gate      text NOT NULL CHECK (gate ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    PRIMARY KEY (person_id, gate)
);
CREATE INDEX person_gates_gate_idx ON person_gates (gate, person_id);

-- Every clearance decision, open or deny, as the gate node emitted it.
-- event_id makes the write idempotent (a retried insert is a no-op).
CREATE TABLE decisions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,
    gate        text NOT NULL,
    lane        text NOT NULL DEFAULT '',
    camera      text NOT NULL,
    track_id    bigint NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('open', 'deny')),
    reason      text NOT NULL,
    person_id   bigint REFERENCES people (id) ON DELETE SET NULL,
    distance    double precision,
    margin      double precision,
    threshold   double precision NOT NULL,
    frames_used int NOT NULL,
    first_seen  timestamptz NOT NULL,
    decided_at  timestamptz NOT NULL,
    -- The event as emitted, without biometric data (events carry no templates).
    event       jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_decided_idx ON decisions (gate, decided_at);
