#!/usr/bin/env bash
# Builds and runs the libwsclient vs raw tungstenite benchmark (about 2-3 minutes on 2 cores).
# Arguments go to wsbench, e.g. `bench/run.sh --json /tmp/bench.json --scale 0.5 --no-wss`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The lib-shared variant needs the library's shared worker mode: build it in (cargo feature
# `shared`) when the library declares wsc_config_set_worker; otherwise it is skipped.
features=()
if grep -rqs 'fn wsc_config_set_worker' "$here/../src/ffi"; then
  features=(--features shared)
fi
cargo build --release --manifest-path "$here/Cargo.toml" "${features[@]}"
exec "$here/target/release/wsbench" "$@"
