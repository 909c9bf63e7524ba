# Sourced by .ci/run: a throwaway PostgreSQL server on loopback for the multi-machine tests.
# Sets SEEDWISE_TEST_POSTGRES on success; on any failure the PostgreSQL tests skip, they
# never break the rest of CI.
pg_start() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null 2>&1 || return 1
  fi
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  PG_DATA=$(mktemp -d /tmp/seedwise-pg.XXXXXX); chown postgres "$PG_DATA" || return 1
  PG_PORT=${PG_PORT:-55432}
  su postgres -s /bin/sh -c "$bin/initdb -A trust -U postgres -D $PG_DATA" >/dev/null 2>&1 || return 1
  su postgres -s /bin/sh -c "$bin/pg_ctl -D $PG_DATA -w -l $PG_DATA/log -o '-h 127.0.0.1 -p $PG_PORT -k $PG_DATA' start" >/dev/null 2>&1 || return 1
  su postgres -s /bin/sh -c "$bin/createdb -h 127.0.0.1 -p $PG_PORT seedwise" >/dev/null 2>&1 || return 1
  PG_BIN=$bin
  export SEEDWISE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PG_PORT/seedwise"
}
pg_stop() {
  [ -n "${PG_BIN:-}" ] && su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D $PG_DATA -m fast stop" >/dev/null 2>&1
  [ -n "${PG_DATA:-}" ] && rm -rf "$PG_DATA"
}
