#!/usr/bin/env bash
# Fuzz smoke run (issue 8): every cargo-fuzz target of fuzz/ for FUZZ_SECONDS seconds
# (default 20), starting from its seed corpus; fails on a crash, a hang (an input taking more
# than 10 s) or a leak of more than 2 GiB. New inputs go to a scratch directory, so the
# committed corpus stays as it is; a crash is kept in fuzz/artifacts/<target>/ and should be
# committed to fuzz/regressions/<target>/ with its fix (tests/fuzz_corpus.rs replays it).
#
# cargo-fuzz is installed with `cargo install cargo-fuzz --locked` when missing; where that is
# impossible, the run is skipped (the corpus replay in `cargo test` still runs). On a stable
# toolchain the sanitizer flags of `cargo fuzz` (-Zsanitizer=address) need RUSTC_BOOTSTRAP=1,
# set here; FUZZ_SANITIZER=none builds without AddressSanitizer instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

secs="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== fuzz-smoke: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz-smoke: cargo-fuzz cannot be installed with this toolchain; skipped"
        exit 0
    fi
fi
cargo fuzz --version

# The toolchain's channel decides whether the -Z flags need the bootstrap switch.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

echo "== fuzz-smoke: build (sanitizer: $sanitizer)"
cargo fuzz build -O --sanitizer "$sanitizer"

scratch="$(mktemp -d /tmp/halyard-fuzz-smoke.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
summary=()
for target in $(cargo fuzz list); do
    echo "== fuzz-smoke: $target for ${secs} s"
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    status=0
    cargo fuzz run -O --sanitizer "$sanitizer" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')"
    summary+=("$(printf '%-14s %10s execs %8s exec/s  cov %6s  exit %s' "$target" "$execs" "$rate" "$cov" "$status")")
    if [ "$status" -ne 0 ]; then
        tail -60 "$log"
        echo "fuzz-smoke: $target failed; the input is in fuzz/artifacts/$target/"
        printf '%s\n' "${summary[@]}"
        exit 1
    fi
done
echo "== fuzz-smoke: summary"
printf '%s\n' "${summary[@]}"
