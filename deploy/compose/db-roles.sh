#!/usr/bin/env bash
# After `loopgate migrate`: the group roles of deploy/roles.sql, then one
# login role per service with the password make-secrets.sh generated.
# Idempotent: run on every `docker compose up`.
set -euo pipefail
export PGHOST=db-primary PGPORT=5432 PGDATABASE=loopgate PGUSER=loopgate_owner
export PGPASSWORD
PGPASSWORD=$(cat /run/secrets/db-owner-password)
psql -v ON_ERROR_STOP=1 -q -f /etc/loopgate/roles.sql

login() { # login NAME GROUP PASSWORD_FILE
  psql -v ON_ERROR_STOP=1 -q -v name="$1" -v grp="$2" -v pw="$(cat "$3")" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN IN ROLE %I', :'name', :'grp')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'name', :'pw') \gexec
SQL
}
login gate_hk_lane_a loopgate_gate /run/secrets/gate-hk-lane-a-password
login gate_sz_lane_b loopgate_gate /run/secrets/gate-sz-lane-b-password
login enrolment loopgate_enrolment /run/secrets/enrolment-password
echo "db-roles: roles.sql applied, login roles gate_hk_lane_a, gate_sz_lane_b, enrolment set"
