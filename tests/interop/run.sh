#!/usr/bin/env bash
# Interoperability tests: our client (libwsclient through its public C API) against two
# WebSocket servers that no one here wrote, each with permessage-deflate on and off:
#   python-deflate / python-plain   Python `websockets` (asyncio server), tests/interop/server_python.py
#   node-deflate   / node-plain     Node `ws`,                            tests/interop/server_node.js
# The driver is tests/interop/interop_client.c (see its header for the scenarios).
#
# Installs what it needs on first use, under target/interop/ (git-ignored), and reuses it:
#   target/interop/venv           Python venv with `websockets` from PyPI
#   target/interop/node           `ws` from npm (node_modules)
# Needs python3 (with venv), node, npm, cargo and a C compiler.
#
# Prints the driver's line per scenario, `interop LABEL: N passed, N failed` per server and
# finally `interop: N passed, N failed`. Exits non-zero if anything failed.
#
# Usage: tests/interop/run.sh [LABEL...]     (default: all four)
# Environment: WSC_INTEROP_DIR=target/interop  where installs, binaries and logs go
#              WSC_INTEROP_TIMEOUT=300         limit for one driver run, in seconds
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
work=${WSC_INTEROP_DIR:-$root/target/interop}
mkdir -p "$work"
work=$(cd "$work" && pwd)
run_timeout=${WSC_INTEROP_TIMEOUT:-300}

PY_REQUIREMENT='websockets>=14,<18'
NODE_REQUIREMENT='ws@^8.17'

die() {
    echo "interop: $*" >&2
    echo "interop: 0 passed, 1 failed"
    exit 1
}

# ---- servers are killed on any exit --------------------------------------------------------
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=
    fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# ---- prerequisites -------------------------------------------------------------------------
for tool in python3 node npm cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
cc=${CC:-cc}
command -v "$cc" >/dev/null || die "no C compiler ($cc)"

echo "=== building the library (cargo build --release)"
cargo build --release || die "cargo build --release failed"
lib="$root/target/release/libwsclient.so"
[ -f "$lib" ] || die "$lib is missing"

venv="$work/venv"
if "$venv/bin/python" -c 'import websockets.asyncio.server' 2>/dev/null; then
    echo "=== reusing $venv (websockets $("$venv/bin/python" -c 'import websockets; print(websockets.__version__)'))"
else
    echo "=== creating $venv and installing $PY_REQUIREMENT"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
    "$venv/bin/python" -m pip install --quiet "$PY_REQUIREMENT" || die "pip install $PY_REQUIREMENT failed"
    "$venv/bin/python" -c 'import websockets.asyncio.server' || die "websockets does not import"
fi

node_dir="$work/node"
if [ -f "$node_dir/node_modules/ws/package.json" ]; then
    echo "=== reusing $node_dir (ws $(node -p "require('$node_dir/node_modules/ws/package.json').version"))"
else
    echo "=== installing $NODE_REQUIREMENT into $node_dir"
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --no-audit --no-fund --no-package-lock --no-save --loglevel=error \
        "$NODE_REQUIREMENT" || die "npm install $NODE_REQUIREMENT failed"
    [ -f "$node_dir/node_modules/ws/package.json" ] || die "ws is missing after npm install"
fi

echo "=== compiling tests/interop/interop_client.c"
client="$work/interop_client"
"$cc" -std=c11 -Wall -Wextra -Werror -O1 -g -I"$root/include" "$root/tests/interop/interop_client.c" \
    -L"$root/target/release" -lwsclient -Wl,-rpath,"$root/target/release" -o "$client" ||
    die "compiling the driver failed"

# ---- one run per server ----------------------------------------------------------------------
summaries=()
total_passed=0
total_failed=0

# start_server LABEL COMMAND...: starts it in the background; sets server_pid and port.
start_server() {
    local label=$1
    shift
    "$@" >"$work/$label.server.out" 2>"$work/$label.server.err" &
    server_pid=$!
    port=
    for _ in $(seq 1 150); do
        port=$(head -n 1 "$work/$label.server.out" | tr -d '\r')
        [[ $port =~ ^[0-9]+$ ]] && return 0
        port=
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

# run_one LABEL deflate|none COMMAND...
run_one() {
    local label=$1 compression=$2
    shift 2
    echo "=== $label: starting $*"
    local passed=0 failed=0
    if ! start_server "$label" "$@"; then
        echo "interop $label: the server did not report its port:"
        sed 's/^/    /' "$work/$label.server.out" "$work/$label.server.err" | tail -n 20
        failed=1
    else
        local log="$work/$label.log"
        local url="ws://127.0.0.1:$port"
        echo "=== $label: server (pid $server_pid) at $url"
        # Show the scenario lines as they come (without the driver's own total line).
        timeout "$run_timeout" "$client" "$url" "$label" "$compression" 2>&1 | tee "$log" |
            grep -v '^interop: '
        local rc=${PIPESTATUS[0]}
        local counts
        counts=$(grep -E '^interop: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
        if [ -n "$counts" ]; then
            passed=$(sed -E 's/^interop: ([0-9]+) passed.*/\1/' <<<"$counts")
            failed=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$counts")
        fi
        if [ -z "$counts" ] || { [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; }; then
            [ "$rc" -eq 124 ] && echo "interop $label: the driver timed out after ${run_timeout}s"
            echo "interop $label: the driver did not finish cleanly (exit $rc)"
            failed=$((failed + 1))
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "interop $label: the server died during the run"
            failed=$((failed + 1))
        fi
        stop_server
        if [ -s "$work/$label.server.err" ]; then
            echo "--- $label server stderr (last lines; full: $work/$label.server.err)"
            tail -n 15 "$work/$label.server.err" | sed 's/^/    /'
        fi
    fi
    stop_server
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summaries+=("interop $label: $passed passed, $failed failed")
    echo "interop $label: $passed passed, $failed failed"
}

python=("$venv/bin/python" "$root/tests/interop/server_python.py")
node=(env NODE_PATH="$node_dir/node_modules" node "$root/tests/interop/server_node.js")

labels=("$@")
[ ${#labels[@]} -gt 0 ] || labels=(python-deflate python-plain node-deflate node-plain)
for label in "${labels[@]}"; do
    case $label in
    python-deflate) run_one "$label" deflate "${python[@]}" --compression deflate ;;
    python-plain) run_one "$label" none "${python[@]}" --compression none ;;
    node-deflate) run_one "$label" deflate "${node[@]}" --compression deflate ;;
    node-plain) run_one "$label" none "${node[@]}" --compression none ;;
    *) die "unknown label $label (python-deflate, python-plain, node-deflate, node-plain)" ;;
    esac
done

echo
printf '%s\n' "${summaries[@]}"
echo "interop: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
