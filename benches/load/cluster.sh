#!/usr/bin/env bash
# shellcheck disable=SC2016 # backquotes in Markdown output
# Load test of the PostgreSQL store (issue 16), with wrk: embedded vs 1 node on PostgreSQL vs
# 2 nodes on one database, and pgbench running the database's share of a session creation.
#
# A throwaway PostgreSQL cluster (scripts/pg.sh) and three setups, each a fresh database:
#   embedded   one `--dev` node on the embedded log
#   pg1        one `--dev` node with `--storage postgres://...`
#   pg2        two nodes on one database (wrk drives both, half the connections each)
# Every node: `--threads 1 --no-rate-limits`, 50 sessions made first. Loads, CONNECTIONS
# connections, DURATION seconds, REPEATS rounds (medians):
#   get      GET /api/agents/assistant              (API key; cached credential, one read)
#   list     GET /api/projects/:pid/sessions?limit=50
#   create   POST /api/projects/:pid/sessions        (one committed transaction each)
#   stream   POST /api/v1/chat/agent/stream          (a streamed echo turn of one word, read
#            to its `done`: a new session, its messages, the stream's start and events)
# Printed per setup and load: requests/s, p99, and CPU per request of Halyard and of
# PostgreSQL (every process of the cluster, from /proc), in µs.
#
# pgbench: the statements a session creation makes in PostgreSQL (lock the tenant's head,
# append a transaction of the same size, move the head, notify, commit), as a custom script
# at the same concurrency as Halyard's database connections, for DURATION seconds; its
# PostgreSQL CPU per transaction is the floor the target compares with:
#   get: pg1 (Halyard + PostgreSQL) CPU/request <= 1.2 x embedded
#   create: pg1 (Halyard + PostgreSQL) CPU/request <= 1.5 x pgbench's PostgreSQL CPU/transaction
#
# Usage: benches/load/cluster.sh [--duration S] [--repeats N] [--connections C] [--no-build]
# Environment: HALYARD_BIN (skip building Halyard), CARGO_TARGET_DIR.
# Everything listens on 127.0.0.1; every process started here is stopped by PID on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
LOG_TAG=cluster
# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=../../scripts/pg.sh
source "$ROOT/scripts/pg.sh"

DURATION=10
REPEATS=3
CONNECTIONS=32
BUILD=1

usage() {
    sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --duration) DURATION=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done

start_work cluster
trap 'pg_stop; cleanup' EXIT
need wrk wrk
need curl curl
need jq jq
CLK_TCK=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
resolve_halyard_bin
pg_start >&2
PGBENCH=$PG_BIN/pgbench
PSQL=$PG_BIN/psql

# ---------------------------------------------------------------- nodes

declare -A PORT NPID KEY PROJ
# start_node NAME [FLAGS...]: a `--dev` node; sets PORT, NPID, KEY, PROJ.
start_node() {
    local name=$1 port dir
    shift
    port=$(free_port)
    dir=$(mktemp -d "$WORK/$name.XXXX")
    "$HALYARD_BIN" serve --listen "127.0.0.1:$port" --threads 1 --no-rate-limits \
        --data-dir "$dir/data" "$@" >"$dir/log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    PORT[$name]=$port NPID[$name]=$pid
    wait_ready "$port" "$pid" || { cat "$dir/log" >&2; die "halyard $name did not start"; }
}

# call NAME METHOD PATH [BODY]: the response body of node NAME with its key.
call() {
    local args=()
    [[ -n ${4:-} ]] && args=(-H 'Content-Type: application/json' --data "$4")
    curl -sS --fail-with-body --max-time 10 -X "$2" -H "Authorization: Bearer ${KEY[$1]}" \
        "${args[@]+"${args[@]}"}" "http://127.0.0.1:${PORT[$1]}$3"
}

# seed NAME DIR: reads the dev key of the node whose data directory is DIR; 50 sessions.
seed() {
    KEY[$1]=$(cat "$2/dev-api-key")
    PROJ[$1]=$(call "$1" GET /api/projects | jq -r '.projects[0].id')
    for _ in $(seq 50); do call "$1" POST "/api/projects/${PROJ[$1]}/sessions" '{}' >/dev/null; done
}

database() { # database NAME: a fresh database, its URL
    "$PSQL" -q "$PG_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >&2
    echo "${PG_URL%/*}/$1"
}

start_node embedded --dev
seed embedded "$(ls -d "$WORK"/embedded.*/data)"
PG1=$(database bench_pg1)
start_node pg1 --dev --storage "$PG1"
seed pg1 "$(ls -d "$WORK"/pg1.*/data)"
PG2=$(database bench_pg2)
start_node pg2a --dev --storage "$PG2"
seed pg2a "$(ls -d "$WORK"/pg2a.*/data)"
# The second node of pg2 shares the first's database, master key and dev tenant.
MASTER=$(cat "$(ls -d "$WORK"/pg2a.*/data)/master.key")
HALYARD_MASTER_KEY=$MASTER start_node pg2b --storage "$PG2"
KEY[pg2b]=${KEY[pg2a]} PROJ[pg2b]=${PROJ[pg2a]}

# ---------------------------------------------------------------- loads

cat >"$WORK/create.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
LUA

for n in "${!PROJ[@]}"; do
    cat >"$WORK/stream.$n.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"projectId": "${PROJ[$n]}", "message": "hello"}'
wrk.headers["Content-Type"] = "application/json"
LUA
done

path_of() { # path_of LOAD NODE
    case $1 in
        get) echo /api/agents/assistant ;;
        list) echo "/api/projects/${PROJ[$2]}/sessions?limit=50" ;;
        create) echo "/api/projects/${PROJ[$2]}/sessions" ;;
        stream) echo /api/v1/chat/agent/stream ;;
    esac
}

script_of() { # script_of LOAD NODE: wrk's -s argument, if the load posts
    case $1 in
        create) echo "$WORK/create.lua" ;;
        stream) echo "$WORK/stream.$2.lua" ;;
    esac
}

# pg_ticks: CPU ticks of the PostgreSQL cluster: its live processes, plus the backends
# that ended (pgbench's, at the end of its run), which the postmaster reaped into its
# cutime and cstime (fields 16 and 17 of /proc/PID/stat).
pg_ticks() {
    local line fields
    read -r line <"/proc/$PG_PID/stat"
    read -r -a fields <<<"${line##*) }"
    echo $(($(cpu_ticks "$PG_PID") + fields[13] + fields[14]))
}

declare -A RUN
declare -A RPS P99 HCPU PCPU
# run SETUP LOAD ROUND: one wrk run over the setup's nodes; records the figures.
run() {
    local setup=$1 load=$2 round=$3 nodes=() n out h0=0 h1=0 p0 p1 script wrks=()
    case $setup in
        pg2) nodes=(pg2a pg2b) ;;
        *) nodes=("$setup") ;;
    esac
    for n in "${nodes[@]}"; do h0=$((h0 + $(cpu_ticks "${NPID[$n]}"))); done
    p0=$(pg_ticks)
    for n in "${nodes[@]}"; do
        out="$WORK/wrk.$setup.$load.$round.$n"
        script=$(script_of "$load" "$n")
        wrk -t1 -c $((CONNECTIONS / ${#nodes[@]})) -d "${DURATION}s" --latency \
            -H "Authorization: Bearer ${KEY[$n]}" ${script:+-s "$script"} \
            "http://127.0.0.1:${PORT[$n]}$(path_of "$load" "$n")" >"$out" &
        wrks+=($!)
    done
    wait "${wrks[@]}"
    for n in "${nodes[@]}"; do h1=$((h1 + $(cpu_ticks "${NPID[$n]}"))); done
    p1=$(pg_ticks)
    local total=0 rps=0 p99=0 bad=0
    for n in "${nodes[@]}"; do
        read_wrk "$WORK/wrk.$setup.$load.$round.$n" 0
        total=$((total + RUN[total])) bad=$((bad + RUN[non2xx]))
        rps=$(awk -v a="$rps" -v b="${RUN[rps]}" 'BEGIN { print a + b }')
        ((RUN[p99] > p99)) && p99=${RUN[p99]}
    done
    ((bad == 0)) || die "$setup $load: $bad responses were not 2xx"
    local key="$setup.$load"
    RPS[$key]+=" $rps" P99[$key]+=" $p99"
    HCPU[$key]+=" $(awk -v t=$((h1 - h0)) -v n="$total" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')"
    PCPU[$key]+=" $(awk -v t=$((p1 - p0)) -v n="$total" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')"
    log "$setup $load round $round: $rps req/s, p99 ${p99} µs"
}

SETUPS=(embedded pg1 pg2)
LOADS=(get list create stream)
# rounds LOADS...: REPEATS rounds of each load on each setup.
rounds() {
    local r load setup
    for ((r = 1; r <= REPEATS; r++)); do
        for load in "$@"; do
            for setup in "${SETUPS[@]}"; do
                wait_quiet 30
                run "$setup" "$load" "$r"
            done
        done
    done
}
# The reads first, then the creations: each creation adds sessions, which would make the
# later lists longer to page through. The streamed turns last, after pgbench measured the
# creation's statements with the payload size of a session creation.
rounds get list
rounds create

# ---------------------------------------------------------------- pgbench

# The database's share of a session creation: the statements of pgstore/src/sql.rs
# (LOCK_HEAD, APPEND) with a payload of the size a PutSession transaction has.
PAYLOAD_BYTES=$("$PSQL" -At "$PG1" -c "SELECT avg(length(payload))::int FROM halyard_txlog t \
    WHERE tenant <> '' AND tseq > 3")
"$PSQL" -q "$PG1" -c "INSERT INTO halyard_heads VALUES ('pgbench', 0) ON CONFLICT DO NOTHING"
cat >"$WORK/create.sql" <<SQL
BEGIN;
INSERT INTO halyard_heads (tenant, tseq) VALUES ('pgbench', 0) ON CONFLICT (tenant) DO UPDATE SET tseq = halyard_heads.tseq RETURNING tseq \gset
WITH t AS (INSERT INTO halyard_txlog (tenant, tseq, payload) VALUES ('pgbench', :tseq + 1, decode(repeat('ab', $PAYLOAD_BYTES), 'hex'))), h AS (UPDATE halyard_heads SET tseq = :tseq + 1 WHERE tenant = 'pgbench') SELECT pg_notify('halyard', 'x');
COMMIT;
SQL
declare -a PGB_TPS PGB_CPU
for ((r = 1; r <= REPEATS; r++)); do
    wait_quiet 30
    p0=$(pg_ticks)
    out="$WORK/pgbench.$r"
    "$PGBENCH" -n -M prepared -c 16 -j 1 -T "$DURATION" -f "$WORK/create.sql" "$PG1" >"$out" 2>&1 ||
        { cat "$out" >&2; die "pgbench failed"; }
    p1=$(pg_ticks)
    tx=$(awk '/number of transactions actually processed/ { print $NF }' "$out")
    PGB_TPS+=("$(awk '/^tps/ { printf "%.0f", $3 }' "$out")")
    PGB_CPU+=("$(awk -v t=$((p1 - p0)) -v n="$tx" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')")
    log "pgbench round $r: ${PGB_TPS[-1]} tps, ${PGB_CPU[-1]} µs PostgreSQL CPU per transaction"
done

rounds stream

# ---------------------------------------------------------------- report

m() { median $1; }
echo
echo "### PostgreSQL store (issue 16): medians of $REPEATS runs, ${DURATION} s, $CONNECTIONS connections, one event loop per node"
echo
echo '| setup | load | requests/s | p99 | Halyard CPU/request | PostgreSQL CPU/request | total |'
echo '|---|---|---|---|---|---|---|'
declare -A TOTAL
for load in "${LOADS[@]}"; do
    for setup in "${SETUPS[@]}"; do
        k="$setup.$load"
        h=$(m "${HCPU[$k]}") p=$(m "${PCPU[$k]}")
        TOTAL[$k]=$(awk -v a="$h" -v b="$p" 'BEGIN { printf "%.1f", a + b }')
        printf '| %s | %s | %.0f | %s µs | %s µs | %s µs | %s µs |\n' "$setup" "$load" \
            "$(m "${RPS[$k]}")" "$(m "${P99[$k]}")" "$h" "$p" "${TOTAL[$k]}"
    done
done
echo "| pgbench | create's statements, 16 clients | $(m "${PGB_TPS[*]}") tx/s | | | $(m "${PGB_CPU[*]}") µs | |"
echo
check "get: pg1 / embedded CPU per request" "$(ratio "${TOTAL[pg1.get]}" "${TOTAL[embedded.get]}")" "<=" 1.2
check "create: pg1 / pgbench CPU per request" "$(ratio "${TOTAL[pg1.create]}" "$(m "${PGB_CPU[*]}")")" "<=" 1.5
