#!/usr/bin/env bash
# The primary's first start (docker-entrypoint-initdb.d): a replication role
# for the streaming replica, allowed in pg_hba.conf from the compose network.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set pw="$(cat "$REPLICATION_PASSWORD_FILE")" <<'SQL'
SELECT format('CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD %L', :'pw') \gexec
SQL
echo "host replication replicator samenet scram-sha-256" >>"$PGDATA/pg_hba.conf"
