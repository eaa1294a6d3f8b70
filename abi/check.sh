#!/usr/bin/env bash
# ABI check: compares the symbols a built libwsclient exports with abi/symbols.txt (the
# released ABI) and with the functions include/wsclient.h declares.
#
#   abi/check.sh [LIBRARY]      default: target/release/libwsclient.so (.dylib on macOS)
#   WSC_BLESS=1 abi/check.sh    rewrites abi/symbols.txt from LIBRARY
#
# Fails (exit 1) when
#   - a symbol listed in abi/symbols.txt is missing from the library: a removal or rename
#     breaks every program linked against an earlier version (needs a new soname; see
#     docs/packaging.md);
#   - the header declares a function the library does not export, or the library exports a
#     wsc_ symbol the header does not declare (the header is the whole C API).
# Prints a notice, and passes, for an exported symbol that is not in abi/symbols.txt yet:
# an addition is compatible, but it should be recorded (run with WSC_BLESS=1 and commit).
#
# Last line: "abi: ok (N symbols)" or "abi: FAILED (...)".
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
list=$root/abi/symbols.txt
header=$root/include/wsclient.h

case $(uname -s) in
Darwin) default_lib=$root/target/release/libwsclient.dylib ;;
*) default_lib=$root/target/release/libwsclient.so ;;
esac
lib=${1:-$default_lib}
[ -f "$lib" ] || { echo "abi: no library at $lib (cargo build --release first)"; echo "abi: FAILED (no library)"; exit 1; }

# The wsc_ symbols the library defines and exports, one per line, sorted.
exported_symbols() {
    case $(uname -s) in
    Darwin) nm -gU "$1" | awk '{ print $NF }' | sed 's/^_//' ;; # Mach-O names start with _
    *) nm -D --defined-only "$1" | awk '{ print $NF }' ;;
    esac | grep -E '^wsc_' | LC_ALL=C sort -u
}

# The functions the header declares: declarations start in column 0; comments do not.
declared_functions() {
    grep -E '^[A-Za-z]' "$header" | grep -oE '\bwsc_[a-z0-9_]+\(' | tr -d '(' | LC_ALL=C sort -u
}

exported=$(exported_symbols "$lib")
if [ -z "$exported" ]; then
    echo "abi: $lib exports no wsc_ symbols"
    echo "abi: FAILED (no symbols)"
    exit 1
fi

if [ "${WSC_BLESS:-}" = 1 ]; then
    if [ -f "$list" ]; then
        removed=$(LC_ALL=C comm -23 "$list" <(echo "$exported"))
        [ -n "$removed" ] && printf 'abi: WARNING: removing from the list (an ABI break): %s\n' $removed
    fi
    echo "$exported" >"$list"
    echo "abi: wrote $(wc -l <"$list") symbols to abi/symbols.txt"
fi

if [ ! -f "$list" ]; then
    echo "abi: no abi/symbols.txt; create it with WSC_BLESS=1 abi/check.sh"
    echo "abi: FAILED (no symbol list)"
    exit 1
fi

failed=()
missing=$(LC_ALL=C comm -23 "$list" <(echo "$exported"))
added=$(LC_ALL=C comm -13 "$list" <(echo "$exported"))
declared=$(declared_functions)
undeclared=$(LC_ALL=C comm -13 <(echo "$declared") <(echo "$exported"))
unexported=$(LC_ALL=C comm -23 <(echo "$declared") <(echo "$exported"))

for s in $missing; do
    echo "abi: ERROR: $s is in abi/symbols.txt but not exported by $lib (removed or renamed: an ABI break)"
done
[ -n "$missing" ] && failed+=("$(echo "$missing" | wc -l) released symbols missing")
for s in $unexported; do
    echo "abi: ERROR: include/wsclient.h declares $s, but $lib does not export it"
done
[ -n "$unexported" ] && failed+=("header declares unexported functions")
for s in $undeclared; do
    echo "abi: ERROR: $lib exports $s, which include/wsclient.h does not declare (stale header?)"
done
[ -n "$undeclared" ] && failed+=("exports missing from the header")
for s in $added; do
    echo "abi: notice: new symbol $s: add it to abi/symbols.txt (WSC_BLESS=1 abi/check.sh) and commit"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "abi: FAILED ($(IFS=';'; echo "${failed[*]}"))"
    exit 1
fi
echo "abi: ok ($(echo "$exported" | wc -l) symbols${added:+, $(echo "$added" | wc -l) new})"
