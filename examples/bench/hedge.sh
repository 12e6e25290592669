#!/usr/bin/env bash
# Usage: BIN=<switchyard> N=3000 C=8 bash examples/bench/hedge.sh
# Hedging on and off against the simulator's heavy-tailed model (examples/bench/hedge.toml:
# lognormal TTFT around 100 ms with 5 % of draws 10× slower): p50, p99, p99.9, the extra upstream
# calls (counted by the simulator) and the extra cost (the cancelled attempts' estimates).
set -euo pipefail
BIN=${BIN:-target/release/switchyard}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$(mktemp -d)
export SIM_URL=http://127.0.0.1:18290 BENCH_DIR=$D
"$BIN" sim --listen 127.0.0.1:18290 --config "$ROOT/examples/bench/hedge.toml" >"$D/sim.log" 2>&1 & SIM=$!
RUST_LOG=warn "$BIN" serve --config "$ROOT/examples/bench/hedge.toml" >"$D/gw.log" 2>&1 & GW=$!
cleanup() { kill $SIM $GW 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
for _ in $(seq 50); do
  curl -fs http://127.0.0.1:18291/health >/dev/null 2>&1 && break
  sleep 0.2
done
python3 "$ROOT/examples/bench/hedge.py" plain hedged adaptive hedged_10
