#!/usr/bin/env bash
# Switchyard in the shared side-by-side harness (../shared/bench): the nginx mock upstream, the
# peers' loads, the same report format as the peers' table. Loopback only, bounded.
#   cargo build --release -p switchyard && bash examples/bench/harness.sh
# Needs nginx and oha (../shared/bench/setup-peers.sh installs both). The table is written to
# $OUT (default /tmp/switchyard-harness.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=${BENCH:-$ROOT/../shared/bench}
OUT=${OUT:-/tmp/switchyard-harness.md}
export BENCH_HOME=${BENCH_HOME:-/tmp/gateway-bench}
export LOADS_SPEC=${LOADS_SPEC:-"c1|-n 1000 -c 1;c32|-n 5000 -c 32;q2000|-z 10s -w -q 2000 -c 128 --latency-correction;c128|-n 5000 -c 128"}
# shellcheck source=/dev/null
source "$BENCH"/lib.sh
mkdir -p "$RUN_DIR"
start_mock
start_bg switchyard env RUST_LOG=warn "$ROOT/target/release/switchyard" serve \
  --config "$ROOT/examples/bench/nginx-mock.toml"
wait_port 18100 20
NEW_GW_NAME=switchyard NEW_GW_PID=$BG_PGID bench_new_gateway http://127.0.0.1:18100/v1 @"$BENCH"/body.json
measure_gateway baseline-nginx http://127.0.0.1:18080/v1 @"$BENCH"/body.json || true
python3 "$BENCH"/report.py md "$ROWS" /dev/null "$OUT"
stop_started
stop_mock || true
echo "table: $OUT"
