#!/usr/bin/env bash
# Starts a local PostgreSQL server for the store tests and prints its URL on
# stdout (and nothing else there; progress goes to stderr). Idempotent: safe
# to run again on a machine where it already ran. Needs root (Debian/Ubuntu):
#
#   export SWITCHYARD_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"
#
# Installs the `postgresql` package if missing, starts the newest installed
# server's `main` cluster (creating it if missing), makes role `switchyard`
# (password `switchyard`, LOGIN CREATEDB) and database `switchyard_test` owned
# by it, and waits until that role can log in over TCP on 127.0.0.1.
set -euo pipefail

ROLE=switchyard
PASSWORD=switchyard
DB=switchyard_test
CLUSTER=main

log() { echo "postgres.sh: $*" >&2; }

# Major version of the newest installed server, or nothing.
newest_version() {
  { find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null || true; } |
    awk -F/ '{print $5}' | sort -V | tail -n1
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

main() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it may install packages; the server itself runs as user postgres)"
    exit 1
  fi

  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(newest_version)" ]; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    out=$(mktemp)
    # All descriptors redirected: a server started by the package scripts must
    # not hold a pipe of ours open.
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; } \
      </dev/null >"$out" 2>&1; then
      tail -n 40 "$out" >&2
      rm -f "$out"
      log "installing postgresql failed"
      exit 1
    fi
    rm -f "$out"
  fi

  local version port out
  version=$(newest_version)
  if [ -z "$version" ]; then
    log "no PostgreSQL server under /usr/lib/postgresql, even after installing"
    exit 1
  fi

  if ! pg_lsclusters -h | awk -v v="$version" -v c="$CLUSTER" '$1 == v && $2 == c {f=1} END {exit !f}'; then
    log "creating cluster $version/$CLUSTER"
    pg_createcluster "$version" "$CLUSTER" </dev/null >/dev/null
  fi
  port=$(pg_lsclusters -h | awk -v v="$version" -v c="$CLUSTER" '$1 == v && $2 == c {print $3}')

  if pg_ctlcluster "$version" "$CLUSTER" status >/dev/null 2>&1; then
    log "cluster $version/$CLUSTER already running on port $port"
  else
    log "starting cluster $version/$CLUSTER on port $port"
    # The daemon must not inherit a pipe of ours, or a caller reading our
    # output ("$(bash postgres.sh)") would wait for it forever.
    out=$(mktemp)
    if ! pg_ctlcluster "$version" "$CLUSTER" start </dev/null >"$out" 2>&1; then
      cat "$out" >&2
      tail -n 30 "/var/log/postgresql/postgresql-$version-$CLUSTER.log" >&2 || true
      rm -f "$out"
      exit 1
    fi
    rm -f "$out"
  fi

  local i ok=0
  for i in $(seq 1 60); do
    if as_postgres psql -p "$port" -qAtc 'SELECT 1' >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  if [ "$ok" -ne 1 ]; then
    log "server did not come up; log tail:"
    tail -n 30 "/var/log/postgresql/postgresql-$version-$CLUSTER.log" >&2 || true
    exit 1
  fi

  log "ensuring role $ROLE and database $DB"
  as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END
\$\$;
SQL
  if [ "$(as_postgres psql -p "$port" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
    as_postgres createdb -p "$port" -O "$ROLE" "$DB"
  fi

  ok=0
  for i in $(seq 1 60); do
    if PGPASSWORD="$PASSWORD" PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DB" \
      -qAtc 'SELECT 1' >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  if [ "$ok" -ne 1 ]; then
    log "cannot log in as $ROLE on 127.0.0.1:$port (check pg_hba.conf and listen_addresses)"
    exit 1
  fi

  log "ready on 127.0.0.1:$port"
  URL="postgres://$ROLE:$PASSWORD@127.0.0.1:$port/$DB"
}

URL=""
main >&2 # progress only on stderr
echo "$URL"
