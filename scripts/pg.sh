# shellcheck shell=bash
# A throwaway PostgreSQL cluster on a loopback port, for the tests (scripts/test) and the
# cluster benchmark (benches/load/cluster.sh). Sourced; defines:
#   pg_start [ARGS...]  installs Debian's postgresql when missing, starts a cluster in a new
#                       temporary directory (run by the `postgres` user when we are root: it
#                       refuses to run as root) with extra server ARGS (`-c name=value`), and
#                       sets PG_URL (role `halyard`, trust, database `postgres`), PG_DIR, PG_BIN
#                       and PG_PID (the postmaster);
#   pg_stop             stops it (immediate) and removes its directory.

pg_start() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/postgres" ]; then
        echo "== installing postgresql (Debian packages)"
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    PG_DIR=$(mktemp -d /tmp/halyard-pg.XXXXXX)
    local port=$((20000 + RANDOM % 20000))
    PG_AS=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$PG_DIR"
        PG_AS=(runuser -u postgres --)
    fi
    echo "== starting PostgreSQL ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$port"
    "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U halyard --auth=trust >/dev/null
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 $*" \
        start >/dev/null
    PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    PG_URL="postgres://halyard@127.0.0.1:$port/postgres"
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=
}
