#!/usr/bin/env bash
# Load test: Halyard against axum and nginx on `GET /health/live`, loaded with wrk.
#
# Starts each server on a loopback port and loads it with wrk (64 connections, with and
# without 16-deep pipelining), REPEATS times per mode alternating servers, and prints the
# medians of requests/s, p50, p99, server CPU seconds, requests per server CPU-second and
# peak RSS, with the ratios Halyard/peer. Then measures Halyard's RSS right after start and
# the memory per idle keep-alive connection (10,000 connections, one request each).
#
# Headline mode ("pinned"): every server on core 0 with one thread/worker, wrk on core 1.
# `--unpinned`: no affinity, wrk with 2 threads, peers with their default 2 workers
# (Halyard keeps `--threads 1` unless `--halyard-threads N`).
#
# Usage: benches/load/run.sh [--quick] [--unpinned] [--duration S] [--repeats N]
#                            [--servers "halyard axum nginx"] [--halyard-threads N]
#                            [--idle-conns N] [--no-idle] [--no-build] [--profile]
#                            [--halyard-env VAR=VALUE]... [--nice N] [--client wrk|loadgen]
#                            [--max-other-cpu S] [--noise-tries N] [--access-log-ratio]
#   --quick      3 s runs (default 10 s)
#   --access-log-ratio  the cost of the access log: Halyard with `--access-log off`
#                ("halyard") and with `--access-log FILE` ("halyard-log", a file in the work
#                dir) alternately in the same run, instead of the peers; prints the ratio
#                of their median req/s (target: >= 0.90) and no idle-connection test
#   --client loadgen  load with benches/load/loadgen instead of wrk (built here): it costs
#                less client CPU per request, so every server runs at 100 % and requests per
#                server CPU-second compare the servers at saturation rather than at the
#                rate one wrk thread can drive (with pipelining: --depth 16 batches)
#   --nice N     run the servers and wrk at niceness N (e.g. -15 as root: a shared machine's
#                other jobs then take less CPU from the measurement; their CPU is still
#                reported in the "other CPU s" column)
#   --max-other-cpu S, --noise-tries N  a run during which other processes used more than
#                S CPU-seconds (default 5% of the machine over the run) is repeated, up to N
#                tries in all (default 5; 1 keeps every run); the quietest try counts
#   --halyard-env  set an environment variable for Halyard only (e.g.
#                MIMALLOC_ARENA_EAGER_COMMIT=0 to try an allocator setting without a rebuild)
#   --profile    also count each server's syscalls per request, split each server's CPU
#                per unpipelined request into send, receive, epoll_wait, other kernel and
#                user space (`perf record -g`), and print Halyard's top functions under both
#                loads (installs linux-perf if missing)
# Environment: HALYARD_BIN (skip building Halyard), PEER_TARGET_DIR (cargo target dir of
# the axum peer, default benches/peers/axum/target), CARGO_TARGET_DIR (Halyard's).
#
# Installs wrk, nginx and python3 with apt-get when missing (as root). Everything listens on
# 127.0.0.1 only; every process started here is stopped by PID on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
LOG_TAG=load
# shellcheck source=lib.sh
source "$HERE/lib.sh"

DURATION=10
REPEATS=3
CONNECTIONS=64
DEPTH=16
PINNED=1
BUILD=1
IDLE=1
IDLE_CONNS=10000
PROFILE=0
SERVERS="halyard axum nginx"
HALYARD_THREADS=1
HALYARD_ENV=()
NICE=0
MAX_OTHER_CPU=""
NOISE_TRIES=5
SERVER_CORE=0
WRK_CORE=1
CLIENT=wrk

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) DURATION=3 ;;
        --unpinned) PINNED=0 ;;
        --duration) DURATION=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        --halyard-threads) HALYARD_THREADS=$2; shift ;;
        --halyard-env) HALYARD_ENV+=("$2"); shift ;;
        --nice) NICE=$2; shift ;;
        --max-other-cpu) MAX_OTHER_CPU=$2; shift ;;
        --noise-tries) NOISE_TRIES=$2; shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --no-idle) IDLE=0 ;;
        --no-build) BUILD=0 ;;
        --profile) PROFILE=1 ;;
        --client) CLIENT=$2; shift ;;
        --access-log-ratio) SERVERS="halyard halyard-log"; IDLE=0 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done

# ---------------------------------------------------------------- cleanup

start_work load

# ---------------------------------------------------------------- tools

[[ $CLIENT == wrk || $CLIENT == loadgen ]] || die "--client is wrk or loadgen"
[[ $CLIENT == wrk ]] && need wrk wrk
need python3 python3
need taskset util-linux
need getconf libc-bin
if [[ " $SERVERS " == *" nginx "* ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    apt_install nginx-light || apt_install nginx || { log "nginx unavailable: skipped"; SERVERS=${SERVERS/nginx/}; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ((PROFILE)) && ! command -v perf >/dev/null; then
    apt_install linux-perf || { log "perf unavailable: no profile"; PROFILE=0; }
fi

CLK_TCK=$(getconf CLK_TCK)
: "${MAX_OTHER_CPU:=$(awk -v n="$(nproc)" -v d="$DURATION" 'BEGIN { print 0.05 * n * d }')}"
if ((PINNED)) && (($(nproc) < 2)); then
    log "fewer than 2 cores: running unpinned"
    PINNED=0
fi

# 10,000 idle connections need as many descriptors in the client and the servers.
want_fds=$((IDLE_CONNS + 1024))
if (($(ulimit -Hn) < want_fds)); then ulimit -Hn "$want_fds" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if ((IDLE && $(ulimit -n) < want_fds)); then
    log "open-file limit $(ulimit -n) < $want_fds: idle connections reduced"
    IDLE_CONNS=$(($(ulimit -n) - 1024))
fi

# ---------------------------------------------------------------- build

resolve_halyard_bin
[[ $CLIENT == loadgen ]] && build_loadgen
PEER_TARGET_DIR=${PEER_TARGET_DIR:-$ROOT/benches/peers/axum/target}
AXUM_BIN=$PEER_TARGET_DIR/release/halyard-peer-axum
if [[ " $SERVERS " == *" axum "* ]] && ((BUILD)); then
    log "building the axum peer (release)"
    (cd "$ROOT/benches/peers/axum" && CARGO_TARGET_DIR=$PEER_TARGET_DIR cargo build --release >&2)
fi
if [[ " $SERVERS " == *" axum "* && ! -x $AXUM_BIN ]]; then
    die "no axum peer at $AXUM_BIN: build it (drop --no-build) or set PEER_TARGET_DIR"
fi

# ---------------------------------------------------------------- servers

NGINX_CONNECTIONS=1024 # per worker; raised for the idle-connection test

PIN_SERVER=()
PIN_WRK=()
WRK_THREADS=2
PEER_THREADS=2
set_pinning() {
    PIN_SERVER=(nice -n "$NICE")
    PIN_WRK=(nice -n "$NICE")
    if ((PINNED)); then
        PIN_SERVER+=(taskset -c "$SERVER_CORE")
        PIN_WRK+=(taskset -c "$WRK_CORE")
        WRK_THREADS=1
        PEER_THREADS=1
    else
        WRK_THREADS=2
        PEER_THREADS=2
    fi
}
set_pinning

declare -A PORT PID DIR
# start_server NAME [EXTRA HALYARD FLAGS...]: sets PORT[NAME], PID[NAME] and DIR[NAME].
start_server() {
    local name=$1 port dir
    shift
    port=$(free_port)
    dir=$(mktemp -d "$WORK/$name.XXXX")
    case "$name" in
        halyard)
            env "${HALYARD_ENV[@]+"${HALYARD_ENV[@]}"}" \
                "${PIN_SERVER[@]}" "$HALYARD_BIN" serve --listen "127.0.0.1:$port" \
                --threads "$HALYARD_THREADS" --data-dir "$dir/data" "$@" \
                >"$dir/log" 2>&1 &
            ;;
        halyard-log)
            env "${HALYARD_ENV[@]+"${HALYARD_ENV[@]}"}" \
                "${PIN_SERVER[@]}" "$HALYARD_BIN" serve --listen "127.0.0.1:$port" \
                --threads "$HALYARD_THREADS" --data-dir "$dir/data" \
                --access-log "$dir/access.log" "$@" >"$dir/log" 2>&1 &
            ;;
        axum)
            "${PIN_SERVER[@]}" "$AXUM_BIN" "$port" --threads "$PEER_THREADS" >"$dir/log" 2>&1 &
            ;;
        nginx)
            nginx_conf "$dir" "$port" "$PEER_THREADS" "$NGINX_CONNECTIONS"
            "${PIN_SERVER[@]}" "$NGINX" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/log" 2>&1 &
            ;;
        *) die "unknown server $name" ;;
    esac
    local pid=$!
    PIDS+=("$pid")
    PORT[$name]=$port
    PID[$name]=$pid
    DIR[$name]=$dir
    wait_ready "$port" "$pid" || { cat "$dir/log" "$dir/error.log" 2>/dev/null >&2; die "$name did not start"; }
}

stop_server() { stop_pid "${PID[$1]}"; }

# ---------------------------------------------------------------- measuring

declare -A RESULT # RESULT[mode,server,metric] = one value per repeat, space-separated

# wrk_run MODE SERVER SECONDS OUT: one run of the load client (wrk or loadgen) against
# SERVER, its report in OUT. The client's own CPU seconds (user + system) go to OUT.time.
wrk_run() {
    local mode=$1 name=$2 secs=$3 out=$4 url rc=0 TIMEFORMAT='%U %S' cmd
    url="http://127.0.0.1:${PORT[$name]}/health/live"
    if [[ $CLIENT == loadgen ]]; then
        local depth=1
        [[ $mode == pipelined ]] && depth=$DEPTH
        cmd=("$LOADGEN" "$url" --threads "$WRK_THREADS" --connections "$CONNECTIONS" \
            --duration "$secs" --depth "$depth")
    else
        local script=()
        [[ $mode == pipelined ]] && script=(-s "$HERE/pipeline.lua")
        cmd=(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency \
            "${script[@]}" "$url" -- "$DEPTH")
    fi
    { time "${PIN_WRK[@]}" "${cmd[@]}" >"$out" 2>&1; } 2>"$out.time" || rc=$?
    ((rc == 0)) || { cat "$out" >&2; die "$CLIENT failed against $name"; }
}

# run_wrk MODE SERVER: one measured run. Sets RUN (metric -> value: rps, p50, p99, cpu,
# percpu, client, other) and prints it.
run_wrk() {
    local mode=$1 name=$2 out=$WORK/wrk.out before after busy_before busy_after
    busy_before=$(machine_ticks)
    before=$(cpu_ticks "${PID[$name]}")
    wrk_run "$mode" "$name" "$DURATION" "$out"
    after=$(cpu_ticks "${PID[$name]}")
    busy_after=$(machine_ticks)
    if grep -qE 'Socket errors|Non-2xx|^Errors:' "$out"; then
        log "WARNING $name $mode: $(grep -E 'Socket errors|Non-2xx|^Errors:' "$out" | tr -s ' ' | tr '\n' ';')"
    fi
    if ! grep -qE '^ +99%|^Latency p50' "$out"; then
        log "WARNING $name $mode: no latency percentiles from $CLIENT: $(tr -s ' ' <"$out" | tr '\n' ';')"
    fi
    read_wrk "$out" $((after - before))
    RUN[client]=$(awk '{ printf "%.2f", $1 + $2 }' "$out.time")
    # CPU used by anything else on the machine meanwhile (other jobs: noise).
    RUN[other]=$(awk -v t=$((busy_after - busy_before)) -v hz="$CLK_TCK" -v s="${RUN[cpu]}" \
        -v w="${RUN[client]}" 'BEGIN { o = t / hz - s - w; printf "%.2f", (o > 0 ? o : 0) }')
    printf '[load]   %-11s %-7s %9.0f req/s  p50 %6d us  p99 %6d us  server cpu %5.2f s  %8d req/cpu-s  client cpu %5.2f s  other cpu %5.2f s\n' \
        "$mode" "$name" "${RUN[rps]}" "${RUN[p50]}" "${RUN[p99]}" "${RUN[cpu]}" "${RUN[percpu]}" \
        "${RUN[client]}" "${RUN[other]}" >&2
}

# measure MODE SERVER: run_wrk until other processes used at most MAX_OTHER_CPU seconds
# during the run, at most NOISE_TRIES times; records the quietest try in RESULT.
measure() {
    local mode=$1 name=$2 try metric
    local -A best=()
    for ((try = 1; try <= NOISE_TRIES; try++)); do
        run_wrk "$mode" "$name"
        [[ $name != halyard-log ]] || access_log_rotate
        if [[ -z ${best[other]:-} ]] || awk -v a="${RUN[other]}" -v b="${best[other]}" 'BEGIN { exit !(a < b) }'; then
            for metric in "${!RUN[@]}"; do best[$metric]=${RUN[$metric]}; done
        fi
        awk -v o="${best[other]}" -v m="$MAX_OTHER_CPU" 'BEGIN { exit !(o <= m) }' && break
        ((try < NOISE_TRIES)) && { log "    noisy (other processes used ${RUN[other]} s): again"; sleep 5; }
    done
    local k="$mode,$name"
    for metric in "${!best[@]}"; do RESULT[$k,$metric]+="${best[$metric]} "; done
    if awk -v o="${best[other]}" -v m="$MAX_OTHER_CPU" 'BEGIN { exit !(o > m) }'; then
        RESULT[$k,noisy]=$((${RESULT[$k,noisy]:-0} + 1))
        log "    kept the quietest of $NOISE_TRIES tries (other processes: ${best[other]} s)"
    fi
}

# med "mode,server,metric": the median of the values recorded for it.
med() {
    local values
    read -r -a values <<<"${RESULT[$1]}"
    median "${values[@]}"
}

# One mode: start every server, warm each up, REPEATS rounds alternating servers, stop.
run_mode() {
    local mode=$1 name rep
    log "mode $mode: ${DURATION}s x $REPEATS per server, $CONNECTIONS connections"
    for name in $SERVERS; do start_server "$name"; done
    for name in $SERVERS; do wrk_run "$mode" "$name" 1 "$WORK/warmup.out"; done
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for name in $SERVERS; do measure "$mode" "$name"; done
    done
    for name in $SERVERS; do
        RESULT[$mode,$name,hwm]=$(status_kib "${PID[$name]}" VmHWM)
        [[ $name != halyard-log ]] || access_log_written "$mode"
        stop_server "$name"
    done
}

# access_log_rotate: counts the lines halyard-log wrote so far (ACCESS_LOG_LINES) and empties
# its file, which a pipelined run grows by up to ~250 MB a second: kept, the runs of one
# mode would fill a shared disk. The server appends (O_APPEND), so it writes on at the new
# end.
ACCESS_LOG_LINES=0
access_log_rotate() {
    local file=${DIR[halyard-log]}/access.log
    ACCESS_LOG_LINES=$((ACCESS_LOG_LINES + $(wc -l <"$file")))
    : >"$file"
}

# access_log_written MODE: the lines halyard-log wrote and dropped in MODE (warm-up
# included; a writer that keeps up by dropping lines does not meet the target); sets
# RESULT[MODE,halyard-log,lines|dropped].
access_log_written() {
    local mode=$1 dropped
    sleep 0.5 # the writer's last batch
    dropped=$(curl -fsS "http://127.0.0.1:${PORT[halyard-log]}/metrics" |
        awk '$1 == "halyard_access_log_dropped_total" { print $2 }')
    access_log_rotate
    RESULT[$mode,halyard-log,lines]=$ACCESS_LOG_LINES
    RESULT[$mode,halyard-log,dropped]=${dropped:-?}
    log "access log ($mode): $ACCESS_LOG_LINES lines written, ${dropped:-?} dropped"
    ACCESS_LOG_LINES=0
}

# Idle keep-alive connections: RSS after start, RSS with IDLE_CONNS idle connections.
declare -A IDLE_RESULT
run_idle() {
    local name=$1 base loaded flags=()
    # The measurement takes seconds; keep Halyard's idle timeout out of the way anyway.
    [[ $name == halyard ]] && flags=(--idle-timeout-ms 600000)
    NGINX_CONNECTIONS=$want_fds
    start_server "$name" "${flags[@]+"${flags[@]}"}"
    NGINX_CONNECTIONS=1024
    sleep 0.5
    base=$(status_kib "${PID[$name]}" VmRSS sum)
    coproc IDLE_CLIENT { exec python3 "$HERE/idle_conns.py" --port "${PORT[$name]}" --count "$IDLE_CONNS"; }
    local client=$IDLE_CLIENT_PID to_client=${IDLE_CLIENT[1]} line=""
    PIDS+=("$client")
    read -r -t 180 line <&"${IDLE_CLIENT[0]}" || true
    [[ $line == ready ]] || { stop_pid "$client"; die "idle client failed against $name"; }
    sleep 0.5
    loaded=$(status_kib "${PID[$name]}" VmRSS sum)
    exec {to_client}>&- # the client closes its connections and exits
    stop_pid "$client" 10
    stop_server "$name"
    IDLE_RESULT[$name,base]=$base
    IDLE_RESULT[$name,loaded]=$loaded
    IDLE_RESULT[$name,per]=$(awk -v a="$base" -v b="$loaded" -v n="$IDLE_CONNS" \
        'BEGIN { printf "%.2f", (b - a) * 1024 / n / 1024 }')
    log "idle $name: RSS after start $base KiB, with $IDLE_CONNS idle connections $loaded KiB" \
        "(${IDLE_RESULT[$name,per]} KiB each)"
}

# Syscalls per request of every server under each load (perf's syscall tracepoints), then
# `perf stat` and `perf record -g` on Halyard: where its CPU time goes.
# The syscalls an HTTP server makes per request, those this kernel can trace (tracepoints
# are slow to detach, so not all of them).
SYSCALL_EVENTS=""
for call in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait \
    epoll_ctl accept4 close futex brk mmap munmap io_uring_enter; do
    for tracing in /sys/kernel/tracing /sys/kernel/debug/tracing; do
        if [[ -d $tracing/events/syscalls/sys_enter_$call ]]; then
            SYSCALL_EVENTS+="${SYSCALL_EVENTS:+,}syscalls:sys_enter_$call"
            break
        fi
    done
done

SPLIT_HZ=4999

# split_row NAME DATA REQUESTS FLOORS: one table row from `perf record -g` samples of a
# server: its CPU per request in µs, split into the kernel's TCP send and receive
# (`tcp_sendmsg` and `tcp_recvmsg`, inclusive: a send on loopback also runs the client's
# receive path), `epoll_wait`, the rest of the kernel (syscall entry and exit, file lookup,
# scheduling) and user space. Kernel functions rather than syscalls: the same TCP code
# serves sendto and writev, and the kernel's syscall frames are not always in the call
# chain. Appends "NAME TOTAL FLOOR" to the file FLOORS, FLOOR being the total without
# epoll_wait and user space.
split_row() {
    local name=$1 data=$2 n=$3 floors=$4 total user
    read -r total user < <(perf report -i "$data" --stdio --no-children --sort dso -g none -q -n 2>/dev/null |
        awk '$1 ~ /%$/ { t += $2; if ($3 !~ /^\[kernel/) u += $2 } END { print t + 0, u + 0 }')
    perf report -i "$data" --stdio --children --sort sym -g none -q 2>/dev/null | awk -v t="$total" \
        -v u="$user" -v n="$n" -v hz="$SPLIT_HZ" -v name="$name" -v floors="$floors" '
        function us(samples) { return samples * 1e6 / hz / n }
        $1 ~ /%$/ && $NF == "tcp_sendmsg" { send = $1 + 0 }
        $1 ~ /%$/ && $NF == "tcp_recvmsg" { recv = $1 + 0 }
        $1 ~ /%$/ && $NF == "do_epoll_wait" { ep = $1 + 0 }
        END {
            send *= t / 100; recv *= t / 100; ep *= t / 100
            printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name, us(t), us(send), \
                us(recv), us(ep), us(t - u - send - recv - ep), us(u)
            printf "%s %.4f %.4f\n", name, us(t), us(t - u - ep) >> floors
        }'
}

# cpu_split: where each server's CPU goes per unpipelined request, under the same load;
# then the best per-CPU ratio to nginx Halyard could reach if the parts it controls
# (how often it waits in epoll_wait, its user-space code) cost nothing.
cpu_split() {
    local name data n floors=$WORK/split.floors
    echo
    echo "CPU per unpipelined request, µs (perf record -g at $SPLIT_HZ Hz; the TCP send" \
        "includes the loopback delivery to the client, run in the sender's context):"
    echo
    echo "| server | total | TCP send | TCP receive | epoll_wait | other kernel | user space |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    : >"$floors"
    for name in $SERVERS; do
        start_server "$name"
        wrk_run unpipelined "$name" 1 "$WORK/warmup.out"
        data=$WORK/split.$name.data
        perf record -F "$SPLIT_HZ" -g -p "$(server_pids "${PID[$name]}" | paste -sd,)" -o "$data" \
            -- sleep "$DURATION" 2>/dev/null &
        local rec_pid=$!
        PIDS+=("$rec_pid")
        wrk_run unpipelined "$name" "$DURATION" "$WORK/wrk.out"
        stop_pid "$rec_pid" 10
        stop_server "$name"
        n=$(awk '/ requests in / { print $1 }' "$WORK/wrk.out")
        split_row "$name" "$data" "$n" "$floors"
    done
    awk '$1 == "halyard" { h = $2; floor = $3 } $1 == "nginx" { ng = $2 } END {
        if (floor > 0 && ng > 0) printf "\nHalyard/nginx per CPU in this profile: %.2f. Even with " \
            "no epoll_wait and no user-space time at all, at most %.2f: nginx'"'"'s total over " \
            "Halyard'"'"'s TCP send, TCP receive and other kernel time.\n", ng / h, ng / floor }' "$floors"
}

run_profile() {
    local mode name out
    echo
    echo "## Profile (${DURATION}s per run; tracepoints and sampling slow the servers a little)"
    echo
    echo "| mode | server | syscalls per request | of which |"
    echo "|---|---|--:|---|"
    [[ -n $SYSCALL_EVENTS ]] || log "no syscall tracepoints readable: no syscall counts"
    for mode in unpipelined pipelined; do
        for name in ${SYSCALL_EVENTS:+$SERVERS}; do
            start_server "$name"
            out=$WORK/syscalls.$mode.$name
            perf stat -x, -e "$SYSCALL_EVENTS" -o "$out" \
                -p "$(server_pids "${PID[$name]}" | paste -sd,)" -- sleep "$DURATION" &
            local stat_pid=$!
            PIDS+=("$stat_pid")
            wrk_run "$mode" "$name" "$DURATION" "$WORK/wrk.out"
            stop_pid "$stat_pid" 10
            stop_server "$name"
            local n
            n=$(awk '/ requests in / { print $1 }' "$WORK/wrk.out")
            awk -F, '$3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 {
                    sub(/syscalls:sys_enter_/, "", $3); print $1, $3 }' "$out" |
                sort -nr | awk -v n="$n" -v mode="$mode" -v name="$name" '
                    { total += $1; if ($1 / n >= 0.001) list = list sprintf("%s%s %.3f", (NR > 1 ? ", " : ""), $2, $1 / n) }
                    END { printf "| %s | %s | %.3f | %s |\n", mode, name, total / n, list }'
        done
    done
    cpu_split
    for mode in unpipelined pipelined; do
        start_server halyard
        out=$WORK/perf.$mode.data
        log "profile $mode: perf record -g on halyard for ${DURATION}s"
        perf stat -e task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions \
            -p "${PID[halyard]}" -o "$WORK/perf.$mode.stat" -- sleep "$DURATION" &
        local stat_pid=$!
        PIDS+=("$stat_pid")
        perf record -F 1999 -g -p "${PID[halyard]}" -o "$out" -- sleep "$DURATION" 2>/dev/null &
        local rec_pid=$!
        PIDS+=("$rec_pid")
        wrk_run "$mode" halyard "$DURATION" "$WORK/wrk.out"
        stop_pid "$rec_pid" 10 # both end by themselves after DURATION
        stop_pid "$stat_pid" 10
        stop_server halyard
        local report=(perf report -i "$out" --stdio -g none)
        echo
        echo "### perf, Halyard, $mode ($(grep -E 'Requests/sec' "$WORK/wrk.out" | tr -s ' '))"
        echo '```'
        grep -E 'task-clock|context-switches|cycles|instructions|elapsed' "$WORK/perf.$mode.stat" || true
        echo "-- samples by binary (self)"
        "${report[@]}" --no-children --sort dso 2>/dev/null | grep -vE '^\s*$|^#' | head -6
        echo "-- top functions (self)"
        "${report[@]}" --no-children --fields overhead,sym --percent-limit 0.7 2>/dev/null |
            grep -vE '^\s*$|^#' | head -30
        echo "-- syscalls and user-space entry points (inclusive)"
        "${report[@]}" --children --sort symbol 2>/dev/null |
            grep -E '__x64_sys_|\[\.\] (halyard_engine|halyard_api|halyard)::' |
            sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | head -15
        echo '```'
    done
}

# ---------------------------------------------------------------- report

has_server() { [[ " $SERVERS " == *" $1 "* ]]; }

report() {
    local mode name
    local placement="pinned: servers on core $SERVER_CORE (1 thread/worker each), $CLIENT with 1 thread on core $WRK_CORE"
    ((PINNED)) || placement="unpinned: Halyard --threads $HALYARD_THREADS, axum 2 workers, nginx 2 workers, $CLIENT with 2 threads"
    echo
    echo "## Load: medians of $REPEATS x ${DURATION}s, $CONNECTIONS connections, $placement"
    echo
    echo "| mode | server | req/s | p50 µs | p99 µs | server CPU s (% of run) | req per CPU-s | peak RSS KiB | $CLIENT CPU s | other CPU s |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    for mode in unpipelined pipelined; do
        for name in $SERVERS; do
            local cpu
            cpu=$(med "$mode,$name,cpu")
            printf '| %s | %s | %.0f | %s | %s | %s (%.0f%%) | %.0f | %s | %s | %s |\n' "$mode" "$name" \
                "$(med "$mode,$name,rps")" "$(med "$mode,$name,p50")" "$(med "$mode,$name,p99")" \
                "$cpu" "$(awk -v c="$cpu" -v d="$DURATION" 'BEGIN { print 100 * c / d }')" \
                "$(med "$mode,$name,percpu")" "${RESULT[$mode,$name,hwm]}" \
                "$(med "$mode,$name,client")" "$(med "$mode,$name,other")"
        done
    done
    local noisy_runs=0
    for mode in unpipelined pipelined; do
        for name in $SERVERS; do noisy_runs=$((noisy_runs + ${RESULT[$mode,$name,noisy]:-0})); done
    done
    echo
    echo "A run during which other processes used over $MAX_OTHER_CPU CPU-s was repeated (up to" \
        "$NOISE_TRIES tries, the quietest kept); $noisy_runs of the medians' runs are still noisy" \
        "(see the last column)."
    if has_server halyard; then
        echo
        echo "| mode | ratio | req/s | req per CPU-s |"
        echo "|---|---|--:|--:|"
        for mode in unpipelined pipelined; do
            for name in $SERVERS; do
                [[ $name == halyard ]] && continue
                printf '| %s | Halyard/%s | %s | %s |\n' "$mode" "$name" \
                    "$(ratio "$(med "$mode,halyard,rps")" "$(med "$mode,$name,rps")")" \
                    "$(ratio "$(med "$mode,halyard,percpu")" "$(med "$mode,$name,percpu")")"
            done
        done
        echo
        echo "Targets (issue 2):"
        if has_server nginx; then
            check "req per CPU-s vs nginx, pipelined" \
                "$(ratio "$(med pipelined,halyard,percpu)" "$(med pipelined,nginx,percpu)")" ">=" 1.5
            check "req per CPU-s vs nginx, unpipelined" \
                "$(ratio "$(med unpipelined,halyard,percpu)" "$(med unpipelined,nginx,percpu)")" ">=" 1.3
            check "req/s vs nginx, pipelined" \
                "$(ratio "$(med pipelined,halyard,rps)" "$(med pipelined,nginx,rps)")" ">=" 1.0
        fi
        if has_server axum; then
            check "p99 unpipelined vs axum (µs)" \
                "$(med unpipelined,halyard,p99)" "<=" "$(med unpipelined,axum,p99)"
        fi
    fi
    if has_server halyard-log; then
        echo
        echo "| mode | access log on/off, req/s | req per CPU-s | lines written | lines dropped |"
        echo "|---|--:|--:|--:|--:|"
        for mode in unpipelined pipelined; do
            printf '| %s | %s | %s | %s | %s |\n' "$mode" \
                "$(ratio "$(med "$mode,halyard-log,rps")" "$(med "$mode,halyard,rps")")" \
                "$(ratio "$(med "$mode,halyard-log,percpu")" "$(med "$mode,halyard,percpu")")" \
                "${RESULT[$mode,halyard-log,lines]:-?}" "${RESULT[$mode,halyard-log,dropped]:-?}"
        done
        echo
        echo "Target (issue 18):"
        for mode in unpipelined pipelined; do
            check "req/s with the access log on vs off, $mode" \
                "$(ratio "$(med "$mode,halyard-log,rps")" "$(med "$mode,halyard,rps")")" ">=" 0.90
        done
    fi
    if ((IDLE)); then
        echo
        echo "## Memory: RSS after start, and per idle keep-alive connection ($IDLE_CONNS connections, one request each)"
        echo
        echo "| server | RSS after start KiB | RSS with $IDLE_CONNS idle KiB | KiB per idle connection |"
        echo "|---|--:|--:|--:|"
        for name in $SERVERS; do
            printf '| %s | %s | %s | %s |\n' "$name" "${IDLE_RESULT[$name,base]}" \
                "${IDLE_RESULT[$name,loaded]}" "${IDLE_RESULT[$name,per]}"
        done
        if has_server halyard; then
            echo
            check "Halyard RSS after start (KiB)" "${IDLE_RESULT[halyard,base]}" "<=" 8192
            check "Halyard KiB per idle connection" "${IDLE_RESULT[halyard,per]}" "<=" 4
        fi
    fi
}

# ---------------------------------------------------------------- main

log "servers: $SERVERS; $( ((PINNED)) && echo pinned || echo unpinned ); work dir $WORK"
log "halyard: $HALYARD_BIN${HALYARD_ENV[*]+ with ${HALYARD_ENV[*]}}; niceness $NICE"
run_mode unpipelined
run_mode pipelined
if ((IDLE)); then
    for name in $SERVERS; do run_idle "$name"; done
fi
report
((PROFILE)) && run_profile
exit 0
