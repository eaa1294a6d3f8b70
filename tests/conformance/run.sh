#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases (kosoku's fuzzing server) against the C agent built on
# the public API, keeps the report in target/autobahn-report, and prints
# `conformance: N passed, N failed`. Extra arguments go to kosoku (e.g. -i '1.*').
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${WSC_CONFORMANCE_VENV:-target/venv-conformance}
if [ ! -x "$venv/bin/kosoku" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kosoku
fi

cargo build --release --quiet
build=target/conformance
report=target/autobahn-report
mkdir -p "$build"
rm -rf "$report"
${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -Iinclude tests/conformance/autobahn_client.c \
    -Ltarget/release -lwsclient -Wl,-rpath,"$PWD/target/release" -o "$build/autobahn_client"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/kosoku" -m fuzzingserver "127.0.0.1:$port" -o "$report" "$@" >"$build/kosoku.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    grep -q "listening" "$build/kosoku.log" && break
    sleep 0.1
done

"$build/autobahn_client" "ws://127.0.0.1:$port" libwsclient
# kosoku writes index.json after the updateReports call returns.
for _ in $(seq 100); do
    [ -f "$report/index.json" ] && break
    sleep 0.1
done
python3 tests/conformance/summarize.py "$report" libwsclient
