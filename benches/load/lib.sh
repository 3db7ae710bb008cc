# shellcheck shell=bash
# Helpers shared by the load scripts (run.sh, api.sh, chat.sh): logging, stopping the
# processes a script started (by PID), installing tools, ports and readiness, CPU and memory
# of a server from /proc, wrk latency parsing, medians, ratios and target checks.
#
# The sourcing script defines WORK (its scratch directory) and PIDS (an array of the PIDs of
# every long-running process it starts), sets LOG_TAG (the log prefix), and installs
# `trap cleanup EXIT` (which removes WORK unless KEEP_WORK is set). cpu_ticks/status_kib/server_pids read /proc only.

log() { printf '[%s] %s\n' "${LOG_TAG:-load}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# stop_pid PID [GRACE_S]: lets PID exit by itself for GRACE_S seconds (default 0), then
# sends SIGTERM, then SIGKILL after 5 s; reaps it and forgets it.
stop_pid() {
    local pid=$1 grace=${2:-0} i
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    wait "$pid" 2>/dev/null || true
    local kept=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
    PIDS=("${kept[@]+"${kept[@]}"}")
}

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    if [[ -n ${KEEP_WORK:-} ]]; then
        log "work files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}

apt_install() {
    [[ $(id -u) == 0 ]] || die "missing $*; install it (apt-get install $*) or run as root"
    command -v apt-get >/dev/null || die "missing $* and no apt-get"
    if [[ ! -f $WORK/.apt-updated ]]; then
        apt-get update -qq >&2
        touch "$WORK/.apt-updated"
    fi
    # Keep the package's own service (nginx on port 80) from starting.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
    ((added_policy)) && rm -f "$policy"
    return "$rc"
}

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null || apt_install "$2"
    command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Succeeds once GET /health/live on 127.0.0.1:PORT answers 200 (bash /dev/tcp, no curl).
wait_ready() {
    local port=$1 pid=$2 i status
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if { exec 9<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            printf 'GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&9
            status=$(timeout 2 head -c 12 <&9 || true)
            exec 9<&- 9>&-
            [[ $status == "HTTP/1.1 200" ]] && return 0
        fi
        sleep 0.1
    done
    return 1
}

# The server's processes: the PID itself, plus its children (nginx workers).
server_pids() {
    local root=$1 f line fields
    echo "$root"
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        read -r -a fields <<<"${line##*) }"
        if [[ ${fields[1]} == "$root" ]]; then f=${f#/proc/}; echo "${f%/stat}"; fi
    done
}

# utime + stime (fields 14 and 15 of /proc/PID/stat), in ticks, summed over the server.
cpu_ticks() {
    local total=0 pid line fields
    for pid in $(server_pids "$1"); do
        { read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
        read -r -a fields <<<"${line##*) }" # fields[0] is field 3 (state)
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# status_kib PID FIELD [max|sum]: a /proc/PID/status field (VmRSS, VmHWM) in KiB. For a
# server with worker children (nginx) it is taken over the workers, not the master: the
# largest (max, default) or their sum (sum).
status_kib() {
    local pids v total=0 best=0 pid
    read -r -a pids <<<"$(server_pids "$1" | tr '\n' ' ')"
    ((${#pids[@]} > 1)) && pids=("${pids[@]:1}")
    for pid in "${pids[@]}"; do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n $v ]] || continue
        total=$((total + v))
        ((v > best)) && best=$v
    done
    if [[ ${3:-max} == sum ]]; then echo "$total"; else echo "$best"; fi
}

# Latency text from wrk (e.g. 412.00us, 1.20ms, 2.00s) in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) x = v + 0; else if (v ~ /ms$/) x = v * 1000;
        else if (v ~ /m$/) x = v * 60e6; else if (v ~ /s$/) x = v * 1e6; else x = v;
        printf "%.0f", x }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# Busy ticks of the whole machine (user, nice, system, irq, softirq, steal).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# wait_quiet [MAX_S]: on a shared machine, waits (at most MAX_S, default 90) until the whole
# machine has been nearly idle (under 15% of one core busy) for 2 s, so that another job's
# burst does not land in a measurement; says so when it gives up.
wait_quiet() {
    local max=${1:-90} i a b quiet=0 hz
    hz=$(getconf CLK_TCK)
    for ((i = 0; i < max * 2; i++)); do
        a=$(machine_ticks)
        sleep 0.5
        b=$(machine_ticks)
        if (((b - a) * 200 < hz * 15)); then quiet=$((quiet + 1)); else quiet=0; fi
        ((quiet >= 4)) && return 0
    done
    log "machine still busy after ${max}s of waiting: measuring anyway"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# check LABEL VALUE OP LIMIT
check() {
    local verdict
    verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN {
        ok = (op == ">=") ? (v >= l) : (v <= l); print (ok ? "met" : "MISSED") }')
    printf -- '- %s: %s (target %s %s): **%s**\n' "$1" "$2" "$3" "$4" "$verdict"
}

# start_work TAG: the scratch directory WORK, the list PIDS of every long-running process
# started (cleanup stops them by PID), and the traps that run cleanup on any exit.
start_work() {
    WORK=$(mktemp -d -t "halyard-$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# resolve_halyard_bin: HALYARD_BIN as given (it must be executable), or the release build of
# the checkout at ROOT, built first unless BUILD is 0.
resolve_halyard_bin() {
    if [[ -n ${HALYARD_BIN:-} ]]; then
        [[ -x $HALYARD_BIN ]] || die "HALYARD_BIN=$HALYARD_BIN is not executable"
        return
    fi
    HALYARD_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/halyard
    if ((BUILD)); then
        log "building halyard (release)"
        (cd "$ROOT" && cargo build --release --bin halyard >&2)
    fi
}

# build_loadgen: LOADGEN, the release build of benches/load/loadgen (our closed-loop client,
# cheaper per request than wrk), built first.
build_loadgen() {
    # shellcheck disable=SC2034 # read by the sourcing script
    LOADGEN=$ROOT/benches/load/loadgen/target/release/loadgen
    log "building loadgen (release)"
    cargo build --release --manifest-path "$ROOT/benches/load/loadgen/Cargo.toml" >&2
}

# build_chatload: CHATLOAD, the release build of benches/load/loadgen's `chatload` (many
# concurrent SSE streams from one thread, see its doc), built first (a no-op when fresh).
build_chatload() {
    # shellcheck disable=SC2034 # read by the sourcing script
    CHATLOAD=$ROOT/benches/load/loadgen/target/release/chatload
    log "building loadgen/chatload (release)"
    cargo build --release --manifest-path "$ROOT/benches/load/loadgen/Cargo.toml" --bin chatload >&2
}

# resolve_fake_upstream_bin: FAKE_UPSTREAM_BIN as given, or the release build of the
# testkit's `fake-upstream` (the scriptable OpenAI-compatible upstream), built unless BUILD is 0.
resolve_fake_upstream_bin() {
    if [[ -n ${FAKE_UPSTREAM_BIN:-} ]]; then
        [[ -x $FAKE_UPSTREAM_BIN ]] || die "FAKE_UPSTREAM_BIN=$FAKE_UPSTREAM_BIN is not executable"
        return
    fi
    FAKE_UPSTREAM_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/fake-upstream
    if ((BUILD)); then
        log "building fake-upstream (release)"
        (cd "$ROOT" && cargo build --release -p halyard-testkit --bin fake-upstream >&2)
    fi
    [[ -x $FAKE_UPSTREAM_BIN ]] || die "no $FAKE_UPSTREAM_BIN (build it, or set FAKE_UPSTREAM_BIN)"
}

# start_fake_upstream CMD_PREFIX...: starts FAKE_UPSTREAM_BIN on a free loopback port behind
# the given command prefix (e.g. taskset -c 1); sets UP_PID and UP_PORT. Its stdin is a fifo
# this shell keeps open, so it also ends when the script does (stop_pid stops it first).
start_fake_upstream() {
    local dir i line=""
    dir=$(mktemp -d "$WORK/upstream.XXXX")
    mkfifo "$dir/stdin"
    exec {UP_STDIN}<>"$dir/stdin"
    "$@" "$FAKE_UPSTREAM_BIN" --listen 127.0.0.1:0 <&"$UP_STDIN" >"$dir/out" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    for ((i = 0; i < 100; i++)); do
        line=$(head -1 "$dir/out" 2>/dev/null || true)
        [[ $line == "listening on "* ]] && break
        kill -0 "$UP_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ $line == "listening on "* ]] || { cat "$dir/out" >&2; die "fake-upstream did not start"; }
    UP_PORT=${line##*:}
    log "fake-upstream pid $UP_PID port $UP_PORT"
}

stop_fake_upstream() {
    stop_pid "$UP_PID"
    exec {UP_STDIN}>&-
}

# nginx_conf DIR PORT WORKERS CONNECTIONS [CERTDIR] [HTTP_SNIPPET] [SERVER_SNIPPET] [MAIN_SNIPPET]:
# DIR/nginx.conf for the peer nginx, answering GET /health/live with Halyard's body; over
# TLS (1.2 and 1.3) with CERTDIR's cert.pem and key.pem when given (empty: plain). The
# snippets are added to the http and server blocks (e.g. an upstream and a proxy location)
# and to the main context (e.g. `master_process off;`).
nginx_conf() {
    local dir=$1 port=$2 workers=$3 conns=$4 certs=${5:-} http_extra=${6:-} server_extra=${7:-} main_extra=${8:-}
    local listen ssl=""
    mkdir -p "$dir/tmp"
    listen="listen 127.0.0.1:$port;"
    if [[ -n $certs ]]; then
        listen="listen 127.0.0.1:$port ssl;"
        ssl="ssl_certificate $certs/cert.pem; ssl_certificate_key $certs/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
$main_extra
worker_rlimit_nofile $((conns + 64));
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections $conns;
}
http {
    access_log off;
    server_tokens off;
    # Halyard does not cap requests per connection; nginx closes after 1000 by default.
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    $http_extra
    server {
        $listen
        $ssl
        location = /health/live {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
        $server_extra
    }
}
EOF
}

declare -A RUN=() # the figures of the last run, by name (see read_wrk)

# read_wrk OUT TICKS: from the report of wrk (or loadgen, which prints its latencies on one
# `Latency p50 X p99 Y` line) in OUT and the server's CPU ticks over the run, sets
# RUN[total rps p50 p99 non2xx cpu percpu] (RUN: the caller's associative array; latencies
# in µs, cpu in seconds, percpu in requests per server CPU-second).
read_wrk() {
    local out=$1 ticks=$2
    RUN[total]=$(awk '/ requests in / { print $1 }' "$out")
    RUN[non2xx]=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    RUN[non2xx]=${RUN[non2xx]:-0}
    RUN[rps]=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    RUN[p50]=$(to_us "$(awk '$1 == "50%" { print $2 } $1 == "Latency" && $2 == "p50" { print $3 }' "$out")")
    RUN[p99]=$(to_us "$(awk '$1 == "99%" { print $2 } $1 == "Latency" && $4 == "p99" { print $5 }' "$out")")
    RUN[cpu]=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    RUN[percpu]=$(awk -v n="${RUN[total]}" -v c="${RUN[cpu]}" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')
}
