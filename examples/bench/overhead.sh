#!/usr/bin/env bash
# Gateway overhead: the same oha loads against the simulator directly and through the gateway
# (routing on: every request is counted, scored, executed and recorded). Loopback only; every
# load is bounded in count or time. Prints a markdown table.
#
#   cargo build --release -p switchyard && bash examples/bench/overhead.sh
#
# The demo config runs the four shipped policies on every request (build them first:
# bash policies/build.sh); SWITCHYARD_POLICIES=/nonexistent measures without them.
# Env: BIN (default target/release/switchyard), LOADS ("label|oha args;..."), OUT (raw JSON dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/switchyard}
OUT=${OUT:-/tmp/switchyard-bench/overhead}
SIM=127.0.0.1:18290
GW=127.0.0.1:18291
LOADS=${LOADS:-"c1|-n 2000 -c 1;c32|-n 20000 -c 32;q2000|-z 10s -q 2000 -c 128 --latency-correction"}
mkdir -p "$OUT"
# shellcheck source=examples/bench/common.sh
source examples/bench/common.sh
command -v oha >/dev/null || { echo "oha not found: cargo install oha --version 1.16.0 --locked"; exit 1; }



# Every request is logged to a fresh SQLite file (the default store), through the batched writer.
STORE=${STORE:-sqlite://$OUT/requests.db}
rm -f "$OUT"/requests.db*
"$BIN" sim --listen "$SIM" >"$OUT/sim.log" 2>&1 & pids+=($!)
SWITCHYARD_SIM_URL="http://$SIM" SWITCHYARD_STORE_URL="$STORE" RUST_LOG=warn,switchyard::state=info \
  "$BIN" serve --config router/data/demo.toml --listen "$GW" >"$OUT/gateway.log" 2>&1 & GW_PID=$!
pids+=($GW_PID)
wait_port "$SIM"; wait_port "$GW"

# Not deterministic (temperature 0.7), so the cache stays out of it: every request takes the
# whole path. examples/bench/cache.sh measures cache hits.
BODY=${BODY:-'{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16,"temperature":0.7}'}

# Warm up both paths (connections, tokenizer tables, health estimates).
run warmup direct -n 2000 -c 8; run warmup gateway -n 2000 -c 8

printf '| load | path | req/s | p50 ms | p99 ms | Δp50 ms | Δp99 ms | success | gateway CPU ms/req | gateway RSS MiB |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
IFS=';' read -r -a loads <<<"$LOADS"
for spec in "${loads[@]}"; do
  label=${spec%%|*}; args=${spec#*|}
  # shellcheck disable=SC2086
  run "$label" direct $args
  c0=$(cpu_ticks "$GW_PID")
  # shellcheck disable=SC2086
  run "$label" gateway $args
  c1=$(cpu_ticks "$GW_PID")
  python3 - "$OUT/$label-direct.json" "$OUT/$label-gateway.json" "$label" "$((c1 - c0))" "$TICK" "$(rss_kb "$GW_PID")" <<'PY'
import json, sys
d, g = (json.load(open(p)) for p in sys.argv[1:3])
label, ticks, hz, rss = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def row(r):
    s = r["summary"]; p = r["latencyPercentiles"]
    n = sum(r.get("statusCodeDistribution", {}).values())
    ok = r.get("statusCodeDistribution", {}).get("200", 0)
    return s["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000, ok, n
dr, gr = row(d), row(g)
cpu = ticks / hz * 1000 / max(gr[4], 1)
print(f"| {label} | direct | {dr[0]:.0f} | {dr[1]:.3f} | {dr[2]:.3f} | - | - | {dr[3]}/{dr[4]} | - | - |")
print(f"| {label} | gateway | {gr[0]:.0f} | {gr[1]:.3f} | {gr[2]:.3f} | {gr[1]-dr[1]:+.3f} | {gr[2]-dr[2]:+.3f} | {gr[3]}/{gr[4]} | {cpu:.3f} | {rss/1024:.0f} |")
PY
done

# Every answered request is one log row: stop the gateway (SIGTERM flushes the writer) and count.
kill -TERM "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
grep 'request log flushed' "$OUT/gateway.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1
python3 - "$OUT" "$STORE" <<'PY'
import glob, json, sqlite3, sys
out, store = sys.argv[1], sys.argv[2]
sent = sum(sum(json.load(open(f)).get("statusCodeDistribution", {}).values())
           for f in glob.glob(f"{out}/*-gateway.json"))
if store.startswith("sqlite://"):
    rows = sqlite3.connect(store[len("sqlite://"):]).execute("select count(*) from requests").fetchone()[0]
    print(f"\nrequest log: {rows} rows for {sent} answered requests ({sent - rows} missing)")
PY
