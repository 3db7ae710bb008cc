#!/usr/bin/env bash
# shellcheck disable=SC2016 # backquotes in Markdown output
# Load test of chat (issue 6; issue "Agent runtime without threads"; issue 15): sync agent
# turns, time to first token, open SSE streams, ten thousand concurrent streamed turns, the
# cost of relaying an upstream against nginx, the fake upstream alone, and HTTP tool calls.
#
# (a) Turns: Halyard `--dev --no-rate-limits` (`--fsync always`, the default; echo provider,
#     no token delay). wrk (64 connections, chat.lua) posts `POST /api/v1/chat/agent`
#     {"projectId","message":"hello there"} with the dev API key (each turn creates a session
#     and stores two messages durably), alternating with `GET /health/live` on the same
#     server, REPEATS x DURATION s; medians of turns/s, latency, server CPU. Reference in the
#     same run: `write`+`fdatasync` of 200 bytes in a loop in the server's data directory for
#     3 s (the disk's synchronous flush rate).
# (c) Time to first token: streams.py ttft, TTFT_CONCURRENCY concurrent clients (each a
#     keep-alive loop of `POST /api/v1/chat/agent/stream` echo turns, no token delay) for
#     DURATION s, REPEATS times, and once with 1 client for reference; p50/p99 in ms.
# (b) Streams: Halyard with `--sse-heartbeat-ms 1000 --echo-token-delay-ms 60000`; streams.py
#     hold opens STREAMS streams: one slow turn and STREAMS-1 resumes
#     (`GET /api/v1/chat/stream/:id`) that follow it live; holds them HOLD s. Reports RSS
#     after start (before any stream), RSS with every stream open, (difference)/STREAMS,
#     server CPU per second while they are held, and the heartbeat lateness (interval - 1 s)
#     p50/p99/max. Then the same with TURN_STREAMS streams that are each their own running
#     turn (`--max-running-turns TURN_STREAMS+16`; a running turn is a task, no thread).
# (d) Concurrency: CONCURRENCY clients (chatload, one thread) each stream ONE turn of 20
#     tokens at 50 ms a token (1 s alone), all requests written at once once every connection
#     is open: from the echo provider (`--echo-token-delay-ms 50`, a 19-word message: "Echo:"
#     + 19 words) and from the fake upstream process (`fake:tokens=20;delay_ms=50`, an
#     `openai` agent). Per repeat (a fresh server each): one turn alone, then the N turns.
#     Reports `done` events, wall time from the first request to the last `done` minus the
#     turn alone, Halyard's added TTFT (TTFT - 50 ms) p50/p99, Halyard's threads and RSS before
#     (idle, no connection) and at peak (sampled every 10 ms), (peak - before)/N. The
#     upstream variant needs two descriptors per turn in Halyard: N is capped to fit the
#     hard open-file limit. The peer, placed as Halyard: nginx relaying the same fake upstream
#     (`proxy_buffering off`), the same N at once: what moving the bytes alone costs here.
# (e) Relay: the fake upstream behind Halyard (an `openai` agent: parse, re-frame, store) and
#     behind nginx (`proxy_pass`, `proxy_buffering off`, upstream keepalive 64), alternating,
#     REPEATS times each: RELAY_STREAMS concurrent streams x RELAY_ROUNDS turns of
#     RELAY_TOKENS tokens at RELAY_DELAY_MS; server CPU (utime+stime, nginx with its worker)
#     from the first request to the end / tokens the client received; ratio Halyard/nginx.
# (e') Instructions (opt-in, `--only instructions`; needs valgrind): the relay of (e) at
#     RELAY_IR_STREAMS streams x 2 turns, Halyard and then nginx (`master_process off`) each
#     run under callgrind with instrumentation on only during the measured run: user-space
#     instructions per relayed token. Deterministic (repeats agree within 0.1%) where CPU
#     time on this shared machine is not; it counts work, not cycles (no cache misses, no
#     kernel), so it ranks changes to Halyard's relay path, not the CPU ratio of (e).
# (f) Upstream: the fake upstream alone (the former ignored test `ten_thousand_streams` of
#     testkit/tests/upstream.rs): CONCURRENCY streams x UPSTREAM_ROUNDS of 20 tokens at 50 ms
#     from its one loop thread; its CPU (user/system), peak RSS, per-stream times, added TTFT (TTFT - 50 ms).
# (g) Tools (issue 15): Halyard `--tool-allow-cidr 127.0.0.0/8`, echo provider in its tool
#     mode (a message line `call NAME {json}` asks for that call; after the result it answers
#     `Echo: <result>`). Latency: one chatload client, sequential keep-alive requests for
#     DURATION s each, alternating REPEATS times: (1) sync turns `POST /api/v1/chat/agent`
#     `call ping {}` on an agent whose tool `ping` GETs nginx's `location /tool { return 200
#     '{"ok":true}'; }`; (2) plain `hello` turns on the tool-less entry agent; (3) `GET /tool`
#     on nginx alone. Added latency per tool call = p99(1) - p99(2) - p99(3) (and the same
#     with p50); Halyard CPU per turn of (1) and (2). Concurrency: TOOL_CONCURRENCY turns at
#     once, each a message of TOOL_CALLS lines `call ping {}` (parallel calls in one round),
#     against tool_server.py (asyncio) answering after TOOL_DELAY_MS; per repeat a fresh
#     server (`--max-running-turns` >= TOOL_CONCURRENCY): one such turn alone, then the N.
#     Reports completed turns (each answer checked to hold the N results), wall time, the
#     peak of tool requests in flight at the tool server, Halyard's threads idle
#     (/proc/PID/task, before any turn) and at peak (sampled every 10 ms).
#
# Pinned: Halyard `--threads 1` (with its storage and resolver threads) and nginx
# (`worker_processes 1`) on core 0; the clients and the fake upstream on core 1 (in (f) the
# upstream is the server: core 0). Everything listens on 127.0.0.1; every process started
# here is stopped by PID on exit; every client run is bounded (chatload --timeout).
#
# Usage: benches/load/chat.sh [--quick] [--duration S] [--repeats N] [--streams N]
#                             [--turn-streams N] [--hold S] [--ttft-concurrency N]
#                             [--concurrency N] [--relay-streams N] [--relay-tokens N]
#                             [--relay-delay-ms D] [--relay-rounds N] [--upstream-rounds N]
#                             [--tool-concurrency N] [--tool-calls N] [--tool-delay-ms D]
#                             [--only "turns ttft streams concurrency relay upstream tools"]
#                             (and the opt-in mode "instructions")
#                             [--no-build] [--profile] [--unpinned]
#   --quick      shorter runs: 3 s windows, 8 s hold, 1,000 streams/turns, relay 1 round
#   --profile    `perf record -g` on Halyard during one turns run and one concurrency run
#                of each provider; top functions (self)
#   --unpinned   no core affinity, and Halyard with `--threads 2` (one loop per core): what
#                the machine gives when the server may use both cores (meant for
#                "concurrency"; the relay's comparison with one nginx worker needs pinning)
# Environment: HALYARD_BIN (skip building Halyard), FAKE_UPSTREAM_BIN (skip building the
# fake upstream), CARGO_TARGET_DIR (Halyard's), KEEP_WORK=1 (keep the work directory: the
# profiles `perf.*.data` and `cg.*` for `perf report` and `callgrind_annotate`).

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
TURN_STREAMS=10000
HOLD=20
TTFT_CONCURRENCY=1000
CONCURRENCY=10000
CONC_TOKENS=20
CONC_DELAY_MS=50
RELAY_STREAMS=200
RELAY_TOKENS=200
RELAY_DELAY_MS=10
RELAY_ROUNDS=3
RELAY_IR_STREAMS=50
UPSTREAM_ROUNDS=1
TOOL_CONCURRENCY=1000
TOOL_CALLS=3
TOOL_DELAY_MS=500
ONLY="turns ttft streams concurrency relay upstream tools"
BUILD=1
PROFILE=0
SERVER_CORE=0
CLIENT_CORE=1
UNPINNED=0
THREADS=1
STORAGE_REFERENCE=18714 # acked appends/s at 64 appenders, "## Storage" in benches/RESULTS.md

usage() {
    sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) DURATION=3; HOLD=8; STREAMS=1000; TURN_STREAMS=1000; CONCURRENCY=1000; RELAY_ROUNDS=1 ;;
        --duration) DURATION=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --streams) STREAMS=$2; shift ;;
        --turn-streams) TURN_STREAMS=$2; shift ;;
        --hold) HOLD=$2; shift ;;
        --ttft-concurrency) TTFT_CONCURRENCY=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --relay-streams) RELAY_STREAMS=$2; shift ;;
        --relay-tokens) RELAY_TOKENS=$2; shift ;;
        --relay-delay-ms) RELAY_DELAY_MS=$2; shift ;;
        --relay-rounds) RELAY_ROUNDS=$2; shift ;;
        --upstream-rounds) UPSTREAM_ROUNDS=$2; shift ;;
        --tool-concurrency) TOOL_CONCURRENCY=$2; shift ;;
        --tool-calls) TOOL_CALLS=$2; shift ;;
        --tool-delay-ms) TOOL_DELAY_MS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        --profile) PROFILE=1 ;;
        --unpinned) UNPINNED=1; THREADS=2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done

start_work chat

has() { [[ " $ONLY " == *" $1 "* ]]; }
has turns && need wrk wrk
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
PLACE_SERVER="on core $SERVER_CORE"
PLACE_CLIENT="on core $CLIENT_CORE"
if ((UNPINNED)); then
    for mode in relay upstream tools; do
        ! has "$mode" || die "--unpinned compares nothing in \"$mode\" (it needs pinning): leave it out of --only"
    done
    PIN_SERVER=()
    PIN_CLIENT=()
    PLACE_SERVER="unpinned"
    PLACE_CLIENT="unpinned"
fi

# Every stream is a descriptor in the client and in the server (two in the server when it
# relays an upstream). The hard limit can only be raised with CAP_SYS_RESOURCE.
most=$STREAMS
((TURN_STREAMS > most)) && most=$TURN_STREAMS
((CONCURRENCY > most)) && most=$CONCURRENCY
want_fds=$((2 * most + 1024))
if (($(ulimit -Hn) < want_fds)); then ulimit -Hn "$want_fds" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
log "open-file limit $FD_LIMIT"
for v in STREAMS TURN_STREAMS CONCURRENCY; do
    if ((FD_LIMIT < ${!v} + 1024)); then
        log "open-file limit $FD_LIMIT < ${!v} + 1024: $v reduced"
        printf -v "$v" '%s' $((FD_LIMIT - 1024))
    fi
done
# The upstream variant of (d): a client connection and an upstream connection per turn in
# Halyard, plus its own few dozen descriptors.
CONC_UP=$CONCURRENCY
if ((2 * CONC_UP + 128 > FD_LIMIT)); then CONC_UP=$(((FD_LIMIT - 128) / 2 / 100 * 100)); fi
# The peer of (d): nginx needs the same two, and closes idle client connections (those whose
# request it has not read yet) once fewer than 1/16 of its connections are free.
CONC_NGX=$CONC_UP
if ((2 * CONC_NGX * 16 / 15 + 128 > FD_LIMIT)); then CONC_NGX=$(((FD_LIMIT - 128) * 15 / 16 / 2 / 100 * 100)); fi
# (g): a client connection and TOOL_CALLS tool connections per turn in Halyard.
if has tools && ((TOOL_CONCURRENCY * (1 + TOOL_CALLS) + 128 > FD_LIMIT)); then
    die "open-file limit $FD_LIMIT too low for $TOOL_CONCURRENCY turns x $TOOL_CALLS tool calls"
fi

resolve_halyard_bin
if has concurrency || has relay || has instructions || has upstream || has ttft; then
    resolve_fake_upstream_bin
fi
if has concurrency || has relay || has instructions || has upstream || has ttft || has tools; then
    build_chatload
fi
if (has relay || has instructions || has tools) && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    apt_install nginx-light || apt_install nginx || die "nginx unavailable"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- server

PORT="" PID="" DATA="" KEY="" PROJ=""
# start_halyard [FLAGS...]: one `--dev --no-rate-limits` server, pinned; sets PORT PID DATA KEY PROJ.
start_halyard() {
    local dir
    PORT=$(free_port)
    dir=$(mktemp -d "$WORK/halyard.XXXX")
    DATA=$dir/data
    "${PIN_SERVER[@]}" "$HALYARD_BIN" serve --listen "127.0.0.1:$PORT" --threads "$THREADS" \
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

# openai_project MODEL: a project on the running server whose entry agent `gpt` is an
# `openai` agent streaming MODEL from the fake upstream (UP_PORT); sets OPROJ.
openai_project() {
    local base="http://127.0.0.1:$PORT" h=(-H "Authorization: Bearer $KEY" -H 'Content-Type: application/json')
    OPROJ=$(curl -sS --fail-with-body "${h[@]}" -d '{"name":"relay","entryAgentName":"gpt"}' \
        "$base/api/projects" | python3 -c 'import json, sys; print(json.load(sys.stdin)["project"]["id"])')
    curl -sS --fail-with-body -o /dev/null "${h[@]}" -d '{"name":"OPENAI_KEY","value":"sk-x"}' \
        "$base/api/projects/$OPROJ/secrets"
    curl -sS --fail-with-body -o /dev/null "${h[@]}" -d "{\"name\":\"gpt\",\"model\":{\"provider\":\"openai\",\"model\":\"$1\",\"baseUrl\":\"http://127.0.0.1:$UP_PORT/v1\",\"apiKeySecret\":\"OPENAI_KEY\"}}" \
        "$base/api/projects/$OPROJ/agents"
}

# jfields FILE PATH...: the values at PATHs (dotted, e.g. watch.halyard.rss_peak_kib) of the
# JSON object in FILE, space-separated (null as "-").
jfields() {
    python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
out = []
for path in sys.argv[2:]:
    v = d
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    out.append("-" if v is None else str(v))
print(" ".join(out))
PY
}

# chatload_run OUT ARGS...: the client pinned on the client core; its JSON in OUT (exit code
# kept: 1 when not every request got its done, which the report shows).
chatload_run() {
    local out=$1 rc=0 b0 b1
    shift
    b0=$(machine_ticks)
    "${PIN_CLIENT[@]}" "$CHATLOAD" "$@" >"$out" 2>"$out.err" || rc=$?
    b1=$(machine_ticks)
    RUN[busy]=$(awk -v t=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    if [[ ! -s $out ]]; then cat "$out.err" >&2; die "chatload failed ($rc)"; fi
    ((rc == 0)) || log "  chatload: not every request ended with done: $(head -c 300 "$out.err")"
}

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

if has turns; then
    start_halyard
    cat >"$WORK/chat.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"projectId":"$PROJ","message":"hello there"}'
EOF
    wrk_load /api/v1/chat/agent 2 "$WORK/warm.out" "$WORK/chat.lua"
    for ((rep = 1; rep <= REPEATS; rep++)); do
        wait_quiet 90
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
        echo "### (a) Sync turns: \`POST /api/v1/chat/agent\`, echo provider, no delay, \`--fsync always\`, \`--no-rate-limits\`"
        echo
        echo "Medians of $REPEATS x ${DURATION}s, wrk -t1 -c$CONNECTIONS (chat.lua) $PLACE_CLIENT, Halyard --threads $THREADS $PLACE_SERVER; alternating with \`GET /health/live\` on the same server."
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

if has ttft; then
    start_halyard
    ttft_run 1 "$WORK/ttft1.json"
    record ttft1 turns_per_s ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors cpu
    for ((rep = 1; rep <= REPEATS; rep++)); do
        wait_quiet 90
        ttft_run "$TTFT_CONCURRENCY" "$WORK/ttft.json"
        record ttft turns_per_s ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors cpu
    done
    # The same with chatload: asyncio spends more CPU per streamed turn than the server now.
    if [[ -n ${CHATLOAD:-} ]]; then
        for c in 1 "$TTFT_CONCURRENCY"; do
            for ((rep = 1; rep <= (c == 1 ? 1 : REPEATS); rep++)); do
                wait_quiet 90
                out=$WORK/ttft.chatload.$c.json
                chatload_run "$out" --port "$PORT" --key "$KEY" --path /api/v1/chat/agent/stream \
                    --body "{\"projectId\":\"$PROJ\",\"message\":\"hello there\"}" --streams "$c" \
                    --duration "$DURATION" --timeout $((DURATION + 60)) --watch "halyard=$PID"
                read -r "RUN[turns_per_s]" "RUN[ttft_ms_p50]" "RUN[ttft_ms_p99]" "RUN[turn_ms_p50]" \
                    "RUN[turn_ms_p99]" "RUN[errors]" "RUN[cpu]" "RUN[ccpu]" <<<"$(jfields "$out" turns_per_s \
                    ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors watch.halyard.cpu_s client_cpu_s)"
                log "  ttft chatload c=$c: ${RUN[turns_per_s]} turns/s, TTFT p50 ${RUN[ttft_ms_p50]} p99 ${RUN[ttft_ms_p99]} ms, turn p50 ${RUN[turn_ms_p50]} p99 ${RUN[turn_ms_p99]} ms, errors ${RUN[errors]}, server cpu ${RUN[cpu]} s, client cpu ${RUN[ccpu]} s, machine busy ${RUN[busy]} s"
                record "ttftc$c" turns_per_s ttft_ms_p50 ttft_ms_p99 turn_ms_p50 turn_ms_p99 errors cpu ccpu busy
            done
        done
    fi
    stop_halyard
    {
        echo "### (c) Time to first token: \`POST /api/v1/chat/agent/stream\` echo turns, \`--no-rate-limits\`"
        echo
        echo "streams.py ttft $PLACE_CLIENT: each client loops streamed turns on a keep-alive connection for ${DURATION}s; TTFT = request written → first \`event: token\` line read. Medians of $REPEATS runs at $TTFT_CONCURRENCY; 1 run at 1."
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
        if [[ -n ${CHATLOAD:-} ]]; then
            echo
            echo "The same server and turns driven by chatload (Rust, one thread, core $CLIENT_CORE; each stream loops turns for ${DURATION}s; turns/s = turns / (first request → last \`done\`)). Medians of $REPEATS runs at $TTFT_CONCURRENCY; 1 run at 1."
            echo
            echo "| concurrent streams | turns/s | TTFT p50 ms | TTFT p99 ms | whole turn p50 ms | whole turn p99 ms | errors | server CPU s | client CPU s | machine busy CPU s |"
            echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
            for c in 1 "$TTFT_CONCURRENCY"; do
                k=ttftc$c
                printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$(med "$k",turns_per_s)" \
                    "$(med "$k",ttft_ms_p50)" "$(med "$k",ttft_ms_p99)" "$(med "$k",turn_ms_p50)" \
                    "$(med "$k",turn_ms_p99)" "$(med "$k",errors)" "$(med "$k",cpu)" "$(med "$k",ccpu)" "$(med "$k",busy)"
            done
        fi
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
    wait_quiet 90
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

if has streams; then
    {
        echo "### (b) Open SSE streams, \`--sse-heartbeat-ms 1000 --echo-token-delay-ms 60000 --no-rate-limits\`"
        echo
        echo "streams.py hold $PLACE_CLIENT, Halyard --threads $THREADS $PLACE_SERVER; streams held ${HOLD}s; RSS idle = after start, before the streams (VmRSS); per stream = (loaded - idle) / opened; CPU = server CPU over 10 s with every stream open; lateness = gap between consecutive heartbeats on a stream - 1000 ms, over the gaps that ended after all streams were open."
        echo
        echo "| streams | opened | failed | RSS idle KiB | RSS loaded KiB | KiB per stream | server threads | server CPU % | still beating | lateness p50 ms | lateness p99 ms | lateness max ms |"
        echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    } >>"$OUT"
    hold_streams resume "$STREAMS"
    stream_row "1 turn + $((STREAMS - 1)) resumes" >>"$OUT"
    if ((TURN_STREAMS > 0)); then
        hold_streams turns "$TURN_STREAMS" --max-running-turns $((TURN_STREAMS + 16))
        stream_row "$TURN_STREAMS running turns (--max-running-turns $((TURN_STREAMS + 16)))" >>"$OUT"
    fi
    echo >>"$OUT"
fi

# ---------------------------------------------------------------- (d) concurrency

# perf_top PID SECS OUT: `perf record -g` on PID for SECS in the background; PERF_REC its pid.
perf_start() {
    perf record -F 999 -g -p "$1" -o "$2" -- sleep "$3" 2>/dev/null &
    PERF_REC=$!
    PIDS+=("$PERF_REC")
}
perf_summary() { # perf_summary DATA: top functions (self), user/kernel split, by thread
    echo '```'
    echo "-- top functions (self)"
    perf report -i "$1" --stdio -g none --no-children --fields overhead,comm,dso,sym \
        --percent-limit 0.7 2>/dev/null | grep -vE '^\s*$|^#' | head -40
    echo "-- by thread"
    perf report -i "$1" --stdio -g none --no-children --sort comm 2>/dev/null |
        grep -vE '^\s*$|^#' | head -8
    echo "-- user / kernel"
    perf report -i "$1" --stdio -g none --no-children --sort dso 2>/dev/null |
        grep -vE '^\s*$|^#' | head -6
    echo "-- system calls and interrupts, with what they call (children)"
    perf report -i "$1" --stdio -g none --children --sort sym 2>/dev/null |
        grep -E '\] (__x64_sys_|asm_(sysvec|common_interrupt)|__do_softirq|net_rx_action)' | head -14
    echo '```'
}

ECHO_MSG=$(python3 -c 'print(" ".join("w%d" % i for i in range(1, 20)))') # 19 words

# conc_variant KIND N: REPEATS x (fresh server, one turn alone, N turns at once); records
# RESULT[conc_KIND,*]. KIND is echo or upstream (the fake upstream must be running).
# launch_nginx DIR PORT [LAUNCHER...]: nginx on DIR's config, started through LAUNCHER
# (taskset, valgrind, or nothing), stopped on exit; waits for PORT; sets LAUNCHED (its PID).
launch_nginx() {
    local dir=$1 port=$2
    shift 2
    "$@" "$NGINX" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/log" 2>&1 &
    LAUNCHED=$!
    PIDS+=("$LAUNCHED")
    wait_ready "$port" "$LAUNCHED" || { cat "$dir/log" "$dir/error.log" >&2; die "nginx did not start"; }
}

NGX_PID="" NGX_PORT="" NGX_DIR=""
start_nginx_relay() { # start_nginx_relay [CONNECTIONS [WORKERS]]: nginx proxying /v1/ to the fake upstream
    local dir conns=${1:-4096} workers=${2:-1}
    dir=$(mktemp -d "$WORK/nginx.XXXX")
    NGX_DIR=$dir
    NGX_PORT=$(free_port)
    nginx_conf "$dir" "$NGX_PORT" "$workers" "$conns" "" \
        "upstream fake { server 127.0.0.1:$UP_PORT; keepalive 64; }" \
        'location /v1/ { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; proxy_read_timeout 60s; }'
    launch_nginx "$dir" "$NGX_PORT" "${PIN_SERVER[@]}"
    NGX_PID=$LAUNCHED
    log "nginx pid $NGX_PID port $NGX_PORT -> upstream $UP_PORT"
}

# conc_variant echo|upstream|nginx N: (d) for Halyard's echo provider, Halyard relaying the fake
# upstream, or the peer: nginx relaying the same upstream (what a server that only moves the
# bytes gets from the same cores).
conc_variant() {
    local kind=$1 n=$2 rep out alone cap spid watch=() common=()
    cap=$((n > 10000 ? n : 10000))
    for ((rep = 1; rep <= REPEATS; rep++)); do
        case $kind in
        echo)
            start_halyard --echo-token-delay-ms "$CONC_DELAY_MS" --max-running-turns "$cap"
            common=(--port "$PORT" --key "$KEY" --path /api/v1/chat/agent/stream
                --body "{\"projectId\":\"$PROJ\",\"message\":\"$ECHO_MSG\"}")
            spid=$PID
            ;;
        upstream)
            start_halyard --max-running-turns "$cap"
            openai_project "fake:tokens=$CONC_TOKENS;delay_ms=$CONC_DELAY_MS"
            common=(--port "$PORT" --key "$KEY" --path /api/v1/chat/agent/stream
                --body "{\"projectId\":\"$OPROJ\",\"message\":\"hello there\"}")
            spid=$PID
            watch=(--watch "upstream=$UP_PID")
            ;;
        nginx)
            start_nginx_relay $((FD_LIMIT - 64)) "$THREADS" # every descriptor the limit allows
            common=(--port "$NGX_PORT" --proto openai --path /v1/chat/completions
                --body "{\"model\":\"fake:tokens=$CONC_TOKENS;delay_ms=$CONC_DELAY_MS\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}")
            spid=$NGX_PID
            watch=(--watch "upstream=$UP_PID")
            ;;
        esac
        alone=$WORK/conc.$kind.alone.json
        wait_quiet 90
        chatload_run "$alone" "${common[@]}" --streams 1 --timeout 30
        out=$WORK/conc.$kind.$rep.json
        wait_quiet 90
        chatload_run "$out" "${common[@]}" --streams "$n" --timeout 300 --watch "server=$spid" \
            "${watch[@]+"${watch[@]}"}"
        read -r "RUN[alone_wall]" "RUN[alone_ttft]" "RUN[alone_tokens]" <<<"$(jfields "$alone" wall_ms ttft_ms_p50 tokens_max)"
        read -r "RUN[done]" "RUN[expected]" "RUN[errors]" "RUN[wall]" "RUN[ttft50]" "RUN[ttft99]" "RUN[ttftmax]" \
            "RUN[turn50]" "RUN[turn99]" "RUN[tokmin]" "RUN[tokmax]" "RUN[spread]" "RUN[connect]" "RUN[ccpu]" \
            "RUN[thr0]" "RUN[thr1]" "RUN[thrp]" "RUN[rss0]" "RUN[rss1]" "RUN[rssp]" "RUN[hcpu]" "RUN[hsys]" \
            "RUN[ucpu]" <<<"$(jfields "$out" "done" expected errors wall_ms ttft_ms_p50 ttft_ms_p99 \
            ttft_ms_max turn_ms_p50 turn_ms_p99 tokens_min tokens_max write_spread_ms connect_ms \
            client_cpu_s watch.server.threads_start watch.server.threads_connected \
            watch.server.threads_peak watch.server.rss_start_kib watch.server.rss_connected_kib \
            watch.server.rss_peak_kib watch.server.cpu_s watch.server.cpu_sys_s watch.upstream.cpu_s)"
        RUN[over]=$(awk -v a="${RUN[wall]}" -v b="${RUN[alone_wall]}" 'BEGIN { printf "%.0f", a - b }')
        RUN[add50]=$(awk -v a="${RUN[ttft50]}" -v d="$CONC_DELAY_MS" 'BEGIN { printf "%.1f", a - d }')
        RUN[add99]=$(awk -v a="${RUN[ttft99]}" -v d="$CONC_DELAY_MS" 'BEGIN { printf "%.1f", a - d }')
        RUN[alone_add]=$(awk -v a="${RUN[alone_ttft]}" -v d="$CONC_DELAY_MS" 'BEGIN { printf "%.1f", a - d }')
        RUN[per]=$(awk -v a="${RUN[rss0]}" -v b="${RUN[rssp]}" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
        RUN[per_conn]=$(awk -v a="${RUN[rss1]}" -v b="${RUN[rssp]}" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
        log "  $kind x$n rep $rep: done ${RUN[done]}/${RUN[expected]} errors ${RUN[errors]} tokens ${RUN[tokmin]}-${RUN[tokmax]}; wall ${RUN[wall]} ms (alone ${RUN[alone_wall]}: +${RUN[over]}); added TTFT p50 ${RUN[add50]} p99 ${RUN[add99]} ms (alone ${RUN[alone_add]}); threads ${RUN[thr0]} -> ${RUN[thrp]}; RSS ${RUN[rss0]} -> ${RUN[rss1]} (connected) -> ${RUN[rssp]} KiB (${RUN[per]} KiB/turn); server cpu ${RUN[hcpu]} s (sys ${RUN[hsys]}), upstream ${RUN[ucpu]} s, client ${RUN[ccpu]} s, machine busy ${RUN[busy]} s; requests written over ${RUN[spread]} ms"
        if [[ $kind == nginx ]] && ((RUN[errors] > 0)); then
            log "  nginx's error log, by message: $(sed -E 's/^[0-9/: ]+\[[a-z]+\] [0-9#]+: \*[0-9]+ //; s/, client:.*//' "$NGX_DIR/error.log" | sort | uniq -c | sort -rn | head -3 | tr '\n' ';')"
        fi
        record "conc_$kind" alone_wall alone_add "done" expected errors wall over add50 add99 turn50 turn99 \
            tokmin tokmax spread connect ccpu thr0 thrp rss0 rss1 rssp per per_conn hcpu hsys ucpu busy
        if ((PROFILE && rep == REPEATS)) && [[ $kind != nginx ]]; then
            perf_start "$PID" "$WORK/perf.conc.$kind.data" 8
            chatload_run "$WORK/conc.$kind.perf.json" "${common[@]}" --streams "$n" --timeout 300
            stop_pid "$PERF_REC" 15
            log "  (profiled run: $(jfields "$WORK/conc.$kind.perf.json" "done" wall_ms))"
        fi
        stop_pid "$spid"
    done
}

conc_row() { # conc_row KIND N LABEL
    local k=conc_$1 thr0 thrp rss0 rssp per
    read -r thr0 thrp rss0 rssp per <<<"$(med "$k,thr0") $(med "$k,thrp") $(med "$k,rss0") $(med "$k,rssp") $(med "$k,per")"
    # nginx's worker is a child of the process watched: its threads and memory are not in these.
    [[ $1 == nginx ]] && read -r thr0 thrp rss0 rssp per <<<"- - - - -"
    printf '| %s | %s | %s / %s | %s | %s | %s | **%s** | %s | **%s** | %s → **%s** | %s | %s | **%s** | %s | %s | %s | %s |\n' \
        "$3" "$2" "$(med "$k,done")" "$(med "$k,expected")" "$(med "$k,alone_wall")" \
        "$(med "$k,wall")" "$(med "$k,spread")" "$(med "$k,over")" "$(med "$k,add50")" \
        "$(med "$k,add99")" "$thr0" "$thrp" "$rss0" "$rssp" "$per" "$(med "$k,hcpu") (sys $(med "$k,hsys"))" \
        "$(med "$k,ucpu")" "$(med "$k,ccpu")" "$(med "$k,busy")"
}

if has concurrency; then
    log "(d) concurrency: $CONCURRENCY echo turns, $CONC_UP upstream turns"
    conc_variant echo "$CONCURRENCY"
    start_fake_upstream "${PIN_CLIENT[@]}"
    conc_variant upstream "$CONC_UP"
    conc_variant nginx "$CONC_NGX"
    stop_fake_upstream
    {
        echo "### (d) $CONCURRENCY concurrent streamed turns, $CONC_TOKENS tokens at $CONC_DELAY_MS ms (1 s alone), all requested at once"
        echo
        echo "chatload (Rust, one thread) $PLACE_CLIENT with the fake upstream; Halyard --threads $THREADS $PLACE_SERVER, \`--max-running-turns $((CONCURRENCY > 10000 ? CONCURRENCY : 10000))\`. Every connection is opened first, then one \`POST /api/v1/chat/agent/stream\` is written on each in a loop. Per repeat a fresh server: one turn alone, then the N. Wall = first request written → last \`done\`; added TTFT = request written → first \`event: token\`, minus the provider's own $CONC_DELAY_MS ms; RSS before = VmRSS of the idle server (no connection), peak = the largest VmRSS sampled every 10 ms during the run; per turn = (peak − before)/N. Medians of $REPEATS."
        echo
        echo "The peer: nginx (\`worker_processes $THREADS\`, \`proxy_buffering off\`, placed as Halyard) relaying the same fake upstream, \`POST /v1/chat/completions\` on each connection: what a server that only moves the bytes gets from the same cores."
        echo
        echo "| provider | N | done / N | one turn alone ms | wall ms | requests written over ms | wall − alone ms | added TTFT p50 ms | added TTFT p99 ms | threads before → peak | RSS before KiB | RSS peak KiB | KiB per running turn | server CPU s | upstream CPU s | client CPU s | machine busy CPU s (2 cores) |"
        echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        conc_row echo "$CONCURRENCY" "echo (\`--echo-token-delay-ms $CONC_DELAY_MS\`)"
        conc_row upstream "$CONC_UP" "fake upstream (\`fake:tokens=$CONC_TOKENS;delay_ms=$CONC_DELAY_MS\`)"
        conc_row nginx "$CONC_NGX" "peer: nginx relaying the fake upstream"
        echo
        for k in echo upstream; do
            check "$k: wall − alone (ms)" "$(med "conc_$k,over")" "<=" 1500
            check "$k: added TTFT p99 (ms)" "$(med "conc_$k,add99")" "<=" 50
            check "$k: threads at peak − before" "$(awk -v a="$(med "conc_$k,thrp")" -v b="$(med "conc_$k,thr0")" 'BEGIN { print a - b }')" "<=" 0
            check "$k: KiB per running turn" "$(med "conc_$k,per")" "<=" 16
            check "$k: done events missing" "$(awk -v a="$(med "conc_$k,expected")" -v b="$(med "conc_$k,done")" 'BEGIN { print a - b }')" "<=" 0
        done
        echo "- per repeat, wall − alone: echo ${RESULT[conc_echo,over]% } ms; upstream ${RESULT[conc_upstream,over]% } ms; nginx ${RESULT[conc_nginx,over]% } ms; nginx's added TTFT p99 ${RESULT[conc_nginx,add99]% } ms; KiB per turn counting from the connected (idle) state instead: echo $(med conc_echo,per_conn), upstream $(med conc_upstream,per_conn)"
        if ((CONC_UP < CONCURRENCY)); then
            echo "- the upstream variant ran $CONC_UP turns, not $CONCURRENCY: Halyard needs two descriptors per relayed turn and the hard open-file limit here is $FD_LIMIT (raising it needs CAP_SYS_RESOURCE)."
        fi
        if ((CONC_NGX < CONC_UP)); then
            echo "- the peer ran $CONC_NGX streams: nginx needs two descriptors per stream too, and once fewer than 1/16 of its \`worker_connections\` are free it closes client connections whose request it has not read yet."
        fi
        if ((PROFILE)); then
            for k in echo upstream; do
                echo
                echo "\`perf record -g\` of Halyard, one more $k run:"
                echo
                perf_summary "$WORK/perf.conc.$k.data"
            done
        fi
        echo
    } >>"$OUT"
fi

# ---------------------------------------------------------------- (e) relay vs nginx

# relay_run halyard|nginx STREAMS ROUNDS OUT: sets RUN[tokens cpu per ...].
relay_run() {
    local who=$1 n=$2 rounds=$3 out=$4 model="fake:tokens=$RELAY_TOKENS;delay_ms=$RELAY_DELAY_MS"
    if [[ $who == halyard ]]; then
        chatload_run "$out" --port "$PORT" --key "$KEY" --path /api/v1/chat/agent/stream \
            --body "{\"projectId\":\"$OPROJ\",\"message\":\"hello there\"}" --streams "$n" \
            --rounds "$rounds" --timeout 300 --watch "server=$PID" --watch "upstream=$UP_PID"
    else
        chatload_run "$out" --port "$NGX_PORT" --proto openai --path /v1/chat/completions \
            --body "{\"model\":\"$model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}" \
            --streams "$n" --rounds "$rounds" --timeout 300 --watch "server=$NGX_PID" --watch "upstream=$UP_PID"
    fi
    read -r "RUN[done]" "RUN[expected]" "RUN[tokens]" "RUN[tokmin]" "RUN[tokmax]" "RUN[run]" "RUN[cpu]" "RUN[usr]" \
        "RUN[sys]" "RUN[ucpu]" "RUN[ccpu]" "RUN[ttft50]" "RUN[ttft99]" "RUN[rss]" <<<"$(jfields "$out" "done" expected \
        tokens_total tokens_min tokens_max run_ms watch.server.cpu_s watch.server.cpu_user_s \
        watch.server.cpu_sys_s watch.upstream.cpu_s client_cpu_s ttft_ms_p50 ttft_ms_p99 watch.server.rss_peak_kib)"
    RUN[per]=$(awk -v c="${RUN[cpu]}" -v t="${RUN[tokens]}" 'BEGIN { printf "%.2f", (t > 0 ? c * 1e6 / t : 0) }')
    log "  relay $who: done ${RUN[done]}/${RUN[expected]} tokens ${RUN[tokens]} (${RUN[tokmin]}-${RUN[tokmax]} a stream) in ${RUN[run]} ms; server cpu ${RUN[cpu]} s (user ${RUN[usr]} sys ${RUN[sys]}) = ${RUN[per]} us/token; upstream ${RUN[ucpu]} s, client ${RUN[ccpu]} s, machine busy ${RUN[busy]} s; TTFT p50 ${RUN[ttft50]} p99 ${RUN[ttft99]} ms"
}

if has relay; then
    log "(e) relay: $RELAY_STREAMS streams x $RELAY_ROUNDS x $RELAY_TOKENS tokens at $RELAY_DELAY_MS ms"
    start_fake_upstream "${PIN_CLIENT[@]}"
    start_halyard
    openai_project "fake:tokens=$RELAY_TOKENS;delay_ms=$RELAY_DELAY_MS"
    start_nginx_relay
    relay_run halyard 20 1 "$WORK/relay.warm.json" # warm both (pools, allocator)
    relay_run nginx 20 1 "$WORK/relay.warm.json"
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for who in halyard nginx; do
            wait_quiet 90
            relay_run "$who" "$RELAY_STREAMS" "$RELAY_ROUNDS" "$WORK/relay.$who.json"
            record "relay_$who" "done" expected tokens tokmin tokmax run cpu usr sys per ucpu ccpu ttft50 ttft99 rss busy
        done
        RUN[ratio]=$(ratio "$(echo "${RESULT[relay_halyard,per]}" | awk '{ print $NF }')" \
            "$(echo "${RESULT[relay_nginx,per]}" | awk '{ print $NF }')")
        record relay ratio
    done
    if ((PROFILE)); then
        perf_start "$PID" "$WORK/perf.relay.data" 5
        relay_run halyard "$RELAY_STREAMS" "$RELAY_ROUNDS" "$WORK/relay.perf.json"
        stop_pid "$PERF_REC" 15
    fi
    stop_pid "$NGX_PID"
    stop_halyard
    stop_fake_upstream
    {
        echo "### (e) Relay cost: Halyard vs nginx relaying the fake upstream, $RELAY_STREAMS streams x $RELAY_ROUNDS turns x $RELAY_TOKENS tokens at $RELAY_DELAY_MS ms"
        echo
        echo "Same run, alternating, both on core $SERVER_CORE alone (Halyard --threads 1; nginx $($NGINX -v 2>&1 | sed 's/.*nginx\///') \`worker_processes 1\`, \`proxy_pass\` with \`proxy_buffering off\`, HTTP/1.1 upstream keepalive 64); the fake upstream and chatload $PLACE_CLIENT. Halyard: \`POST /api/v1/chat/agent/stream\` of an \`openai\` agent (each turn: a session, the user message, the stream's events and the answer stored, \`--fsync always\`); nginx: \`POST /v1/chat/completions\` passed through. Server CPU = utime+stime (nginx: master + worker) from the first request to the last stream's end; per token = CPU / tokens the client counted. Medians of $REPEATS."
        echo
        echo "| server | streams done | tokens relayed | run ms | server CPU s (user / sys) | **µs CPU per token** | upstream CPU s | client CPU s | TTFT p50 / p99 ms | peak RSS KiB | machine busy CPU s |"
        echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        for who in halyard nginx; do
            k=relay_$who
            printf '| %s | %s / %s | %s | %s | %s (%s / %s) | **%s** | %s | %s | %s / %s | %s | %s |\n' "$who" \
                "$(med "$k,done")" "$(med "$k,expected")" "$(med "$k,tokens")" "$(med "$k,run")" \
                "$(med "$k,cpu")" "$(med "$k,usr")" "$(med "$k,sys")" "$(med "$k,per")" \
                "$(med "$k,ucpu")" "$(med "$k,ccpu")" "$(med "$k,ttft50")" "$(med "$k,ttft99")" "$(med "$k,rss")" "$(med "$k,busy")"
        done
        echo
        check "Halyard / nginx CPU per token (median of the per-repeat ratios ${RESULT[relay,ratio]% })" "$(med relay,ratio)" "<=" 1.0
        if ((PROFILE)); then
            echo
            echo "\`perf record -g\` of Halyard during one more relay run:"
            echo
            perf_summary "$WORK/perf.relay.data"
        fi
        echo
    } >>"$OUT"
fi

# ---------------------------------------------------------------- (e') relay instructions

# callgrind_total FILE: the instructions callgrind counted in FILE (written when the process exited).
callgrind_total() {
    callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

if has instructions; then
    need valgrind valgrind
    log "(e') relay instructions: $RELAY_IR_STREAMS streams x 2 x $RELAY_TOKENS tokens under callgrind"
    model="fake:tokens=$RELAY_TOKENS;delay_ms=$RELAY_DELAY_MS"
    start_fake_upstream "${PIN_CLIENT[@]}"
    saved_pin=("${PIN_SERVER[@]+"${PIN_SERVER[@]}"}")
    PIN_SERVER=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.halyard")
    start_halyard
    PIN_SERVER=("${saved_pin[@]+"${saved_pin[@]}"}")
    openai_project "$model"
    body="{\"projectId\":\"$OPROJ\",\"message\":\"hello there\"}"
    chatload_run "$WORK/ir.warm.json" --port "$PORT" --key "$KEY" --path /api/v1/chat/agent/stream \
        --body "$body" --streams 10 --timeout 300
    callgrind_control -i on "$PID" >/dev/null 2>&1
    chatload_run "$WORK/ir.halyard.json" --port "$PORT" --key "$KEY" --path /api/v1/chat/agent/stream \
        --body "$body" --streams "$RELAY_IR_STREAMS" --rounds 2 --timeout 300
    callgrind_control -i off "$PID" >/dev/null 2>&1
    # Time to end and write the counts: a server under callgrind is ~50 times slower.
    kill -TERM "$PID"
    stop_pid "$PID" 60
    dir=$(mktemp -d "$WORK/nginx-ir.XXXX")
    NGX_PORT=$(free_port)
    nginx_conf "$dir" "$NGX_PORT" 1 4096 "" \
        "upstream fake { server 127.0.0.1:$UP_PORT; keepalive 64; }" \
        'location /v1/ { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; proxy_read_timeout 60s; }' \
        "master_process off;"
    launch_nginx "$dir" "$NGX_PORT" \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.nginx"
    NGX_PID=$LAUNCHED
    nbody="{\"model\":\"$model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}"
    chatload_run "$WORK/ir.warm.json" --port "$NGX_PORT" --proto openai --path /v1/chat/completions \
        --body "$nbody" --streams 10 --timeout 300
    callgrind_control -i on "$NGX_PID" >/dev/null 2>&1
    chatload_run "$WORK/ir.nginx.json" --port "$NGX_PORT" --proto openai --path /v1/chat/completions \
        --body "$nbody" --streams "$RELAY_IR_STREAMS" --rounds 2 --timeout 300
    callgrind_control -i off "$NGX_PID" >/dev/null 2>&1
    kill -QUIT "$NGX_PID"
    stop_pid "$NGX_PID" 60
    stop_fake_upstream
    {
        echo "### (e') Relay instructions: $RELAY_IR_STREAMS streams x 2 turns x $RELAY_TOKENS tokens under callgrind"
        echo
        echo "User-space instructions (callgrind \`Ir\`, the whole process) from the first request of the measured run to its end, / tokens the client counted."
        echo
        echo "| server | tokens | instructions | **per token** |"
        echo "|---|--:|--:|--:|"
        for who in halyard nginx; do
            tokens=$(jfields "$WORK/ir.$who.json" tokens_total)
            ir=$(callgrind_total "$WORK/cg.$who")
            [[ -n $ir ]] || die "no callgrind counts from $who"
            printf '| %s | %s | %s | **%s** |\n' "$who" "$tokens" "$ir" "$((ir / tokens))"
        done
        echo
    } >>"$OUT"
fi

# ---------------------------------------------------------------- (f) the fake upstream alone

if has upstream; then
    log "(f) fake upstream alone: $CONCURRENCY streams x $UPSTREAM_ROUNDS"
    start_fake_upstream "${PIN_SERVER[@]}"
    for ((rep = 1; rep <= REPEATS; rep++)); do
        out=$WORK/upstream.$rep.json
        wait_quiet 90
        chatload_run "$out" --port "$UP_PORT" --proto openai --path /v1/chat/completions \
            --body "{\"model\":\"fake:tokens=$CONC_TOKENS;delay_ms=$CONC_DELAY_MS\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}" \
            --streams "$CONCURRENCY" --rounds "$UPSTREAM_ROUNDS" --timeout 300 --watch "upstream=$UP_PID"
        read -r "RUN[done]" "RUN[expected]" "RUN[connect]" "RUN[spread]" "RUN[run]" "RUN[tokmin]" "RUN[tokmax]" \
            "RUN[min]" "RUN[p50]" "RUN[p99]" "RUN[max]" "RUN[cpu]" "RUN[usr]" "RUN[sys]" "RUN[hwm]" "RUN[ccpu]" \
            "RUN[ttft50]" "RUN[ttft99]" <<<"$(jfields "$out" "done" expected connect_ms write_spread_ms run_ms \
            tokens_min tokens_max turn_ms_min turn_ms_p50 turn_ms_p99 turn_ms_max watch.upstream.cpu_s \
            watch.upstream.cpu_user_s watch.upstream.cpu_sys_s watch.upstream.hwm_kib client_cpu_s \
            ttft_ms_p50 ttft_ms_p99)"
        RUN[add50]=$(awk -v a="${RUN[ttft50]}" -v d="$CONC_DELAY_MS" 'BEGIN { printf "%.1f", a - d }')
        RUN[add99]=$(awk -v a="${RUN[ttft99]}" -v d="$CONC_DELAY_MS" 'BEGIN { printf "%.1f", a - d }')
        RUN[pct]=$(awk -v c="${RUN[cpu]}" -v w="${RUN[run]}" 'BEGIN { printf "%.0f", 100 * c * 1000 / w }')
        RUN[systok]=$(awk -v s="${RUN[sys]}" -v n="${RUN[expected]}" -v t="$CONC_TOKENS" 'BEGIN { printf "%.1f", s * 1e6 / (n * t) }')
        log "  upstream alone: done ${RUN[done]}/${RUN[expected]} tokens ${RUN[tokmin]}-${RUN[tokmax]}; connects ${RUN[connect]} ms, requests over ${RUN[spread]} ms, run ${RUN[run]} ms; cpu ${RUN[cpu]} s (user ${RUN[usr]} sys ${RUN[sys]}; ${RUN[pct]}% of a core), peak RSS ${RUN[hwm]} KiB; per stream min ${RUN[min]} p50 ${RUN[p50]} p99 ${RUN[p99]} max ${RUN[max]} ms; added TTFT p50 ${RUN[add50]} p99 ${RUN[add99]} ms"
        record up "done" expected connect spread run tokmin tokmax min p50 p99 max cpu usr sys pct systok hwm ccpu add50 add99
    done
    stop_fake_upstream
    {
        echo "### (f) The fake upstream alone: $CONCURRENCY streams x $UPSTREAM_ROUNDS of $CONC_TOKENS tokens at $CONC_DELAY_MS ms"
        echo
        echo "\`fake-upstream\` (one mio loop thread) on core $SERVER_CORE, chatload $PLACE_CLIENT; every connection opened, then every request written at once. Medians of $REPEATS."
        echo
        echo "| streams done | connects ms | requests written over ms | run ms | per stream min / p50 / p99 / max ms (ideal 1000) | added TTFT p50 / p99 ms | upstream CPU s (user / sys) | % of one core | sys µs per token | peak RSS KiB | tokens a stream |"
        echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        printf '| %s / %s | %s | %s | %s | %s / %s / %s / %s | %s / %s | %s (%s / %s) | %s | %s | %s | %s–%s |\n' \
            "$(med up,done)" "$(med up,expected)" "$(med up,connect)" "$(med up,spread)" "$(med up,run)" \
            "$(med up,min)" "$(med up,p50)" "$(med up,p99)" "$(med up,max)" "$(med up,add50)" "$(med up,add99)" "$(med up,cpu)" \
            "$(med up,usr)" "$(med up,sys)" "$(med up,pct)" "$(med up,systok)" "$(med up,hwm)" \
            "$(med up,tokmin)" "$(med up,tokmax)"
        echo
        check "per stream p99 (ms; ideal $((CONC_TOKENS * CONC_DELAY_MS)): the one loop thread kept the pace within 10%)" "$(med up,p99)" "<=" $((CONC_TOKENS * CONC_DELAY_MS * 11 / 10))
        echo
    } >>"$OUT"
fi

# ---------------------------------------------------------------- (g) tools

# tool_agent URL: on the running server, a tool `ping` (GET URL) and an echo agent `tooled`
# offering it, in project PROJ; sets TOOLED (its id) and PLAIN (the tool-less entry agent's).
tool_agent() {
    local base="http://127.0.0.1:$PORT" h=(-H "Authorization: Bearer $KEY" -H 'Content-Type: application/json')
    curl -sS --fail-with-body -o /dev/null "${h[@]}" \
        -d "{\"name\":\"ping\",\"toolType\":\"http\",\"method\":\"GET\",\"url\":\"$1\"}" \
        "$base/api/projects/$PROJ/tools"
    TOOLED=$(curl -sS --fail-with-body "${h[@]}" \
        -d '{"name":"tooled","model":{"provider":"echo"},"tools":["ping"]}' \
        "$base/api/projects/$PROJ/agents" | python3 -c 'import json, sys; print(json.load(sys.stdin)["agent"]["id"])')
    PLAIN=$(curl -sS --fail-with-body "${h[@]}" "$base/api/projects/$PROJ/agents/assistant" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["agent"]["id"])')
}

NGX_TOOL_PID="" NGX_TOOL_PORT=""
start_nginx_tool() { # nginx, one worker, on the client core: GET /tool answers {"ok":true} at once
    local dir
    dir=$(mktemp -d "$WORK/nginx-tool.XXXX")
    NGX_TOOL_PORT=$(free_port)
    nginx_conf "$dir" "$NGX_TOOL_PORT" 1 1024 "" "" \
        "location = /tool { default_type application/json; return 200 '{\"ok\":true}'; }"
    launch_nginx "$dir" "$NGX_TOOL_PORT" "${PIN_CLIENT[@]}"
    NGX_TOOL_PID=$LAUNCHED
    log "nginx (tool) pid $NGX_TOOL_PID port $NGX_TOOL_PORT"
}

SLOW_PID="" SLOW_PORT=""
start_slow_tool() { # tool_server.py answering after TOOL_DELAY_MS, on the client core
    local dir i line=""
    dir=$(mktemp -d "$WORK/slow-tool.XXXX")
    "${PIN_CLIENT[@]}" python3 "$HERE/tool_server.py" --delay-ms "$TOOL_DELAY_MS" >"$dir/out" 2>&1 &
    SLOW_PID=$!
    PIDS+=("$SLOW_PID")
    for ((i = 0; i < 100; i++)); do
        line=$(head -1 "$dir/out" 2>/dev/null || true)
        [[ $line == "listening on "* ]] && break
        kill -0 "$SLOW_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ $line == "listening on "* ]] || { cat "$dir/out" >&2; die "tool_server.py did not start"; }
    SLOW_PORT=${line##*:}
    log "tool_server.py pid $SLOW_PID port $SLOW_PORT (answers after $TOOL_DELAY_MS ms)"
}

# Two servers for the latency runs, both idle but the one measured: `--fsync always` (the
# default: the figures) and `--fsync never` (what is left without the disk's flush).
declare -A TSRV=()
save_server() { # save_server NAME: PORT PID KEY PROJ TOOLED PLAIN kept under NAME
    local v
    for v in PORT PID KEY PROJ TOOLED PLAIN; do TSRV[$1,$v]=${!v}; done
}
use_server() { # use_server NAME: sets PORT PID KEY PROJ TOOLED PLAIN back
    local v
    for v in PORT PID KEY PROJ TOOLED PLAIN; do printf -v "$v" '%s' "${TSRV[$1,$v]}"; done
}

# tool_lat KIND OUT: one sequential client for DURATION s (keep-alive); KIND tool (a turn
# calling `ping` on nginx) or plain (a turn without tools) on the `--fsync always` server,
# tooln or plainn the same on the `--fsync never` one, or nginx (GET /tool on nginx alone).
# Sets RUN[rps p50 p99 n cpu_turn].
tool_lat() {
    local kind=$1 out=$2 args
    case $kind in
        *n) use_server never ;;
        *) use_server always ;;
    esac
    case $kind in
        tool | tooln) args=(--port "$PORT" --key "$KEY" --path /api/v1/chat/agent --watch "halyard=$PID"
            --body "{\"projectId\":\"$PROJ\",\"agentId\":\"$TOOLED\",\"message\":\"call ping {}\"}"
            --expect 'Echo: {\"ok\":true}') ;;
        plain | plainn) args=(--port "$PORT" --key "$KEY" --path /api/v1/chat/agent --watch "halyard=$PID"
            --body "{\"projectId\":\"$PROJ\",\"agentId\":\"$PLAIN\",\"message\":\"hello\"}"
            --expect 'Echo: hello') ;;
        nginx) args=(--port "$NGX_TOOL_PORT" --method GET --path /tool --expect '{"ok":true}') ;;
    esac
    chatload_run "$out" --proto json --streams 1 --duration "$DURATION" \
        --timeout $((DURATION + 60)) "${args[@]}"
    read -r "RUN[n]" "RUN[rps]" "RUN[p50]" "RUN[p99]" "RUN[hcpu]" <<<"$(jfields "$out" "done" \
        turns_per_s turn_ms_p50 turn_ms_p99 watch.halyard.cpu_s)"
    RUN[cpu_turn]=$(awk -v c="${RUN[hcpu]}" -v n="${RUN[n]}" 'BEGIN { if (c == "-") print "-"; else printf "%.0f", c * 1e6 / n }')
    log "  $kind: ${RUN[n]} requests, ${RUN[rps]}/s, p50 ${RUN[p50]} ms p99 ${RUN[p99]} ms, Halyard CPU ${RUN[cpu_turn]} us a turn"
}

if has tools; then
    log "(g) tools: latency (1 sequential client, ${DURATION}s windows x $REPEATS), then $TOOL_CONCURRENCY turns x $TOOL_CALLS calls at $TOOL_DELAY_MS ms"
    start_nginx_tool
    start_halyard --tool-allow-cidr 127.0.0.0/8
    tool_agent "http://127.0.0.1:$NGX_TOOL_PORT/tool"
    save_server always
    start_halyard --tool-allow-cidr 127.0.0.0/8 --fsync never
    tool_agent "http://127.0.0.1:$NGX_TOOL_PORT/tool"
    save_server never
    last() { awk '{ print $NF }' <<<"${RESULT[tl_$1,$2]}"; }
    for kind in tool plain nginx tooln plainn; do # warm up (pools, allocator, the tool connection)
        DURATION=2 tool_lat "$kind" "$WORK/tool.warm.json"
    done
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for kind in tool plain nginx tooln plainn; do
            wait_quiet 90
            tool_lat "$kind" "$WORK/tool.$kind.json"
            record "tl_$kind" n rps p50 p99 cpu_turn busy
        done
        for q in p50 p99; do
            RUN[add_$q]=$(awk -v a="$(last tool $q)" -v b="$(last plain $q)" -v c="$(last nginx $q)" \
                'BEGIN { printf "%.3f", a - b - c }')
            RUN[addn_$q]=$(awk -v a="$(last tooln $q)" -v b="$(last plainn $q)" -v c="$(last nginx $q)" \
                'BEGIN { printf "%.3f", a - b - c }')
        done
        RUN[add_cpu]=$(($(last tool cpu_turn) - $(last plain cpu_turn)))
        RUN[addn_cpu]=$(($(last tooln cpu_turn) - $(last plainn cpu_turn)))
        record tl add_p50 add_p99 add_cpu addn_p50 addn_p99 addn_cpu
        log "  rep $rep: added per tool call p50 ${RUN[add_p50]} ms, p99 ${RUN[add_p99]} ms, Halyard CPU +${RUN[add_cpu]} us; --fsync never: p50 ${RUN[addn_p50]} ms, p99 ${RUN[addn_p99]} ms, CPU +${RUN[addn_cpu]} us"
    done
    use_server always
    stop_halyard
    use_server never
    stop_halyard
    stop_pid "$NGX_TOOL_PID"

    msg=$(python3 -c 'import sys; print("\\n".join(["call ping {}"] * int(sys.argv[1])))' "$TOOL_CALLS")
    want="Echo:$(printf ' {\\"ok\\":true}%.0s' $(seq "$TOOL_CALLS"))"
    start_slow_tool
    for ((rep = 1; rep <= REPEATS; rep++)); do
        start_halyard --tool-allow-cidr 127.0.0.0/8 \
            --max-running-turns $((TOOL_CONCURRENCY > 1000 ? TOOL_CONCURRENCY : 1000))
        tool_agent "http://127.0.0.1:$SLOW_PORT/tool"
        RUN[thr_idle]=$(find "/proc/$PID/task" -mindepth 1 -maxdepth 1 | wc -l)
        common=(--proto json --port "$PORT" --key "$KEY" --path /api/v1/chat/agent --expect "$want"
            --body "{\"projectId\":\"$PROJ\",\"agentId\":\"$TOOLED\",\"message\":\"$msg\"}")
        wait_quiet 90
        chatload_run "$WORK/tc.alone.json" "${common[@]}" --streams 1 --timeout 30
        curl -sS -o /dev/null "http://127.0.0.1:$SLOW_PORT/stats" # reset its counters
        out=$WORK/tc.$rep.json
        wait_quiet 90
        chatload_run "$out" "${common[@]}" --streams "$TOOL_CONCURRENCY" --timeout 120 --watch "halyard=$PID" \
            --watch "toolserver=$SLOW_PID"
        read -r "RUN[calls]" "RUN[inflight]" <<<"$(curl -sS "http://127.0.0.1:$SLOW_PORT/stats" |
            python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["requests"], d["peak_inflight"])')"
        RUN[thr_after]=$(find "/proc/$PID/task" -mindepth 1 -maxdepth 1 | wc -l)
        read -r "RUN[alone]" <<<"$(jfields "$WORK/tc.alone.json" wall_ms)"
        read -r "RUN[done]" "RUN[expected]" "RUN[errors]" "RUN[wall]" "RUN[turn50]" "RUN[turn99]" \
            "RUN[spread]" "RUN[thr0]" "RUN[thrp]" "RUN[rss0]" "RUN[rssp]" "RUN[hcpu]" "RUN[tcpu]" <<<"$(jfields "$out" \
            "done" expected errors wall_ms turn_ms_p50 turn_ms_p99 write_spread_ms \
            watch.halyard.threads_start watch.halyard.threads_peak watch.halyard.rss_start_kib \
            watch.halyard.rss_peak_kib watch.halyard.cpu_s watch.toolserver.cpu_s)"
        RUN[over]=$(awk -v a="${RUN[wall]}" -v b="${RUN[alone]}" 'BEGIN { printf "%.0f", a - b }')
        log "  tools x$TOOL_CONCURRENCY rep $rep: done ${RUN[done]}/${RUN[expected]} errors ${RUN[errors]}; wall ${RUN[wall]} ms (alone ${RUN[alone]}: +${RUN[over]}); turn p50 ${RUN[turn50]} p99 ${RUN[turn99]} ms; tool requests ${RUN[calls]}, peak in flight ${RUN[inflight]}; threads idle ${RUN[thr_idle]} -> start ${RUN[thr0]} -> peak ${RUN[thrp]} -> after ${RUN[thr_after]}; RSS ${RUN[rss0]} -> ${RUN[rssp]} KiB; Halyard CPU ${RUN[hcpu]} s, tool server ${RUN[tcpu]} s, machine busy ${RUN[busy]} s; requests written over ${RUN[spread]} ms"
        record tc alone "done" expected errors wall over turn50 turn99 calls inflight thr_idle thr0 thrp thr_after rss0 rssp hcpu tcpu spread busy
        stop_halyard
    done
    stop_pid "$SLOW_PID"
    {
        echo "### (g) Tool calls: added latency per call, and $TOOL_CONCURRENCY concurrent turns x $TOOL_CALLS calls"
        echo
        echo "Halyard --threads 1 \`--tool-allow-cidr 127.0.0.0/8\` on core $SERVER_CORE; chatload (\`--proto json\`) and the tool servers $PLACE_CLIENT. Echo provider in its tool mode. Latency: one sequential keep-alive client, ${DURATION}s per window, the five alternating, $REPEATS times; (1) \`POST /api/v1/chat/agent\` \`call ping {}\` on an agent whose tool \`ping\` GETs nginx (\`return 200 '{\"ok\":true}'\`; every answer checked to be \`Echo: {\"ok\":true}\`), (2) \`hello\` on the tool-less entry agent, (3) \`GET /tool\` on nginx alone; (1n) and (2n) the same on a second server with \`--fsync never\`. Added per call = (1) − (2) − (3), per repeat, then the median. Halyard CPU per turn = its utime+stime (all its threads, the log writer's too) over the window / turns."
        echo
        echo "| request | requests per window | req/s | p50 ms | p99 ms | Halyard CPU µs a turn |"
        echo "|---|--:|--:|--:|--:|--:|"
        for k in tool plain nginx tooln plainn; do
            case $k in
                tool) label='(1) turn with one tool call' ;;
                plain) label='(2) turn without tools' ;;
                nginx) label='(3) `GET /tool` on nginx alone' ;;
                tooln) label='(1n) turn with one tool call, `--fsync never`' ;;
                plainn) label='(2n) turn without tools, `--fsync never`' ;;
            esac
            printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$(med "tl_$k,n")" "$(med "tl_$k,rps")" \
                "$(med "tl_$k,p50")" "$(med "tl_$k,p99")" "$(med "tl_$k,cpu_turn")"
        done
        echo
        echo "- added per tool call, per repeat: p50 ${RESULT[tl,add_p50]% } ms; p99 ${RESULT[tl,add_p99]% } ms; Halyard CPU ${RESULT[tl,add_cpu]% } µs"
        echo "- added per tool call, medians: p50 **$(med tl,add_p50) ms**, p99 **$(med tl,add_p99) ms**, Halyard CPU **$(med tl,add_cpu) µs**"
        echo "- the same with \`--fsync never\` ((1n) − (2n) − (3)): p50 $(med tl,addn_p50) ms, p99 $(med tl,addn_p99) ms, Halyard CPU $(med tl,addn_cpu) µs (per repeat: p99 ${RESULT[tl,addn_p99]% } ms)"
        check "added latency per tool call p99 (ms)" "$(med tl,add_p99)" "<=" 1
        echo
        echo "Concurrency: tool_server.py (asyncio, one thread) answers \`{\"ok\":true}\` after $TOOL_DELAY_MS ms; each turn's message is $TOOL_CALLS lines \`call ping {}\` (parallel calls in one round; each answer checked to hold the $TOOL_CALLS results). Per repeat a fresh server (\`--max-running-turns $((TOOL_CONCURRENCY > 1000 ? TOOL_CONCURRENCY : 1000))\`): one such turn alone, then $TOOL_CONCURRENCY at once (every connection opened first). Threads: idle = \`/proc/PID/task\` before any turn; peak = the largest \`Threads:\` sampled every 10 ms during the run. Medians of $REPEATS."
        echo
        echo "| turns done / N | one turn alone ms | wall ms | wall − alone ms | turn p50 / p99 ms | tool requests | peak in flight at the tool server | threads idle → peak → after | RSS before → peak KiB | Halyard CPU s | tool server CPU s |"
        echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        printf '| %s / %s | %s | %s | %s | %s / %s | %s | %s | %s → %s → %s | %s → %s | %s | %s |\n' \
            "$(med tc,done)" "$(med tc,expected)" "$(med tc,alone)" "$(med tc,wall)" "$(med tc,over)" \
            "$(med tc,turn50)" "$(med tc,turn99)" "$(med tc,calls)" "$(med tc,inflight)" \
            "$(med tc,thr_idle)" "$(med tc,thrp)" "$(med tc,thr_after)" "$(med tc,rss0)" "$(med tc,rssp)" "$(med tc,hcpu)" "$(med tc,tcpu)"
        echo
        echo "- per repeat: done ${RESULT[tc,done]% }; wall ${RESULT[tc,wall]% } ms; threads idle ${RESULT[tc,thr_idle]% }, peak ${RESULT[tc,thrp]% }"
        check "turns not completed (of $TOOL_CONCURRENCY, worst repeat)" "$(echo "${RESULT[tc,done]}" |
            awk -v n="$TOOL_CONCURRENCY" '{ m = n; for (i = 1; i <= NF; i++) if ($i < m) m = $i; print n - m }')" "<=" 0
        check "threads at peak − idle (worst repeat)" "$(paste -d' ' <(tr ' ' '\n' <<<"${RESULT[tc,thrp]% }") \
            <(tr ' ' '\n' <<<"${RESULT[tc,thr_idle]% }") | awk '{ d = $1 - $2; if (d > m) m = d } END { print m + 0 }')" "<=" 0
        echo
    } >>"$OUT"
fi

echo
echo "Machine before the runs: \`$UPTIME_BEFORE\` ($(nproc) cores)."
echo
cat "$OUT"
exit 0
