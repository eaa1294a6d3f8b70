#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for SECONDS each (default 20; run longer by hand,
# e.g. `scripts/fuzz.sh 600`). Needs the nightly toolchain and cargo-fuzz (.ci/run installs
# them). Each target starts from its checked-in seeds (fuzz/seeds/<target>) and what earlier
# runs found (fuzz/corpus/<target>, not committed). A crash leaves its input in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ once fixed, so that
# `cargo test --lib` replays it for good. Prints "fuzz: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-20}
targets=(url handshake extensions session config proxy)

missing=""
cargo +nightly --version >/dev/null 2>&1 || missing="the nightly toolchain"
cargo +nightly fuzz --version >/dev/null 2>&1 || missing="${missing:+$missing and }cargo-fuzz"
if [ -n "$missing" ]; then
    echo "fuzz: $missing not installed (rustup toolchain install nightly; cargo install cargo-fuzz)"
    if [ "${CI:-}" = true ]; then
        echo "fuzz: 0 passed, ${#targets[@]} failed"
        exit 1
    fi
    echo "fuzz: 0 passed, 0 failed"
    exit 0
fi

# One build for all targets (release, debug assertions on, AddressSanitizer).
if ! cargo +nightly fuzz build -O; then
    echo "fuzz: 0 passed, ${#targets[@]} failed"
    exit 1
fi

passed=0
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    echo "=== $t: ${seconds}s"
    # -max_len keeps inputs small enough to mutate quickly; -rss_limit_mb catches unbounded
    # allocation (every target runs under limits far below it).
    if cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        passed=$((passed + 1))
        grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$log" | tail -n 2
    else
        failed=$((failed + 1))
        tail -n 60 "$log"
        echo "FAILED: $t; the input is in fuzz/artifacts/$t/ (log: fuzz/$log)"
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
