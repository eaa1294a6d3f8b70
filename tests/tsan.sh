#!/usr/bin/env bash
# Runs the Rust concurrency stress test (tests/stress.rs, in thread and shared worker mode) and
# the shared worker tests (tests/shared.rs) under ThreadSanitizer: nightly,
# -Zsanitizer=thread, and the standard library rebuilt with it (-Zbuild-std, needs the
# nightly rust-src component; .ci/run installs both). A data race fails the run.
# Prints "tsan: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "tsan: the nightly toolchain with rust-src is not installed (rustup component add rust-src --toolchain nightly)"
    if [ "${CI:-}" = true ]; then
        echo "tsan: 0 passed, 1 failed"
        exit 1
    fi
    echo "tsan: 0 passed, 0 failed"
    exit 0
fi

out=$(mktemp)
# Own target dir: the instrumented build must not mix with the normal one.
RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    CARGO_TARGET_DIR=target/tsan \
    cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --test stress --test shared 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# The stress test again with every client on the shared workers.
WSC_WORKER=shared RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    CARGO_TARGET_DIR=target/tsan \
    cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --test stress 2>&1 | tee -a "$out"
rc2=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && rc=$rc2
if grep -q "WARNING: ThreadSanitizer" "$out"; then
    rc=1
fi
awk -v rc="$rc" '/^test result:/ { p += $4; f += $6 } END { if (rc != 0 && f == 0) f = 1; printf "tsan: %d passed, %d failed\n", p, f }' "$out"
rm -f "$out"
exit "$rc"
