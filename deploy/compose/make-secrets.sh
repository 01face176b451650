#!/usr/bin/env bash
# Generates the secrets deploy/compose.yaml mounts, once: random passwords
# and the files derived from them (pgpass files, the enrolment service's
# database URL). Existing files are kept, so re-running changes nothing.
#
#   deploy/compose/make-secrets.sh            # into deploy/compose/secrets/
#   SECRETS_DIR=/elsewhere deploy/compose/make-secrets.sh
#
# The directory is 0700 (only you); the files in it are 0644 because the
# containers read them as their own users (compose bind-mounts secrets
# with the host file's mode). Never commit them (.gitignore).
set -euo pipefail
dir=${SECRETS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets}
install -d -m 0700 "$dir"
umask 022

password() { # password NAME: 32 random bytes, hex
  [ -s "$dir/$1" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$dir/$1"
}
derived() { # derived NAME CONTENT
  [ -s "$dir/$1" ] || printf '%s\n' "$2" >"$dir/$1"
}

for p in db-owner-password db-replication-password gate-hk-lane-a-password gate-sz-lane-b-password \
         enrolment-password grafana-admin-password; do
  password "$p"
done
derived gate-hk-lane-a-pgpass "*:*:loopgate:gate_hk_lane_a:$(cat "$dir/gate-hk-lane-a-password")"
derived gate-sz-lane-b-pgpass "*:*:loopgate:gate_sz_lane_b:$(cat "$dir/gate-sz-lane-b-password")"
derived db-owner-pgpass "*:*:loopgate:loopgate_owner:$(cat "$dir/db-owner-password")"
derived enrolment-database-url "postgres://enrolment:$(cat "$dir/enrolment-password")@db-primary:5432/loopgate?sslmode=disable&application_name=enrolment"
chmod 0644 "$dir"/*
echo "secrets in $dir: $(ls "$dir" | tr '\n' ' ')"
