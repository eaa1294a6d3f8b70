#!/usr/bin/env bash
# Runs every test suite and prints one summary line per suite, then a total; exits non-zero
# if any suite failed. This is the "all tests" command of README.md, and what .ci/run calls.
set -uo pipefail
cd "$(dirname "$0")/.."

log_dir=${WSC_LOG_DIR:-target/test-logs}
mkdir -p "$log_dir"
summary=()
failed=0
passed_total=0
failed_total=0

# run NAME COMMAND...: runs one suite with its output in a log, shown in full on failure.
# A suite that counts its tests ends its output with "NAME: N passed, N failed".
run() {
    local name=$1
    shift
    local log="$log_dir/$name.log"
    echo "=== $name: $*"
    local rc=0 start=$SECONDS
    "$@" >"$log" 2>&1 || rc=$?
    local took="($((SECONDS - start)) s)"
    local counts
    counts=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
    if [ -n "$counts" ]; then
        passed_total=$((passed_total + $(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$counts")))
        failed_total=$((failed_total + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$counts")))
    fi
    if [ $rc -ne 0 ]; then
        tail -n 200 "$log"
        summary+=("FAIL $name (exit $rc; full log: $log) ${counts#*: } $took")
        failed=1
    else
        summary+=("ok   ${counts:-$name: ok} $took")
    fi
}

rust_tests() {
    local out
    out=$(mktemp)
    cargo test --all-targets 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    awk '/^test result:/ { p += $4; f += $6 } END { printf "rust-tests: %d passed, %d failed\n", p, f }' "$out"
    rm -f "$out"
    return "$rc"
}

# The suites that drive connections, again with every client on the shared workers.
rust_tests_shared() {
    local out suites=""
    out=$(mktemp)
    for t in api backpressure busy_poll connection failures handshake_extras hostile log misuse proxy \
        poll_batch ratelimit reconnect resources stats streaming stress tls tls_options unix; do
        suites+=" --test $t"
    done
    # shellcheck disable=SC2086
    WSC_WORKER=shared cargo test $suites 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    awk '/^test result:/ { p += $4; f += $6 } END { printf "rust-tests-shared: %d passed, %d failed\n", p, f }' "$out"
    rm -f "$out"
    return "$rc"
}

# A part of the Autobahn cases with the agent on the shared workers. Runs before the full
# suite, whose report is the one kept in target/autobahn-report.
conformance_shared() {
    WSC_WORKER=shared bash tests/conformance/run.sh -i '1.*' -i '5.*' -i '7.*' -i '9.1.*' \
        -i '12.1.*' | sed 's/^conformance: /conformance-shared: /'
    return "${PIPESTATUS[0]}"
}

run format cargo fmt --all -- --check
run lint cargo clippy --all-targets -- -D warnings
run cross-check bash scripts/cross-check.sh
run rust-tests rust_tests
run rust-tests-shared rust_tests_shared
run c-tests bash tests/c/run.sh
run fuzz bash scripts/fuzz.sh "${WSC_FUZZ_SECONDS:-20}"
run tsan bash tests/tsan.sh
run interop bash tests/interop/run.sh
run conformance-shared conformance_shared
run conformance bash tests/conformance/run.sh
run packaging bash scripts/package-test.sh

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "total: $passed_total passed, $failed_total failed"
echo "(the Autobahn report is in target/autobahn-report/index.html)"
exit $failed
