#!/usr/bin/env bash
# The project-local PostgreSQL cluster: loopgate's embedded default database.
#
#   localdb.sh start   create (first time) and start the cluster, create the databases
#   localdb.sh stop    stop it
#   localdb.sh status  say whether it runs
#   localdb.sh url [DB]  print the connection URL for database DB (default loopgate)
#
# Data lives under .loopgate/pg in the project (git-ignored); the server listens
# only on a Unix socket in .loopgate/pg/run, on its own port, so it never clashes
# with a system PostgreSQL. initdb refuses to run as root, so as root the
# cluster belongs to an unprivileged system user (loopgate-pg).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PORT=${LOOPGATE_PG_PORT:-55432}
base=${LOOPGATE_PG_DIR:-$root/.loopgate/pg}
set_paths() {
  # The server user may not be able to follow a link inside the checkout, so
  # it is always given resolved paths.
  if [ -L "$base" ]; then base=$(readlink -f "$base"); fi
  data=$base/data
  run=$base/run
  log=$base/server.log
}
set_paths
dbuser=loopgate
os_user=loopgate-pg

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$os_user" -- "$@")
  else
    "$@"
  fi
}

url() {
  local db=${1:-loopgate}
  echo "postgres://$dbuser@/$db?host=$run&port=$PORT&sslmode=disable"
}

running() {
  [ -f "$data/postmaster.pid" ] && as_owner "$PG_BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1
}

ensure_owner() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id -u "$os_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$os_user"
  fi
  # The unprivileged owner must be able to reach the data directory. When the
  # checkout sits below a private directory (say /root), keep the cluster in
  # /var/lib/loopgate and link it from .loopgate/pg, so paths stay the same.
  if [ -z "${LOOPGATE_PG_DIR:-}" ] && [ ! -L "$base" ] && [ ! -d "$data" ] \
     && ! runuser -u "$os_user" -- test -x "$root/.loopgate" 2>/dev/null; then
    local outside
    outside=/var/lib/loopgate/pg-$(printf %s "$root" | sha256sum | cut -c1-12)
    echo "localdb: $os_user cannot reach $root; keeping the cluster in $outside (linked from $base)"
    mkdir -p "$outside"
    rmdir "$base" 2>/dev/null || true
    ln -sfn "$outside" "$base"
    set_paths
  fi
  mkdir -p "$base/"
  if ! runuser -u "$os_user" -- test -x "$base/" 2>/dev/null; then
    echo "localdb: user $os_user cannot reach $base (a parent directory is not searchable)." >&2
    echo "localdb: set LOOPGATE_PG_DIR to a directory it can reach, or LOOPGATE_DATABASE_URL to another PostgreSQL." >&2
    exit 1
  fi
}

start() {
  if [ ! -x "$PG_BINDIR/initdb" ]; then
    echo "localdb: $PG_BINDIR/initdb not found: run deploy/install-deps.sh first" >&2
    exit 1
  fi
  sock="$run/.s.PGSQL.$PORT"
  if [ ${#sock} -gt 100 ]; then
    echo "localdb: socket path $sock is too long for a Unix socket; set LOOPGATE_PG_DIR to a shorter path" >&2
    exit 1
  fi
  mkdir -p "$root/.loopgate"
  ensure_owner
  mkdir -p "$base/"
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "localdb: creating cluster in $data"
    mkdir -p "$data" "$run"
    [ "$(id -u)" -eq 0 ] && chown -R "$os_user:" "$base/"
    chmod 0700 "$data" "$run"
    as_owner "$PG_BINDIR/initdb" -D "$data" -U "$dbuser" --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$base/initdb.log" 2>&1 || {
      cat "$base/initdb.log" >&2; exit 1; }
    cat >>"$data/postgresql.conf" <<CONF
# loopgate project-local cluster
listen_addresses = ''
port = $PORT
unix_socket_directories = '$run'
unix_socket_permissions = 0700
shared_buffers = 256MB
max_connections = 50
fsync = on
CONF
  fi
  if running; then
    echo "localdb: running ($(url))"
  else
    [ "$(id -u)" -eq 0 ] && chown "$os_user:" "$base/"
    mkdir -p "$run"; [ "$(id -u)" -eq 0 ] && chown "$os_user:" "$run"
    as_owner "$PG_BINDIR/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null || {
      tail -n 20 "$log" >&2; exit 1; }
    echo "localdb: started ($(url))"
  fi
  for db in loopgate loopgate_test; do
    if ! as_owner "$PG_BINDIR/psql" -h "$run" -p "$PORT" -U "$dbuser" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      as_owner "$PG_BINDIR/createdb" -h "$run" -p "$PORT" -U "$dbuser" "$db"
      echo "localdb: created database $db"
    fi
  done
}

stop() {
  if running; then
    as_owner "$PG_BINDIR/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "localdb: stopped"
  else
    echo "localdb: not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "localdb: running ($(url))"; else echo "localdb: not running"; exit 3; fi ;;
  url) url "${2:-loopgate}" ;;
  *) echo "usage: $0 start|stop|status|url [DB]" >&2; exit 2 ;;
esac
