#!/usr/bin/env bash
# The streaming replica: clone the primary once (pg_basebackup -R writes
# primary_conninfo and standby.signal), then run as a hot standby. Gate
# nodes read their gallery copy here (database.read_url).
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  export PGPASSWORD
  PGPASSWORD=$(cat "$REPLICATION_PASSWORD_FILE")
  until pg_isready -h "$PRIMARY_HOST" -p 5432 -U replicator -q; do sleep 1; done
  pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U replicator -D "$PGDATA" -X stream -R -C -S replica_1 --no-password
  chmod 0700 "$PGDATA"
  unset PGPASSWORD
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on
