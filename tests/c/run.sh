#!/usr/bin/env bash
# C tests of libwsclient: builds the library and the echo server, starts the server, then builds
# and runs the tests in tests/c twice:
#   asan      -fsanitize=address,undefined (LeakSanitizer on), linked against the release library
#   valgrind  plain -O1 -g, under valgrind memcheck (definite/indirect leaks and errors fail)
# Prints `c-tests (VARIANT): N passed, N failed` per variant and finally `c-tests: N passed, N
# failed` (the line scripts/test.sh collects). Exits non-zero if anything failed.
#
# Usage: tests/c/run.sh [TEST...]          (no names: all tests)
# Environment:
#   WSC_C_VARIANTS="asan valgrind"   which variants to run
#   WSC_C_BUILD_DIR=build/c-tests    where binaries and logs go (git-ignored)
#   WSC_VALGRIND_QUICK=1             under valgrind, skip the 16 MiB echoes and send 8x100 instead
#                                    of 8x1000 (WSC_TEST_QUICK=1; the full set takes ~30 s here)
#   WSC_TEST_TIMEOUT=120             per-test limit in seconds (valgrind gets 4x)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

variants=${WSC_C_VARIANTS:-asan valgrind}
build=${WSC_C_BUILD_DIR:-build/c-tests}
mkdir -p "$build"
build=$(cd "$build" && pwd)
libdir="$root/target/release"
timeout=${WSC_TEST_TIMEOUT:-120}

CFLAGS=(-std=c11 -Wall -Wextra -Werror -pthread -g -I"$root/include")
SOURCES=(tests/c/main.c tests/c/util.c tests/c/rawws.c tests/c/test_api.c tests/c/test_callback.c tests/c/test_echo.c tests/c/test_raw.c tests/c/test_stress.c)
LDFLAGS=(-L"$libdir" -lwsclient -Wl,-rpath,"$libdir")

die() {
    echo "c-tests: $*" >&2
    echo "c-tests: 0 passed, 1 failed"
    exit 1
}

echo "=== building the library and the echo server (cargo build --release)"
cargo build --release || die "cargo build --release failed"
cargo build --release --example echo_server || die "cargo build --release --example echo_server failed"
[ -f "$libdir/libwsclient.so" ] || die "$libdir/libwsclient.so is missing"

# ---- the echo server ----------------------------------------------------------------------
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/target/release/examples/echo_server" --host 127.0.0.1 --port 0 >"$build/echo_server.out" 2>"$build/echo_server.err" &
server_pid=$!
url=
for _ in $(seq 1 100); do
    url=$(sed -n 's/^listening on \(ws:\/\/127\.0\.0\.1:[0-9][0-9]*\).*$/\1/p' "$build/echo_server.out" | head -n 1)
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$url" ] || die "the echo server did not report its port: $(cat "$build/echo_server.out" "$build/echo_server.err")"
export WSC_TEST_URL=$url
echo "=== echo server (pid $server_pid) at $WSC_TEST_URL"

# ---- variants -----------------------------------------------------------------------------
summaries=()
total_passed=0
total_failed=0
status=0

# record VARIANT LOG RC: reads the runner's final "N passed, N failed" line from LOG.
record() {
    local variant=$1 log=$2 rc=$3
    local counts
    counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$counts" ]; then
        counts="0 passed, 1 failed"
        echo "c-tests ($variant): the runner did not finish (exit $rc)"
    fi
    local p f
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$counts")
    f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$counts")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # the runner itself failed (e.g. an error reported outside any test)
        counts="$p passed, $f failed"
    fi
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
    [ "$f" -eq 0 ] || status=1
    summaries+=("c-tests ($variant): $counts")
}

run_asan() {
    local bin="$build/c_tests_asan"
    echo "=== [asan] compiling with -fsanitize=address,undefined"
    gcc "${CFLAGS[@]}" -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
        "${SOURCES[@]}" "${LDFLAGS[@]}" -o "$bin" || { record asan /dev/null 1; return; }
    # The sanitizer runtime must really be in the binary.
    # (grep without -q: under pipefail, -q's early exit can fail the pipeline with SIGPIPE)
    if ! ldd "$bin" | grep 'libasan' >/dev/null && ! nm "$bin" 2>/dev/null | grep '__asan_init' >/dev/null; then
        echo "c-tests (asan): $bin is not linked with the AddressSanitizer runtime"
        record asan /dev/null 1
        return
    fi
    ldd "$bin" | grep -E 'libasan|libubsan|libwsclient' | sed 's/^/    /'
    # Is LeakSanitizer usable here (it needs ptrace-like access)? Probe with a known leak.
    local probe="$build/lsan_probe"
    printf '#include <stdlib.h>\nvoid *volatile p;\nint main(void){p=malloc(33);p=0;return 0;}\n' >"$probe.c"
    local leak_detection=1
    if gcc -fsanitize=address -g "$probe.c" -o "$probe" 2>/dev/null; then
        if ASAN_OPTIONS=detect_leaks=1 "$probe" >/dev/null 2>&1; then
            leak_detection=0
        fi
    fi
    if [ $leak_detection -eq 1 ]; then
        echo "    LeakSanitizer works here: leaks fail the tests under asan too"
    else
        echo "    NOTE: LeakSanitizer does not work in this environment; leaks are checked by valgrind only"
    fi
    echo "=== [asan] running"
    local log="$build/asan.log"
    local rc=0
    ASAN_OPTIONS="detect_leaks=$leak_detection:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:fast_unwind_on_malloc=0:malloc_context_size=40" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    WSC_TEST_TIMEOUT=$timeout \
        "$bin" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    record asan "$log" "$rc"
}

run_valgrind() {
    local bin="$build/c_tests_plain"
    if ! command -v valgrind >/dev/null; then
        echo "c-tests (valgrind): valgrind is not installed"
        record valgrind /dev/null 1
        return
    fi
    echo "=== [valgrind] compiling with -O1 -g"
    gcc "${CFLAGS[@]}" -O1 "${SOURCES[@]}" "${LDFLAGS[@]}" -o "$bin" || { record valgrind /dev/null 1; return; }
    local quick=0
    [ "${WSC_VALGRIND_QUICK:-0}" = 1 ] && quick=1
    echo "=== [valgrind] running (WSC_TEST_QUICK=$quick; each test is a forked child with its own leak check)"
    local log="$build/valgrind.log"
    local rc=0
    WSC_TEST_QUICK=$quick WSC_TEST_TIME_SCALE=10 WSC_TEST_TIMEOUT=$((timeout * 4)) \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --track-origins=yes \
        --num-callers=30 --fair-sched=yes --suppressions="$root/tests/c/valgrind.supp" \
        "$bin" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    record valgrind "$log" "$rc"
}

for v in $variants; do
    case $v in
    asan) run_asan "$@" ;;
    valgrind) run_valgrind "$@" ;;
    *) die "unknown variant $v" ;;
    esac
done

echo
if [ -s "$build/echo_server.err" ]; then
    echo "=== echo server stderr (last lines)"
    tail -n 20 "$build/echo_server.err"
fi
echo "(logs: $build/asan.log, $build/valgrind.log)"
printf '%s\n' "${summaries[@]}"
echo "c-tests: $total_passed passed, $total_failed failed"
exit $status
