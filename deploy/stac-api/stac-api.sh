#!/usr/bin/env bash
# A STAC API over sn9cloud's results: PostgreSQL + PostGIS (Debian packages), pgstac
# (migrated with pypgstac) and stac-fastapi-pgstac (uvicorn), all on 127.0.0.1, with the
# Transactions extension on (`sn9cloud run --stac-api`): it accepts writes from anyone who
# reaches it, so expose it only behind an authenticating proxy.
#
#   deploy/stac-api/stac-api.sh install                 # Debian packages, if missing (root)
#   deploy/stac-api/stac-api.sh start STATE_DIR [PG_PORT] [API_PORT]
#   deploy/stac-api/stac-api.sh stop STATE_DIR
#
# start writes STATE_DIR/env (PGSTAC_DSN, STAC_API_URL; source it) and keeps the database,
# logs and a generated password under STATE_DIR, nowhere else. PYTHON (default: the
# project's .venv) must have sn9cloud installed with its [api] extra.
set -euo pipefail

PGVER=15
PGBIN=/usr/lib/postgresql/$PGVER/bin
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$HERE/../../.venv/bin/python}"

die() { echo "stac-api: $*" >&2; exit 2; }

have_packages() {
  [ -x "$PGBIN/initdb" ] && ls /usr/share/postgresql/$PGVER/extension/postgis.control >/dev/null 2>&1
}

install() {
  have_packages && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL $PGVER with PostGIS is missing; run as root: apt-get install -y postgresql-$PGVER postgresql-$PGVER-postgis-3"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-$PGVER" "postgresql-$PGVER-postgis-3" >/dev/null
  # Debian's package may start a system cluster; this project runs its own throwaway one
  if command -v pg_ctlcluster >/dev/null; then pg_ctlcluster "$PGVER" main stop 2>/dev/null || true; fi
}

as_db_user() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local state="$1" pgport="${2:-54329}" apiport="${3:-8089}"
  have_packages || die "PostgreSQL/PostGIS not installed (run: $0 install)"
  [ -x "$PYTHON" ] || die "no Python at $PYTHON (set PYTHON)"
  mkdir -p "$state"
  state="$(cd "$state" && pwd)"
  local data="$state/pgdata" pw="$state/pgpassword"
  if [ ! -f "$pw" ]; then ( umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pw" ); fi
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$state"
    runuser -u postgres -- test -x "$state" || die "$state: the postgres user cannot reach it (choose a folder outside private ones)"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_db_user "$PGBIN/initdb" -D "$data" -U postgres --pwfile="$pw" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$state/initdb.log"
  fi
  as_db_user "$PGBIN/pg_ctl" -D "$data" -l "$state/postgres.log" -w -t 60 \
    -o "-p $pgport -k $state -c listen_addresses=127.0.0.1" start >/dev/null \
    || die "PostgreSQL did not start (see $state/postgres.log)"
  local password; password="$(cat "$pw")"
  local dsn="postgresql://postgres:$password@127.0.0.1:$pgport/postgres"
  "$PYTHON" -m pypgstac.pypgstac migrate --dsn "$dsn" >"$state/migrate.log" 2>&1 \
    || die "pypgstac migrate failed (see $state/migrate.log)"
  PGUSER=postgres PGPASSWORD="$password" PGHOST=127.0.0.1 PGPORT="$pgport" \
  PGDATABASE=postgres ENABLE_TRANSACTIONS_EXTENSIONS=true \
    nohup "$PYTHON" -m uvicorn stac_fastapi.pgstac.app:create_app --factory \
    --host 127.0.0.1 --port "$apiport" >"$state/api.log" 2>&1 &
  echo $! >"$state/api.pid"
  local url="http://127.0.0.1:$apiport"
  for _ in $(seq 1 120); do
    if "$PYTHON" - "$url/_mgmt/health" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
PY
    kill -0 "$(cat "$state/api.pid")" 2>/dev/null || die "the API exited (see $state/api.log)"
    sleep 0.5
  done
  ( umask 077; printf 'export PGSTAC_DSN=%q\nexport STAC_API_URL=%q\n' "$dsn" "$url" >"$state/env" )
  echo "STAC API at $url (database 127.0.0.1:$pgport); source $state/env for PGSTAC_DSN"
}

stop() {
  local state="$1"
  if [ -f "$state/api.pid" ]; then kill "$(cat "$state/api.pid")" 2>/dev/null || true; rm -f "$state/api.pid"; fi
  if [ -f "$state/pgdata/postmaster.pid" ]; then
    as_db_user "$PGBIN/pg_ctl" -D "$state/pgdata" -m fast -w stop >/dev/null || true
  fi
}

case "${1:-}" in
  install) install ;;
  start) [ $# -ge 2 ] || die "usage: $0 start STATE_DIR [PG_PORT] [API_PORT]"; shift; start "$@" ;;
  stop) [ $# -ge 2 ] || die "usage: $0 stop STATE_DIR"; stop "$2" ;;
  *) die "usage: $0 install | start STATE_DIR [PG_PORT] [API_PORT] | stop STATE_DIR" ;;
esac
