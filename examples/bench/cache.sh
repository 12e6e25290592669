#!/usr/bin/env bash
# Cache hits: a deterministic request (temperature 0) repeated through the gateway is answered
# from the cache after the first; compared with the zero-latency simulator called directly.
# Loopback only; bounded by count. Prints a markdown table.
#
#   cargo build --release -p switchyard && bash examples/bench/cache.sh
#
# Env: BIN (default target/release/switchyard), LOADS ("label|oha args;..."), OUT (raw JSON dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/switchyard}
OUT=${OUT:-/tmp/switchyard-bench/cache}
SIM=127.0.0.1:18292
GW=127.0.0.1:18293
LOADS=${LOADS:-"c1|-n 5000 -c 1;c32|-n 50000 -c 32"}
mkdir -p "$OUT"
# shellcheck source=examples/bench/common.sh
source examples/bench/common.sh
command -v oha >/dev/null || { echo "oha not found: cargo install oha --version 1.16.0 --locked"; exit 1; }

rm -f "$OUT"/requests.db*
"$BIN" sim --listen "$SIM" >"$OUT/sim.log" 2>&1 & pids+=($!)
SWITCHYARD_SIM_URL="http://$SIM" SWITCHYARD_STORE_URL="sqlite://$OUT/requests.db" RUST_LOG=warn \
  "$BIN" serve --config router/data/demo.toml --listen "$GW" >"$OUT/gateway.log" 2>&1 & GW_PID=$!
pids+=($GW_PID)
wait_port "$SIM"; wait_port "$GW"

BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":16,"temperature":0}'
# The first request fills the cache; the warm-up makes every later one a hit.
run warmup direct -n 1000 -c 8; run warmup gateway -n 1000 -c 8
curl -s -D - -o /dev/null -H 'content-type: application/json' -d "$BODY" "http://$GW/v1/chat/completions" \
  | grep -i '^x-switchyard-\(cache\|overhead\)' || true

printf '| load | path | req/s | p50 ms | p99 ms | success | gateway CPU ms/req |\n|---|---|---:|---:|---:|---:|---:|\n'
IFS=';' read -r -a loads <<<"$LOADS"
for spec in "${loads[@]}"; do
  label=${spec%%|*}; args=${spec#*|}
  # shellcheck disable=SC2086
  run "$label" direct $args
  c0=$(cpu_ticks "$GW_PID")
  # shellcheck disable=SC2086
  run "$label" gateway $args
  c1=$(cpu_ticks "$GW_PID")
  python3 - "$OUT/$label-direct.json" "$OUT/$label-gateway.json" "$label" "$((c1 - c0))" "$TICK" <<'PY'
import json, sys
label, ticks, hz = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
for path, name in ((sys.argv[1], "direct (simulator)"), (sys.argv[2], "gateway, cache hit")):
    r = json.load(open(path)); s = r["summary"]; p = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {}); n = sum(codes.values())
    cpu = f"{ticks / hz * 1000 / max(n, 1):.3f}" if "gateway" in name else "-"
    print(f"| {label} | {name} | {s['requestsPerSec']:.0f} | {p['p50']*1000:.3f} | {p['p99']*1000:.3f} | {codes.get('200', 0)}/{n} | {cpu} |")
PY
done
curl -s "http://$GW/ai/cache/stats"; echo
