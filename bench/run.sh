#!/usr/bin/env bash
# Builds and runs the libwsclient vs raw tungstenite benchmark (about 2-3 minutes on 2 cores).
# Arguments go to wsbench, e.g. `bench/run.sh --json /tmp/bench.json --scale 0.5 --no-wss`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo build --release --manifest-path "$here/Cargo.toml"
exec "$here/target/release/wsbench" "$@"
