#!/usr/bin/env bash
# TLS load test: Halyard over TLS against Halyard in plain HTTP, and against nginx with the
# same certificate and key.
#
# 1. Kept-alive requests: a load client (64 connections, `GET /health/live`) against Halyard
#    plain and Halyard TLS, REPEATS runs each, alternating; prints the medians of requests/s
#    and of requests per server CPU-second, and TLS/plain for both. nginx plain and TLS are
#    measured the same way for reference (their TLS/plain shows what the client allows).
#    The client is `benches/load/loadgen` (built here), or wrk with `--client wrk`: wrk's
#    one thread needs ~11 µs of CPU per TLS request, more than the server does, so under wrk
#    the TLS rate is the client's; loadgen needs ~7.4 µs (benches/RESULTS.md, "TLS").
# 2. New TLS 1.3 handshakes: CLIENTS concurrent `openssl s_time -new -tls1_3` loops (a full
#    handshake per connection, no request, no resumption) against Halyard and nginx,
#    alternating; prints handshakes/s, the server's CPU seconds and handshakes per server
#    CPU-second, and Halyard/nginx. Run for an ECDSA P-256 and an RSA-2048 certificate: with
#    ECDSA the client's work (verifying the signature) outweighs the server's, so the rate is
#    bounded by the client and the per-CPU figure is the telling one; with RSA the server's
#    signature dominates.
#
# Pinned: each server runs on core 0 with one event loop / one worker, the clients on core 1.
# Every run also reports the CPU time that other processes took on each core meanwhile
# ("noise"): on a shared machine, runs with much noise on core 0 understate the server.
#
# Usage: benches/load/tls.sh [--quick] [--duration S] [--repeats N] [--clients N]
#                            [--keys "ec rsa"] [--client loadgen|wrk] [--no-build]
#   --quick      3 s runs (default 5 s, 5 repeats)
# Environment: HALYARD_BIN (skip building Halyard), CARGO_TARGET_DIR (Halyard's).
#
# Installs wrk, nginx, openssl and python3 with apt-get when missing (as root). Everything
# listens on 127.0.0.1 only; every process started here is stopped by PID on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

DURATION=5
REPEATS=5
CONNECTIONS=64
CLIENTS=2
KEYS="ec rsa"
BUILD=1
CLIENT=loadgen
SERVER_CORE=0
CLIENT_CORE=1

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) DURATION=3 ;;
        --duration) DURATION=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --keys) KEYS=$2; shift ;;
        --client) CLIENT=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done

LOG_TAG=tls
# shellcheck source=lib.sh
source "$ROOT/benches/load/lib.sh"

start_work tls

# ---------------------------------------------------------------- tools

need wrk wrk
need openssl openssl
need python3 python3
need taskset util-linux
need getconf libc-bin
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    apt_install nginx-light || apt_install nginx || die "nginx unavailable"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
CLK_TCK=$(getconf CLK_TCK)
(($(nproc) >= 2)) || die "needs 2 cores (server on core 0, clients on core 1)"
PIN_SERVER=(taskset -c "$SERVER_CORE")
PIN_CLIENT=(taskset -c "$CLIENT_CORE")

# ---------------------------------------------------------------- build

resolve_halyard_bin

[[ $CLIENT == loadgen || $CLIENT == wrk ]] || die "--client is loadgen or wrk"
[[ $CLIENT == loadgen ]] && build_loadgen

# ---------------------------------------------------------------- certificates

# make_cert KIND: a self-signed certificate for localhost/127.0.0.1 in $WORK/KIND.
make_cert() {
    local kind=$1 dir=$WORK/$1 alg
    mkdir -p "$dir"
    case "$kind" in
        ec) alg=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
        rsa) alg=(-newkey rsa:2048) ;;
        *) die "unknown key kind $kind" ;;
    esac
    openssl req -x509 "${alg[@]}" -nodes -days 2 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
}

# ---------------------------------------------------------------- servers

# wait_ready PORT PID SCHEME: until GET /health/live answers, over TLS too (replaces the
# plain-only one of lib.sh; curl-free: openssl or bash).
wait_ready() {
    local port=$1 pid=$2 scheme=$3 i out
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [[ $scheme == https ]]; then
            out=$(printf 'GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
                timeout 2 openssl s_client -quiet -connect "127.0.0.1:$port" 2>/dev/null | head -c 12 || true)
        elif { exec 9<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            printf 'GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&9
            out=$(timeout 2 head -c 12 <&9 || true)
            exec 9<&- 9>&-
        fi
        [[ ${out:-} == "HTTP/1.1 200" ]] && return 0
        sleep 0.1
    done
    return 1
}


declare -A PORT PID SCHEME
# start_server NAME KIND CERTDIR|"": NAME is a label, KIND halyard or nginx.
start_server() {
    local name=$1 kind=$2 certs=$3 port dir tls=()
    port=$(free_port)
    dir=$(mktemp -d "$WORK/$name.XXXX")
    case "$kind" in
        halyard)
            [[ -n $certs ]] && tls=(--tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem")
            "${PIN_SERVER[@]}" "$HALYARD_BIN" serve --listen "127.0.0.1:$port" --threads 1 \
                --data-dir "$dir/data" "${tls[@]}" >"$dir/log" 2>&1 &
            ;;
        nginx)
            nginx_conf "$dir" "$port" 1 4096 "$certs"
            "${PIN_SERVER[@]}" "$NGINX" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/log" 2>&1 &
            ;;
    esac
    local pid=$!
    PIDS+=("$pid")
    PORT[$name]=$port
    PID[$name]=$pid
    SCHEME[$name]=$([[ -n $certs ]] && echo https || echo http)
    wait_ready "$port" "$pid" "${SCHEME[$name]}" ||
        { cat "$dir/log" "$dir/error.log" 2>/dev/null >&2; die "$name did not start"; }
}

stop_server() { stop_pid "${PID[$1]}"; }

# utime + stime of the server and its children (nginx's worker), in ticks.
# Busy ticks of core N (user, nice, system, irq, softirq, steal).
core_ticks() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# measure NAME CMD...: runs CMD; sets SERVER_CPU (s), NOISE0/NOISE1 (s of core 0/1 not
# used by the server/the clients).
measure() {
    local name=$1 s0 s1 c0 c1 k0 k1 client
    shift
    s0=$(cpu_ticks "${PID[$name]}")
    c0=$(core_ticks "$SERVER_CORE")
    k0=$(core_ticks "$CLIENT_CORE")
    local TIMEFORMAT='%U %S'
    client=$({ time "$@" >/dev/null; } 2>&1 | tail -1)
    s1=$(cpu_ticks "${PID[$name]}")
    c1=$(core_ticks "$SERVER_CORE")
    k1=$(core_ticks "$CLIENT_CORE")
    SERVER_CPU=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    NOISE0=$(awk -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v hz="$CLK_TCK" \
        'BEGIN { o = (c - s) / hz; printf "%.2f", (o > 0 ? o : 0) }')
    NOISE1=$(awk -v k=$((k1 - k0)) -v hz="$CLK_TCK" -v u="$client" \
        'BEGIN { split(u, a, " "); o = k / hz - a[1] - a[2]; printf "%.2f", (o > 0 ? o : 0) }')
}

declare -A RESULT # RESULT[test,server,metric] = values, space-separated

# ---------------------------------------------------------------- 1. kept-alive requests

# wrk_once NAME SECONDS OUT: one run of the load client; its report (wrk's format) in OUT.
wrk_once() {
    local name=$1
    local url="${SCHEME[$name]}://127.0.0.1:${PORT[$name]}/health/live"
    if [[ $CLIENT == loadgen ]]; then
        "${PIN_CLIENT[@]}" "$LOADGEN" "$url" --connections "$CONNECTIONS" --duration "$2" \
            --insecure >"$3" 2>&1
    else
        "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"${2}s" "$url" >"$3" 2>&1
    fi || { cat "$3" >&2; die "$CLIENT failed against $name"; }
}

# A keep-alive run of the load client, measured.
ka_run() { # ka_run NAME OUT
    measure "$1" wrk_once "$1" "$DURATION" "$2"
}

keepalive() {
    local certs=$WORK/ec names="halyard-plain halyard-tls nginx-plain nginx-tls" name rep out
    log "kept-alive: ${DURATION}s x $REPEATS per server, $CONNECTIONS connections (ECDSA P-256), client $CLIENT"
    start_server halyard-plain halyard ""
    start_server halyard-tls halyard "$certs"
    start_server nginx-plain nginx ""
    start_server nginx-tls nginx "$certs"
    for name in $names; do wrk_once "$name" 1 "$WORK/warmup.out"; done
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for name in $names; do
            out=$WORK/wrk.out
            ka_run "$name" "$out"
            if grep -qE 'Socket errors|Non-2xx' "$out"; then
                log "WARNING $name: $(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | tr '\n' ';')"
            fi
            local rps total per_cpu
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            total=$(awk '/ requests in / { print $1 }' "$out")
            per_cpu=$(awk -v n="$total" -v c="$SERVER_CPU" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')
            printf '[tls]   %-14s %9.0f req/s  server cpu %5.2f s  %7d req/cpu-s  noise core0 %4.2f s core1 %4.2f s\n' \
                "$name" "$rps" "$SERVER_CPU" "$per_cpu" "$NOISE0" "$NOISE1" >&2
            RESULT[ka,$name,rps]+="$rps "
            RESULT[ka,$name,percpu]+="$per_cpu "
            RESULT[ka,$name,noise]+="$NOISE0 "
        done
    done
    for name in $names; do stop_server "$name"; done
}

# ---------------------------------------------------------------- 2. new handshakes

# s_time_clients NAME SECONDS: CLIENTS concurrent s_time loops, outputs in $WORK/s_time.I.
s_time_clients() {
    local name=$1 secs=$2 i spids=()
    for ((i = 0; i < CLIENTS; i++)); do
        "${PIN_CLIENT[@]}" timeout $((secs + 30)) openssl s_time -connect "127.0.0.1:${PORT[$name]}" \
            -new -tls1_3 -time "$secs" >"$WORK/s_time.$i" 2>&1 &
        spids+=($!)
    done
    for i in "${spids[@]}"; do wait "$i" || true; done
}

# handshakes_once NAME SECONDS: prints the handshakes/s of CLIENTS s_time loops; sets
# SERVER_CPU and the noise figures.
handshakes_once() {
    local name=$1 secs=$2 i total=0 real
    measure "$name" s_time_clients "$name" "$secs"
    for ((i = 0; i < CLIENTS; i++)); do
        # "N connections in T real seconds, ..."
        real=$(awk '/connections in [0-9.]+ real seconds/ { print $1 / $4 }' "$WORK/s_time.$i")
        [[ -n $real ]] || { cat "$WORK/s_time.$i" >&2; die "s_time failed against $name"; }
        total=$(awk -v a="$total" -v b="$real" 'BEGIN { print a + b }')
    done
    HANDSHAKES=$total
}

handshakes() {
    local kind=$1 certs=$WORK/$1 names="halyard nginx" name rep hs cpu
    log "new TLS 1.3 handshakes ($kind): ${DURATION}s x $REPEATS per server, $CLIENTS s_time clients"
    start_server halyard halyard "$certs"
    start_server nginx nginx "$certs"
    for name in $names; do handshakes_once "$name" 1; done
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for name in $names; do
            handshakes_once "$name" "$DURATION"
            hs=$HANDSHAKES
            cpu=$SERVER_CPU
            local per_cpu
            per_cpu=$(awk -v h="$hs" -v d="$DURATION" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? h * d / c : 0) }')
            printf '[tls]   %-8s %-7s %8.0f handshakes/s  server cpu %5.2f s  %6d handshakes/cpu-s  noise core0 %4.2f s core1 %4.2f s\n' \
                "$kind" "$name" "$hs" "$cpu" "$per_cpu" "$NOISE0" "$NOISE1" >&2
            RESULT[hs-$kind,$name,rate]+="$hs "
            RESULT[hs-$kind,$name,percpu]+="$per_cpu "
            RESULT[hs-$kind,$name,noise]+="$NOISE0 "
        done
    done
    for name in $names; do stop_server "$name"; done
}

# ---------------------------------------------------------------- run

med() {
    local values
    read -r -a values <<<"${RESULT[$1]}"
    median "${values[@]}"
}

for kind in ec $KEYS; do [[ -d $WORK/$kind ]] || make_cert "$kind"; done
keepalive
for kind in $KEYS; do handshakes "$kind"; done

echo
echo "## TLS results ($(nproc) cores, ${DURATION}s x $REPEATS, medians; server on core $SERVER_CORE with 1 loop/worker, clients on core $CLIENT_CORE)"
echo
echo "| kept-alive GET /health/live, $CONNECTIONS conns, $CLIENT | plain req/s | TLS req/s | TLS/plain | plain req/cpu-s | TLS req/cpu-s | TLS/plain per cpu | noise core0 s (plain, TLS) |"
echo "|---|---|---|---|---|---|---|---|"
for s in halyard nginx; do
    p=$(med "ka,$s-plain,rps")
    t=$(med "ka,$s-tls,rps")
    pc=$(med "ka,$s-plain,percpu")
    tc=$(med "ka,$s-tls,percpu")
    printf '| %s | %.0f | %.0f | %s | %.0f | %.0f | %s | %s, %s |\n' "$s" "$p" "$t" "$(ratio "$t" "$p")" \
        "$pc" "$tc" "$(ratio "$tc" "$pc")" "$(med "ka,$s-plain,noise")" "$(med "ka,$s-tls,noise")"
done
echo
echo "| new TLS 1.3 handshakes, $CLIENTS clients | halyard /s | nginx /s | halyard/nginx | halyard /cpu-s | nginx /cpu-s | halyard/nginx per cpu | noise core0 s (halyard, nginx) |"
echo "|---|---|---|---|---|---|---|---|"
for kind in $KEYS; do
    hr=$(med "hs-$kind,halyard,rate")
    nr=$(med "hs-$kind,nginx,rate")
    hc=$(med "hs-$kind,halyard,percpu")
    nc=$(med "hs-$kind,nginx,percpu")
    printf '| %s | %.0f | %.0f | %s | %.0f | %.0f | %s | %s, %s |\n' "$kind" "$hr" "$nr" "$(ratio "$hr" "$nr")" \
        "$hc" "$nc" "$(ratio "$hc" "$nc")" "$(med "hs-$kind,halyard,noise")" "$(med "hs-$kind,nginx,noise")"
done
