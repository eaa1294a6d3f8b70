#!/usr/bin/env bash
# Demo: build libwsclient and the echo server, then run the C echo client against it.
# Exits with the client's status.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}/release

cargo build --release
cargo build --release --example echo_server

workdir=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# Port 0: the OS picks a free port, which the server prints on its first line.
"$target/examples/echo_server" --port 0 >"$workdir/server.out" &
server_pid=$!
line=
for _ in $(seq 100); do
    IFS= read -r line <"$workdir/server.out" || true
    [[ -n $line ]] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "demo: echo server exited" >&2; exit 1; }
    sleep 0.1
done
port=${line##*:}
if [[ $line != "listening on ws://"* || ! $port =~ ^[0-9]+$ ]]; then
    echo "demo: echo server did not report its port (got: '$line')" >&2
    exit 1
fi
echo "demo: $line"

# The rpath lets the client find libwsclient.so without LD_LIBRARY_PATH.
client="$workdir/echo_client"
"${CC:-cc}" -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/echo_client.c \
    -L"$target" -lwsclient -Wl,-rpath,"$target" -o "$client"

status=0
"$client" "ws://127.0.0.1:$port/" "$@" || status=$?
exit "$status"
