#!/usr/bin/env bash
# shellcheck disable=SC2016 # backquotes in Markdown output
# Load test of the API (issue 4) and of admission (issue 5), with wrk.
#
# Two Halyard servers started with `--dev`: A with `--no-rate-limits`, B with rate limits on
# and the dev tenant's limits raised so high that nothing is rejected
# (PATCH /api/v1/admin/tenants/:id {"limits":{"requestsPerSecond":1000000,"burst":1000000}}
# with the root key). The dev projects get SESSIONS sessions. Then REPEATS rounds, each
# target once per round (alternating; B's targets first in even rounds), 64 connections,
# DURATION seconds:
#   A health    GET /health/live                                (the bare engine)
#   A agent     GET /api/agents/assistant                       (API key, Authorization: Bearer)
#   A sessions  GET /api/projects/:pid/sessions?limit=50        (API key, 50 sessions listed)
#   B health, B agent, B sessions                               (the same with rate limits on)
# and prints the medians of requests/s, p50, p99, server CPU-s and requests per CPU-second,
# with the ratios: A agent / A health, A sessions / A health (issue 4), B agent / A agent and
# B sessions / A sessions (issue 5).
#
# Flood (issue 5): B's tenant limits go down to FLOOD_RATE requests/s, burst FLOOD_RATE, and
# wrk drives `GET /api/agents/assistant` unbounded (64 connections) for FLOOD_DURATION
# seconds: server CPU-s / rejected requests (429s, wrk's "Non-2xx") as a ratio to the server
# CPU-s per request of a `/health/live` run on B right after (REPEATS rounds, medians).
#
# Pinned: servers on core 0 with `--threads 1`, wrk -t1 on core 1 (`--unpinned`: no
# affinity, wrk -t2, Halyard still `--threads 1`).
#
# Usage: benches/load/api.sh [--quick] [--duration S] [--repeats N] [--sessions N]
#                            [--flood-rate R] [--flood-duration S] [--no-build] [--profile]
#                            [--unpinned]
#   --quick      3 s runs (default 10 s)
#   --max-other-cpu S, --noise-tries N  a run during which other processes used more than
#                S CPU-seconds (default 5% of the machine over the run) is repeated, up to N
#                tries in all (default 3); the quietest try counts (not for the flood runs)
#   --profile    afterwards, `perf record -g` on Halyard under the sessions, agent and flood
#                loads and print the top functions (self)
# Environment: HALYARD_BIN (skip building Halyard), CARGO_TARGET_DIR (Halyard's).
# Everything listens on 127.0.0.1; every process started here is stopped by PID on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
LOG_TAG=api
# shellcheck source=lib.sh
source "$HERE/lib.sh"

DURATION=10
REPEATS=3
CONNECTIONS=64
SESSIONS=50
FLOOD_RATE=100
FLOOD_DURATION=""
BUILD=1
PROFILE=0
PINNED=1
SERVER_CORE=0
WRK_CORE=1
MAX_OTHER_CPU=""
NOISE_TRIES=3

usage() {
    sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) DURATION=3 ;;
        --duration) DURATION=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --sessions) SESSIONS=$2; shift ;;
        --flood-rate) FLOOD_RATE=$2; shift ;;
        --flood-duration) FLOOD_DURATION=$2; shift ;;
        --no-build) BUILD=0 ;;
        --profile) PROFILE=1 ;;
        --unpinned) PINNED=0 ;;
        --max-other-cpu) MAX_OTHER_CPU=$2; shift ;;
        --noise-tries) NOISE_TRIES=$2; shift ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done
: "${FLOOD_DURATION:=$DURATION}"
: "${MAX_OTHER_CPU:=$(awk -v n="$(nproc)" -v d="$DURATION" 'BEGIN { print 0.05 * n * d }')}"

start_work api

need wrk wrk
need curl curl
need python3 python3
need taskset util-linux
if ((PROFILE)) && ! command -v perf >/dev/null; then
    apt_install linux-perf || { log "perf unavailable: no profile"; PROFILE=0; }
fi
CLK_TCK=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if ((PINNED)) && (($(nproc) < 2)); then log "fewer than 2 cores: unpinned"; PINNED=0; fi
PIN_SERVER=()
PIN_WRK=()
WRK_THREADS=2
if ((PINNED)); then
    PIN_SERVER=(taskset -c "$SERVER_CORE")
    PIN_WRK=(taskset -c "$WRK_CORE")
    WRK_THREADS=1
fi

resolve_halyard_bin

ROOT_KEY=$(python3 -c 'import secrets; print("root_" + secrets.token_urlsafe(32))')

# ---------------------------------------------------------------- servers

declare -A PORT PID KEY PROJ TENANT
# start_halyard NAME [FLAGS...]: a `--dev` server; sets PORT, PID, KEY, PROJ, TENANT.
start_halyard() {
    local name=$1 port dir
    shift
    port=$(free_port)
    dir=$(mktemp -d "$WORK/$name.XXXX")
    HALYARD_ROOT_KEY=$ROOT_KEY "${PIN_SERVER[@]+"${PIN_SERVER[@]}"}" "$HALYARD_BIN" serve \
        --listen "127.0.0.1:$port" --threads 1 --data-dir "$dir/data" --dev "$@" \
        >"$dir/log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    PORT[$name]=$port PID[$name]=$pid
    wait_ready "$port" "$pid" || { cat "$dir/log" >&2; die "halyard $name did not start"; }
    KEY[$name]=$(cat "$dir/data/dev-api-key")
    PROJ[$name]=$(call "$name" GET /api/projects | json_get 'projects.0.id')
    TENANT[$name]=$(call "$name" GET /api/v1/auth/me | json_get 'data.tenantId')
    log "halyard $name: pid $pid port $port project ${PROJ[$name]} tenant ${TENANT[$name]} ($*)"
}

# call NAME METHOD PATH [BODY] [BEARER]: the response body; fails on an HTTP error.
call() {
    local name=$1 method=$2 path=$3 body=${4:-} bearer=${5:-${KEY[$1]}} args=()
    [[ -n $body ]] && args=(-H 'Content-Type: application/json' --data "$body")
    curl -sS --fail-with-body --max-time 10 -X "$method" -H "Authorization: Bearer $bearer" \
        "${args[@]+"${args[@]}"}" "http://127.0.0.1:${PORT[$name]}$path"
}

# json_get a.b.0.c: a field of the JSON document on stdin.
json_get() {
    python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$1"
}

set_limits() { # set_limits NAME RATE BURST
    call "$1" PATCH "/api/v1/admin/tenants/${TENANT[$1]}" \
        "{\"limits\":{\"requestsPerSecond\":$2,\"burst\":$3}}" "$ROOT_KEY" >/dev/null
}

# ---------------------------------------------------------------- measuring

declare -A RESULT RUN PATHS

# load NAME PATH SECS OUT: one wrk run (authenticated with NAME's API key); sets RUN
# (rps, p50, p99, total, non2xx, cpu, percpu, other).
load() {
    local name=$1 path=$2 secs=$3 out=$4 before after busy_before busy_after rc=0
    local TIMEFORMAT='%U %S'
    busy_before=$(machine_ticks)
    before=$(cpu_ticks "${PID[$name]}")
    { time "${PIN_WRK[@]+"${PIN_WRK[@]}"}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${secs}s" \
        --latency -H "Authorization: Bearer ${KEY[$name]}" \
        "http://127.0.0.1:${PORT[$name]}$path" >"$out" 2>&1; } 2>"$out.time" || rc=$?
    after=$(cpu_ticks "${PID[$name]}")
    busy_after=$(machine_ticks)
    ((rc == 0)) || { cat "$out" >&2; die "wrk failed against $name $path"; }
    read_wrk "$out" $((after - before))
    RUN[other]=$(awk -v t=$((busy_after - busy_before)) -v hz="$CLK_TCK" -v s="${RUN[cpu]}" \
        -v w="$(awk '{ print $1 + $2 }' "$out.time")" \
        'BEGIN { o = t / hz - s - w; printf "%.2f", (o > 0 ? o : 0) }')
    if grep -q 'Socket errors' "$out"; then log "WARNING $name $path: $(grep 'Socket errors' "$out")"; fi
}

# target LABEL: one measured run of LABEL ("A health", ...), recorded in RESULT. A run during
# which other processes used more than MAX_OTHER_CPU CPU-s is repeated (NOISE_TRIES tries in
# all); the quietest try counts.
target() {
    local label=$1 name=${1%% *} metric try
    local -A best=()
    for ((try = 1; try <= NOISE_TRIES; try++)); do
        load "$name" "${PATHS[${label#* }]//@PROJ@/${PROJ[$name]}}" "$DURATION" "$WORK/wrk.out"
        if [[ -z ${best[other]:-} ]] || awk -v a="${RUN[other]}" -v b="${best[other]}" 'BEGIN { exit !(a < b) }'; then
            for metric in "${!RUN[@]}"; do best[$metric]=${RUN[$metric]}; done
        fi
        awk -v o="${best[other]}" -v m="$MAX_OTHER_CPU" 'BEGIN { exit !(o <= m) }' && break
        ((try < NOISE_TRIES)) && { log "    $label noisy (other processes used ${RUN[other]} s): again"; sleep 3; }
    done
    for metric in "${!best[@]}"; do RUN[$metric]=${best[$metric]}; done
    ((RUN[non2xx] == 0)) || log "WARNING $label: ${RUN[non2xx]} non-2xx responses"
    for metric in rps p50 p99 cpu percpu other non2xx; do RESULT[$label,$metric]+="${RUN[$metric]} "; done
    printf '[api]   %-11s %9.0f req/s  p50 %6d us  p99 %6d us  server cpu %5.2f s  %7d req/cpu-s  non-2xx %s  other cpu %5.2f s\n' \
        "$label" "${RUN[rps]}" "${RUN[p50]}" "${RUN[p99]}" "${RUN[cpu]}" "${RUN[percpu]}" \
        "${RUN[non2xx]}" "${RUN[other]}" >&2
}

med() {
    local values
    read -r -a values <<<"${RESULT[$1]}"
    median "${values[@]}"
}

# profile NAME PATH LABEL: perf record -g on NAME during one wrk run; top functions (self).
profile() {
    local name=$1 path=$2 label=$3 data=$WORK/perf.data
    perf record -F 1999 -g -p "${PID[$name]}" -o "$data" -- sleep "$DURATION" 2>/dev/null &
    local rec=$!
    PIDS+=("$rec")
    load "$name" "$path" "$DURATION" "$WORK/wrk.out"
    stop_pid "$rec" 10
    echo
    echo "### perf, $label ($(printf '%.0f' "${RUN[rps]}") req/s, non-2xx ${RUN[non2xx]})"
    echo '```'
    perf report -i "$data" --stdio -g none --no-children --fields overhead,sym --percent-limit 1 \
        2>/dev/null | grep -vE '^\s*$|^#' | head -30
    echo "-- inclusive, Halyard functions"
    perf report -i "$data" --stdio -g none --children --sort symbol 2>/dev/null |
        grep -E '\[\.\] (halyard_engine|halyard_api|halyard_storage|halyard)::' |
        sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | head -25
    echo '```'
}

# ---------------------------------------------------------------- main

UPTIME_BEFORE=$(uptime)
log "$UPTIME_BEFORE"
log "halyard: $HALYARD_BIN; work dir $WORK"
start_halyard A --no-rate-limits
start_halyard B
set_limits B 1000000 1000000
for ((i = 0; i < SESSIONS; i++)); do
    call A POST "/api/projects/${PROJ[A]}/sessions" '{}' >/dev/null
    call B POST "/api/projects/${PROJ[B]}/sessions" '{}' >/dev/null
done
listed=$(call A GET "/api/projects/${PROJ[A]}/sessions?limit=50" |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["sessions"]))')
log "sessions listed per request: $listed"
((listed == 50 || listed == SESSIONS)) || die "expected 50 sessions in the list, got $listed"

PATHS[health]=/health/live
PATHS[agent]=/api/agents/assistant
PATHS[sessions]="/api/projects/@PROJ@/sessions?limit=50"
TARGETS=("A health" "A agent" "A sessions" "B health" "B agent" "B sessions")

log "warm-up"
for t in "${TARGETS[@]}"; do
    load "${t%% *}" "${PATHS[${t#* }]//@PROJ@/${PROJ[${t%% *}]}}" 1 "$WORK/warmup.out"
done
log "${#TARGETS[@]} targets, ${DURATION}s x $REPEATS each, alternating, $CONNECTIONS connections"
# Odd rounds run A's targets first, even rounds B's first, so that neither server is always
# measured second.
for ((rep = 1; rep <= REPEATS; rep++)); do
    order=("${TARGETS[@]}")
    ((rep % 2)) || order=("${TARGETS[@]:3}" "${TARGETS[@]:0:3}")
    for t in "${order[@]}"; do target "$t"; done
done

# Flood: B's tenant at FLOOD_RATE/s, burst FLOOD_RATE, driven unbounded.
set_limits B "$FLOOD_RATE" "$FLOOD_RATE"
sleep 1
declare -a FLOOD_ROWS=()
for ((rep = 1; rep <= REPEATS; rep++)); do
    load B /api/agents/assistant "$FLOOD_DURATION" "$WORK/flood.out"
    rejected=${RUN[non2xx]}
    admitted=$((RUN[total] - rejected))
    per_rej=$(awk -v c="${RUN[cpu]}" -v n="$rejected" 'BEGIN { printf "%.3f", (n > 0 ? c / n * 1e6 : 0) }')
    offered=$(awk -v r="${RUN[rps]}" -v f="$FLOOD_RATE" 'BEGIN { printf "%.0f", r / f }')
    flood_rps=${RUN[rps]} flood_cpu=${RUN[cpu]} flood_other=${RUN[other]}
    load B /health/live "$DURATION" "$WORK/health.out"
    per_health=$(awk -v c="${RUN[cpu]}" -v n="${RUN[total]}" 'BEGIN { printf "%.3f", c / n * 1e6 }')
    RESULT[flood,rps]+="$flood_rps "
    RESULT[flood,per_rej]+="$per_rej "
    RESULT[flood,per_health]+="$per_health "
    RESULT[flood,ratio]+="$(ratio "$per_rej" "$per_health") "
    RESULT[flood,offered]+="$offered "
    RESULT[flood,admitted]+="$(awk -v a="$admitted" -v d="$FLOOD_DURATION" 'BEGIN { printf "%.1f", a / d }') "
    FLOOD_ROWS+=("| $rep | $(printf '%.0f' "$flood_rps") | ${offered}x | $rejected | $admitted | $flood_cpu | $per_rej | $per_health | $(ratio "$per_rej" "$per_health") | $flood_other |")
    log "flood $rep: $(printf '%.0f' "$flood_rps") req/s (${offered}x the rate), $rejected rejected, $admitted admitted, cpu $flood_cpu s: $per_rej us/rejected; /health/live $per_health us/request"
done
# A 429 as the flooded tenant sees it (requests on one connection until the first 429).
SAMPLE_429=$(python3 - "${PORT[B]}" "${KEY[B]}" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
for _ in range(100000):
    c.request("GET", "/api/agents/assistant", headers={"Authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse()
    body = r.read()
    if r.status == 429:
        h = " ".join("%s: %s" % (k, v) for k, v in r.getheaders()
                     if k.lower().startswith(("retry-after", "x-ratelimit")))
        print("429 %s %s" % (h, body.decode()[:200]))
        break
PY
)

# ---------------------------------------------------------------- report

echo
echo "Machine before the runs: \`$UPTIME_BEFORE\` ($(nproc) cores)."
echo
echo "### Medians of $REPEATS x ${DURATION}s, $CONNECTIONS connections, Halyard --threads 1" \
    "$( ((PINNED)) && echo "on core $SERVER_CORE, wrk -t1 on core $WRK_CORE" || echo "unpinned, wrk -t2")"
echo
echo "A: \`--dev --no-rate-limits\`; B: \`--dev\` with the tenant's limits at 1,000,000/s, burst 1,000,000."
echo
echo "| server | request | req/s | p50 µs | p99 µs | server CPU s | req per CPU-s | non-2xx | other CPU s |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|"
for t in "${TARGETS[@]}"; do
    path=${PATHS[${t#* }]//@PROJ@/:pid}
    printf '| %s | `GET %s` | %.0f | %s | %s | %s | %.0f | %s | %s |\n' "${t%% *}" "$path" \
        "$(med "$t,rps")" "$(med "$t,p50")" "$(med "$t,p99")" "$(med "$t,cpu")" \
        "$(med "$t,percpu")" "$(med "$t,non2xx")" "$(med "$t,other")"
done
echo
echo "| ratio (medians) | req/s | req per server CPU-s | target (req/s) |"
echo "|---|--:|--:|---|"
r_agent=$(ratio "$(med "A agent,rps")" "$(med "A health,rps")")
r_sessions=$(ratio "$(med "A sessions,rps")" "$(med "A health,rps")")
r_rl_agent=$(ratio "$(med "B agent,rps")" "$(med "A agent,rps")")
r_rl_sessions=$(ratio "$(med "B sessions,rps")" "$(med "A sessions,rps")")
echo "| A agent / A health (API-key path) | $r_agent | $(ratio "$(med "A agent,percpu")" "$(med "A health,percpu")") | >= 0.60 |"
echo "| A sessions / A health (list of 50) | $r_sessions | $(ratio "$(med "A sessions,percpu")" "$(med "A health,percpu")") | >= 0.35 |"
echo "| B agent / A agent (rate limits on / off) | $r_rl_agent | $(ratio "$(med "B agent,percpu")" "$(med "A agent,percpu")") | >= 0.95 |"
echo "| B sessions / A sessions (rate limits on / off) | $r_rl_sessions | $(ratio "$(med "B sessions,percpu")" "$(med "A sessions,percpu")") | >= 0.95 |"
echo "| B health / A health | $(ratio "$(med "B health,rps")" "$(med "A health,rps")") | $(ratio "$(med "B health,percpu")" "$(med "A health,percpu")") |  |"
echo
echo "### Flood: B's tenant at $FLOOD_RATE req/s, burst $FLOOD_RATE, wrk unbounded ($CONNECTIONS connections, ${FLOOD_DURATION}s), then \`/health/live\` on B for ${DURATION}s"
echo
echo "| round | req/s sent | × rate | rejected (429) | admitted | server CPU s | CPU µs per rejected | CPU µs per /health/live | ratio | other CPU s (flood run) |"
echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${FLOOD_ROWS[@]}"
echo
echo "Medians: CPU per rejected request $(med flood,per_rej) µs, per admitted \`/health/live\`" \
    "$(med flood,per_health) µs: ratio **$(med flood,ratio)**; admitted $(med flood,admitted)/s" \
    "at a rate of $FLOOD_RATE/s; offered $(med flood,offered)x the rate."
echo
echo "A 429 of the flooded tenant: \`$SAMPLE_429\`"
echo
echo "Targets:"
check "API-key path (GET /api/agents/:name) / bare engine" "$r_agent" ">=" 0.60
check "list of 50 sessions / bare engine" "$r_sessions" ">=" 0.35
check "authenticated GET with rate limits / without (agents)" "$r_rl_agent" ">=" 0.95
check "authenticated GET with rate limits / without (sessions)" "$r_rl_sessions" ">=" 0.95

if ((PROFILE)); then
    set_limits B 1000000 1000000
    profile A "/api/projects/${PROJ[A]}/sessions?limit=50" "A sessions"
    profile A /api/agents/assistant "A agent"
    profile A /health/live "A health"
    set_limits B "$FLOOD_RATE" "$FLOOD_RATE"
    profile B /api/agents/assistant "B flood"
fi
exit 0
