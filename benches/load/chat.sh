#!/usr/bin/env bash
# shellcheck disable=SC2016 # backquotes in Markdown output
# Load test of chat (issue 6): sync agent turns, time to first token, and many open SSE streams.
#
# (a) Turns: Halyard `--dev --no-rate-limits --agent-workers 64 --agent-queue 4096`
#     (`--fsync always`, the default; echo provider, no token delay). wrk (64 connections,
#     chat.lua) posts `POST /api/v1/chat/agent` {"projectId","message":"hello there"} with the
#     dev API key (each turn creates a session and stores two messages durably), alternating
#     with `GET /health/live` on the same server, REPEATS x DURATION s; medians of turns/s,
#     latency, server CPU. Reference in the same run: `write`+`fdatasync` of 200 bytes in a
#     loop in the server's data directory for 3 s (the disk's synchronous flush rate).
# (c) Time to first token: streams.py ttft, TTFT_CONCURRENCY concurrent clients (each a
#     keep-alive loop of `POST /api/v1/chat/agent/stream` echo turns, no token delay) for
#     DURATION s, REPEATS times, and once with 1 client for reference; p50/p99 in ms.
# (b) Streams: Halyard with `--sse-heartbeat-ms 1000 --echo-token-delay-ms 60000`; streams.py
#     hold opens STREAMS streams: one slow turn and STREAMS-1 resumes
#     (`GET /api/v1/chat/stream/:id`) that follow it live; holds them HOLD s. Reports RSS
#     after start (before any stream), RSS with every stream open, (difference)/STREAMS,
#     server CPU per second while they are held, and the heartbeat lateness (interval - 1 s)
#     p50/p99/max. Then the same with TURN_STREAMS streams that are each their own turn
#     (`--agent-workers TURN_STREAMS+16`: one worker thread per turn).
#
# Pinned: Halyard `--threads 1` on core 0 (its agent workers and storage threads too), the
# clients on core 1. Everything listens on 127.0.0.1; every process started here is stopped by
# PID on exit.
#
# Usage: benches/load/chat.sh [--quick] [--duration S] [--repeats N] [--streams N]
#                             [--turn-streams N] [--hold S] [--ttft-concurrency N]
#                             [--only "turns ttft streams"] [--no-build] [--profile]
#   --profile    `perf record -g` on Halyard during one turns run; top functions (self)
# Environment: HALYARD_BIN (skip building Halyard), CARGO_TARGET_DIR (Halyard's).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
LOG_TAG=chat
# shellcheck source=lib.sh
source "$HERE/lib.sh"

DURATION=10
REPEATS=3
CONNECTIONS=64
STREAMS=10000
TURN_STREAMS=1000
HOLD=20
TTFT_CONCURRENCY=1000
ONLY="turns ttft streams"
BUILD=1
PROFILE=0
SERVER_CORE=0
CLIENT_CORE=1
STORAGE_REFERENCE=18714 # acked appends/s at 64 appenders, "## Storage" in benches/RESULTS.md

usage() {
    sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) DURATION=3; HOLD=8 ;;
        --duration) DURATION=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --streams) STREAMS=$2; shift ;;
        --turn-streams) TURN_STREAMS=$2; shift ;;
        --hold) HOLD=$2; shift ;;
        --ttft-concurrency) TTFT_CONCURRENCY=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        --profile) PROFILE=1 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done

start_work chat

need wrk wrk
need curl curl
need python3 python3
need taskset util-linux
if ((PROFILE)) && ! command -v perf >/dev/null; then
    apt_install linux-perf || { log "perf unavailable: no profile"; PROFILE=0; }
fi
CLK_TCK=$(getconf CLK_TCK)
(($(nproc) >= 2)) || die "needs 2 cores (server on core $SERVER_CORE, clients on core $CLIENT_CORE)"
PIN_SERVER=(taskset -c "$SERVER_CORE")
PIN_CLIENT=(taskset -c "$CLIENT_CORE")

# Every stream is a descriptor in the client and in the server.
want_fds=$((STREAMS + 1024))
if (($(ulimit -Hn) < want_fds)); then ulimit -Hn "$want_fds" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < want_fds)); then
    log "open-file limit $(ulimit -n) < $want_fds: streams reduced"
    STREAMS=$(($(ulimit -n) - 1024))
fi

resolve_halyard_bin

# ---------------------------------------------------------------- server

PORT="" PID="" DATA="" KEY="" PROJ=""
# start_halyard [FLAGS...]: one `--dev --no-rate-limits` server, pinned; sets PORT PID DATA KEY PROJ.
start_halyard() {
    local dir
    PORT=$(free_port)
    dir=$(mktemp -d "$WORK/halyard.XXXX")
    DATA=$dir/data
    "${PIN_SERVER[@]}" "$HALYARD_BIN" serve --listen "127.0.0.1:$PORT" --threads 1 \
        --data-dir "$DATA" --dev --no-rate-limits "$@" >"$dir/log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_ready "$PORT" "$PID" || { cat "$dir/log" >&2; die "halyard did not start"; }
    KEY=$(cat "$DATA/dev-api-key")
    PROJ=$(curl -sS --fail-with-body -H "Authorization: Bearer $KEY" \
        "http://127.0.0.1:$PORT/api/projects" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["projects"][0]["id"])')
    log "halyard pid $PID port $PORT project $PROJ ($*)"
}
stop_halyard() { stop_pid "$PID"; }

declare -A RESULT RUN
med() {
    local values
    read -r -a values <<<"${RESULT[$1]}"
    median "${values[@]}"
}
# record PREFIX KEY...: appends RUN[KEY] to RESULT[PREFIX,KEY].
record() {
    local prefix=$1 k
    shift
    for k in "$@"; do RESULT[$prefix,$k]+="${RUN[$k]} "; done
}

# wrk_load PATH SECS OUT [LUA]: one wrk run against the server; sets RUN.
wrk_load() {
    local path=$1 secs=$2 out=$3 script=() before after busy_before busy_after rc=0
    [[ -n ${4:-} ]] && script=(-s "$4")
    busy_before=$(machine_ticks)
    before=$(cpu_ticks "$PID")
    "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency \
        -H "Authorization: Bearer $KEY" "${script[@]+"${script[@]}"}" \
        "http://127.0.0.1:$PORT$path" >"$out" 2>&1 || rc=$?
    after=$(cpu_ticks "$PID")
    busy_after=$(machine_ticks)
    ((rc == 0)) || { cat "$out" >&2; die "wrk failed on $path"; }
    read_wrk "$out" $((after - before))
    RUN[busy]=$(awk -v t=$((busy_after - busy_before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    grep -q 'Socket errors' "$out" && log "WARNING $path: $(grep 'Socket errors' "$out")"
    log "  $path: $(printf '%.0f' "${RUN[rps]}")/s p50 ${RUN[p50]} us p99 ${RUN[p99]} us server cpu ${RUN[cpu]} s non-2xx ${RUN[non2xx]} machine busy ${RUN[busy]} s"
}

# fsync_rate DIR SECS: write(200 bytes) + fdatasync in a loop, per second.
fsync_rate() {
    "${PIN_CLIENT[@]}" python3 - "$1" "$2" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < float(sys.argv[2]):
    os.write(fd, b"x" * 200)
    os.fdatasync(fd)
    n += 1
print("%.0f" % (n / (time.monotonic() - t0)))
os.close(fd)
os.unlink(path)
PY
}

UPTIME_BEFORE=$(uptime)
log "$UPTIME_BEFORE"
OUT=$WORK/report.md
: >"$OUT"

# ---------------------------------------------------------------- (a) sync turns

if [[ " $ONLY " == *" turns "* ]]; then
    start_halyard --agent-workers 64 --agent-queue 4096
    cat >"$WORK/chat.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"projectId":"$PROJ","message":"hello there"}'
EOF
    wrk_load /api/v1/chat/agent 2 "$WORK/warm.out" "$WORK/chat.lua"
    for ((rep = 1; rep <= REPEATS; rep++)); do
        wrk_load /api/v1/chat/agent "$DURATION" "$WORK/turns.out" "$WORK/chat.lua"
        record turns rps p50 p99 cpu percpu non2xx busy
        wrk_load /health/live "$DURATION" "$WORK/health.out"
        record health rps p50 p99 cpu percpu non2xx busy
        RUN[fsync]=$(fsync_rate "$DATA" 3)
        record disk fsync
        log "  fdatasync loop: ${RUN[fsync]}/s"
    done
    sessions=$(curl -sS -H "Authorization: Bearer $KEY" \
        "http://127.0.0.1:$PORT/api/projects/$PROJ/sessions?limit=1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["pagination"]["total"])')
    if ((PROFILE)); then
        perf record -F 1999 -g -p "$PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null &
        rec=$!
        PIDS+=("$rec")
        wrk_load /api/v1/chat/agent "$DURATION" "$WORK/turns.out" "$WORK/chat.lua"
        stop_pid "$rec" 10
        perf stat -e task-clock,context-switches,cpu-migrations -p "$PID" -o "$WORK/perf.stat" -- sleep 5 &
        rec=$!
        PIDS+=("$rec")
        wrk_load /api/v1/chat/agent 5 "$WORK/turns.out" "$WORK/chat.lua"
        stop_pid "$rec" 10
    fi
    stop_halyard
    {
        echo "### (a) Sync turns: \`POST /api/v1/chat/agent\`, echo provider, no delay, \`--fsync always\`, \`--agent-workers 64 --agent-queue 4096 --no-rate-limits\`"
        echo
        echo "Medians of $REPEATS x ${DURATION}s, wrk -t1 -c$CONNECTIONS (chat.lua) on core $CLIENT_CORE, Halyard --threads 1 on core $SERVER_CORE; alternating with \`GET /health/live\` on the same server."
        echo
        echo "| request | req/s | p50 µs | p99 µs | server CPU s | req per CPU-s | non-2xx | machine busy CPU s |"
        echo "|---|--:|--:|--:|--:|--:|--:|--:|"
        for k in turns health; do
            label='`POST /api/v1/chat/agent`'
            [[ $k == health ]] && label='`GET /health/live`'
            printf '| %s | %.0f | %s | %s | %s | %.0f | %s | %s |\n' "$label" "$(med $k,rps)" \
                "$(med $k,p50)" "$(med $k,p99)" "$(med $k,cpu)" "$(med $k,percpu)" \
                "$(med $k,non2xx)" "$(med $k,busy)"
        done
        echo
        echo "- turns/s: **$(printf '%.0f' "$(med turns,rps)")**; messages stored durably/s: $(awk -v r="$(med turns,rps)" 'BEGIN { printf "%.0f", 2 * r }') (+ one session created per turn: $sessions sessions at the end)"
        echo "- turns/s / storage benchmark's acked appends/s at 64 appenders ($STORAGE_REFERENCE): **$(ratio "$(med turns,rps)" "$STORAGE_REFERENCE")**; messages/s / same: $(ratio "$(awk -v r="$(med turns,rps)" 'BEGIN { print 2 * r }')" "$STORAGE_REFERENCE")"
        echo "- same run: a \`write\`+\`fdatasync\` loop (200 bytes) in the data directory: $(med disk,fsync)/s (median); turns/s per synchronous flush/s: $(ratio "$(med turns,rps)" "$(med disk,fsync)")"
        echo "- turns / \`/health/live\` req/s: $(ratio "$(med turns,rps)" "$(med health,rps)"); per server CPU-s: $(ratio "$(med turns,percpu)" "$(med health,percpu)")"
        if ((PROFILE)); then
            echo
            echo '```'
            grep -E 'task-clock|context-switches|cpu-migrations' "$WORK/perf.stat" || true
            echo "-- top functions (self), one turns run"
            perf report -i "$WORK/perf.data" --stdio -g none --no-children --fields overhead,comm,sym \
                --percent-limit 1 2>/dev/null | grep -vE '^\s*$|^#' | head -30
            echo "-- by thread"
            perf report -i "$WORK/perf.data" --stdio -g none --no-children --sort comm 2>/dev/null |
                grep -vE '^\s*$|^#' | head -8
            echo '```'
        fi
        echo
    } >>"$OUT"
fi

# ---------------------------------------------------------------- (c) time to first token

ttft_run() { # ttft_run CONCURRENCY OUT
    local before after
    before=$(cpu_ticks "$PID")
    "${PIN_CLIENT[@]}" python3 "$HERE/streams.py" ttft --port "$PORT" --key "$KEY" \
        --project "$PROJ" --concurrency "$1" --duration "$DURATION" >"$2"
    after=$(cpu_ticks "$PID")
    RUN[cpu]=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    for k in turns_per_s ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors; do
        RUN[$k]=$(python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print("%.1f" % v if isinstance(v, float) else v)' "$2" "$k")
    done
    log "  ttft c=$1: $(cat "$2") server cpu ${RUN[cpu]} s"
}

if [[ " $ONLY " == *" ttft "* ]]; then
    start_halyard --agent-workers 64 --agent-queue 4096
    ttft_run 1 "$WORK/ttft1.json"
    record ttft1 turns_per_s ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors cpu
    for ((rep = 1; rep <= REPEATS; rep++)); do
        ttft_run "$TTFT_CONCURRENCY" "$WORK/ttft.json"
        record ttft turns_per_s ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors cpu
    done
    stop_halyard
    {
        echo "### (c) Time to first token: \`POST /api/v1/chat/agent/stream\` echo turns, \`--agent-workers 64 --agent-queue 4096 --no-rate-limits\`"
        echo
        echo "streams.py ttft on core $CLIENT_CORE: each client loops streamed turns on a keep-alive connection for ${DURATION}s; TTFT = request written → first \`event: token\` line read. Medians of $REPEATS runs at $TTFT_CONCURRENCY; 1 run at 1."
        echo
        echo "| concurrent streams | turns/s | TTFT p50 ms | TTFT p99 ms | whole turn p50 ms | whole turn p99 ms | errors | server CPU s |"
        echo "|--:|--:|--:|--:|--:|--:|--:|--:|"
        for k in ttft1 ttft; do
            c=$TTFT_CONCURRENCY
            [[ $k == ttft1 ]] && c=1
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$(med $k,turns_per_s)" \
                "$(med $k,ttft_ms_p50)" "$(med $k,ttft_ms_p99)" "$(med $k,turn_ms_p50)" \
                "$(med $k,turn_ms_p99)" "$(med $k,errors)" "$(med $k,cpu)"
        done
        echo
    } >>"$OUT"
fi

# ---------------------------------------------------------------- (b) open streams

# hold_streams MODE COUNT [FLAGS...]: a server with FLAGS; streams.py hold; sets RUN.
hold_streams() {
    local mode=$1 count=$2 out=$WORK/hold.$1.out line="" i before after t0 t1
    shift 2
    start_halyard --sse-heartbeat-ms 1000 --echo-token-delay-ms 60000 "$@"
    sleep 1
    RUN[rss_idle]=$(status_kib "$PID" VmRSS)
    "${PIN_CLIENT[@]}" python3 "$HERE/streams.py" hold --mode "$mode" --port "$PORT" \
        --key "$KEY" --project "$PROJ" --count "$count" --hold "$HOLD" >"$out" 2>"$out.err" &
    local client=$!
    PIDS+=("$client")
    for ((i = 0; i < 1200; i++)); do
        line=$(head -1 "$out" 2>/dev/null || true)
        [[ -n $line ]] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    [[ $line == ready* ]] || { cat "$out.err" >&2; die "stream client failed ($mode)"; }
    sleep 2
    RUN[rss_loaded]=$(status_kib "$PID" VmRSS)
    RUN[threads]=$(awk '/^Threads:/ { print $2 }' "/proc/$PID/status")
    t0=$(date +%s.%N)
    before=$(cpu_ticks "$PID")
    sleep 10
    after=$(cpu_ticks "$PID")
    t1=$(date +%s.%N)
    RUN[cpu_pct]=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "%.1f", 100 * t / hz / (b - a) }')
    RUN[rss_hwm]=$(status_kib "$PID" VmHWM)
    stop_pid "$client" $((HOLD + 30))
    read -r _ "RUN[opened]" "RUN[failed]" <<<"$line"
    RUN[json]=$(tail -1 "$out")
    RUN[per]=$(awk -v a="${RUN[rss_idle]}" -v b="${RUN[rss_loaded]}" -v n="${RUN[opened]}" \
        'BEGIN { printf "%.1f", (n > 0 ? (b - a) / n : 0) }')
    [[ -s $out.err ]] && log "  client stderr: $(head -c 400 "$out.err")"
    log "  hold $mode: $line; RSS ${RUN[rss_idle]} -> ${RUN[rss_loaded]} KiB (${RUN[per]} KiB/stream), threads ${RUN[threads]}, cpu ${RUN[cpu_pct]}%; ${RUN[json]}"
    stop_halyard
}

stream_row() { # stream_row LABEL
    local j=${RUN[json]}
    jq() { python3 -c 'import json, sys; v = json.loads(sys.argv[1]).get(sys.argv[2]); print("%.1f" % v if isinstance(v, float) else v)' "$j" "$1"; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${RUN[opened]}" \
        "${RUN[failed]}" "${RUN[rss_idle]}" "${RUN[rss_loaded]}" "${RUN[per]}" "${RUN[threads]}" \
        "${RUN[cpu_pct]}" "$(jq still_beating)" "$(jq lateness_ms_p50)" "$(jq lateness_ms_p99)" \
        "$(jq lateness_ms_max) (client loop lag p99 $(jq client_loop_lag_ms_p99))"
}

if [[ " $ONLY " == *" streams "* ]]; then
    {
        echo "### (b) Open SSE streams, \`--sse-heartbeat-ms 1000 --echo-token-delay-ms 60000 --no-rate-limits\`"
        echo
        echo "streams.py hold on core $CLIENT_CORE, Halyard --threads 1 on core $SERVER_CORE; streams held ${HOLD}s; RSS idle = after start, before the streams (VmRSS); per stream = (loaded - idle) / opened; CPU = server CPU over 10 s with every stream open; lateness = gap between consecutive heartbeats on a stream - 1000 ms, over the gaps that ended after all streams were open."
        echo
        echo "| streams | opened | failed | RSS idle KiB | RSS loaded KiB | KiB per stream | server threads | server CPU % | still beating | lateness p50 ms | lateness p99 ms | lateness max ms |"
        echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    } >>"$OUT"
    hold_streams resume "$STREAMS"
    stream_row "1 turn + $((STREAMS - 1)) resumes" >>"$OUT"
    if ((TURN_STREAMS > 0)); then
        hold_streams turns "$TURN_STREAMS" --agent-workers $((TURN_STREAMS + 16)) --agent-queue 4096
        stream_row "$TURN_STREAMS turns (--agent-workers $((TURN_STREAMS + 16)))" >>"$OUT"
    fi
    echo >>"$OUT"
fi

echo
echo "Machine before the runs: \`$UPTIME_BEFORE\` ($(nproc) cores)."
echo
cat "$OUT"
exit 0
