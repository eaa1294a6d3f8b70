#!/usr/bin/env bash
# Type-checks the library (and lints it with clippy) for macOS and Windows from Linux, so
# cfg-gated code (src/notify.rs) and the platform TLS backends at least compile there.
# Nothing is linked or run: no SDK or linker for those targets is installed here.
#
# Each target is checked when rustup has its standard library; `.ci/run` tries to add them.
# Last line: "cross-check: N passed, N failed, N skipped" (a target whose standard library
# could not be installed is skipped and named, not failed: rustup's server is not a registry
# every machine reaches).
set -uo pipefail
cd "$(dirname "$0")/.."

targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-gnu)
installed=$(rustup target list --installed 2>/dev/null)
passed=0
failed=0
skipped=0
for t in "${targets[@]}"; do
    if ! grep -qx "$t" <<<"$installed"; then
        echo "cross-check: $t skipped (no standard library: rustup target add $t)"
        skipped=$((skipped + 1))
        continue
    fi
    if cargo clippy --lib --target "$t" --quiet -- -D warnings; then
        echo "cross-check: $t ok"
        passed=$((passed + 1))
    else
        echo "cross-check: $t FAILED"
        failed=$((failed + 1))
    fi
done
echo "cross-check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
