#!/usr/bin/env bash
# Rows lost on SIGTERM under load: oha drives the gateway (every request logged to SQLite or
# the Postgres at STORE), the gateway gets SIGTERM mid-load, and the rows in the store are
# compared with the answers oha received. Loopback only; bounded in time.
#
#   cargo build --release -p switchyard && bash examples/bench/sigterm.sh
#   STORE=postgres://switchyard:switchyard@127.0.0.1:5432/switchyard_test bash examples/bench/sigterm.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/switchyard}
OUT=${OUT:-/tmp/switchyard-bench/sigterm}
SIM=127.0.0.1:18294
GW=127.0.0.1:18295
mkdir -p "$OUT"
rm -f "$OUT"/requests.db*
STORE=${STORE:-sqlite://$OUT/requests.db}
# shellcheck source=examples/bench/common.sh
source examples/bench/common.sh
"$BIN" sim --listen "$SIM" >"$OUT/sim.log" 2>&1 & pids+=($!)
SWITCHYARD_SIM_URL="http://$SIM" SWITCHYARD_STORE_URL="$STORE" RUST_LOG=info \
  "$BIN" serve --config router/data/demo.toml --listen "$GW" >"$OUT/gateway.log" 2>&1 & GW_PID=$!
wait_port "$SIM"; wait_port "$GW"
# Rows of this run: those stamped after it started.
START_MS=$(($(date +%s%N) / 1000000))
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"temperature":0.7}'
oha --no-tui --output-format json -z 6s -c 64 -m POST -H 'content-type: application/json' \
  -d "$BODY" "http://$GW/v1/chat/completions" >"$OUT/load.json" 2>/dev/null &
LOAD=$!
sleep 3
kill -TERM "$GW_PID"
T0=$(date +%s%N)
wait "$GW_PID" || true
T1=$(date +%s%N)
wait "$LOAD" || true
grep -o '"request log flushed".*' "$OUT/gateway.log" | head -1 || grep 'request log flushed' "$OUT/gateway.log" | tail -1
python3 - "$OUT/load.json" "$STORE" "$START_MS" "$(( (T1 - T0) / 1000000 ))" <<'PY'
import json, sys
load, store, start_ms, stop_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
codes = json.load(open(load)).get("statusCodeDistribution", {})
answered = sum(codes.values())
if store.startswith("sqlite://"):
    import sqlite3
    rows = sqlite3.connect(store[len("sqlite://"):]).execute(
        "select count(*) from requests where ts_ms >= ?", (start_ms,)).fetchone()[0]
else:
    import subprocess
    rows = int(subprocess.check_output(["psql", store, "-tAc",
        f"select count(*) from requests where ts_ms >= {start_ms}"]).strip())
print(f"answered {answered} ({codes}), rows {rows}, lost {answered - rows}, "
      f"SIGTERM to exit {stop_ms} ms")
PY
