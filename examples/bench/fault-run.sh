#!/usr/bin/env bash
# The routing acceptance run: the preferred (cheapest) model fails 30% of requests with HTTP 500,
# one healthy alternate at another provider. 1,000 requests through /ai/route must all succeed;
# the breaker must open and traffic shift, and close again once the fault is lifted.
# Simulated latencies are the demo's (TTFT ~220-300 ms). Loopback only, bounded.
#
#   cargo build --release -p switchyard && bash examples/bench/fault-run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/switchyard}
OUT=${OUT:-/tmp/switchyard-bench/fault-run}
N=${N:-1000}
C=${C:-8}
SIM=127.0.0.1:18390
GW=127.0.0.1:18391
mkdir -p "$OUT"
# shellcheck source=examples/bench/common.sh
source examples/bench/common.sh

"$BIN" sim --listen "$SIM" --config router/data/demo.toml >"$OUT/sim.log" 2>&1 & pids+=($!)
SWITCHYARD_SIM_URL="http://$SIM" RUST_LOG=warn "$BIN" serve --config router/data/demo.toml \
  --listen "$GW" >"$OUT/gateway.log" 2>&1 & pids+=($!)
wait_port "$SIM"; wait_port "$GW"

BODY='{"models":["gpt-4o-mini","claude-3-5-haiku"],"preferences":{"optimize":"cost"},"prompt":"Say hello in one short sentence.","max_tokens":16}'
curl -s -X POST "http://$SIM/_sim/faults" -d '{"model":"gpt-4o-mini","fault":"500","rate":0.3}' >/dev/null

# Watch gpt-4o-mini's breaker every 200 ms.
python3 - "$GW" "$OUT/breaker.tsv" <<'PY' & pids+=($!)
import json, sys, time, urllib.request
gw, out = sys.argv[1], sys.argv[2]
t0, last = time.time(), None
with open(out, "w") as f:
    while True:
        try:
            h = json.load(urllib.request.urlopen(f"http://{gw}/health/detailed", timeout=2))
            m = next(m for p in h["providers"].values() for m in p["models"] if m["model"] == "gpt-4o-mini")
            state = m["breaker"] if isinstance(m["breaker"], str) else next(iter(m["breaker"]))
            if state != last:
                f.write(f"{time.time() - t0:.1f}\t{state}\n"); f.flush(); last = state
        except Exception:
            pass
        time.sleep(0.2)
PY

timeout 600 oha --no-tui --output-format json -n "$N" -c "$C" -m POST -H 'content-type: application/json' \
  -d "$BODY" "http://$GW/ai/route" >"$OUT/run.json"
curl -s "http://$SIM/_sim/stats" >"$OUT/sim-stats-during.json"
curl -s "http://$GW/ai/performance" >"$OUT/performance.json"

# Lift the fault; keep a trickle of traffic until the breaker has closed again.
curl -s -X DELETE "http://$SIM/_sim/faults" >/dev/null
lifted=$(date +%s.%N)
closed=""
for _ in $(seq 300); do
  curl -s -o /dev/null -X POST -H 'content-type: application/json' -d "$BODY" "http://$GW/ai/route"
  state=$(curl -s "http://$GW/health/detailed" | python3 -c 'import json,sys; h=json.load(sys.stdin); m=[m for p in h["providers"].values() for m in p["models"] if m["model"]=="gpt-4o-mini"][0]; print(m["breaker"] if isinstance(m["breaker"], str) else "open")')
  if [ "$state" = closed ] && grep -q open "$OUT/breaker.tsv"; then closed=$(date +%s.%N); break; fi
  sleep 0.5
done
sleep 0.5

python3 - "$OUT" "$lifted" "${closed:-}" <<'PY'
import json, sys
out, lifted, closed = sys.argv[1], float(sys.argv[2]), sys.argv[3]
r = json.load(open(f"{out}/run.json"))
codes = r.get("statusCodeDistribution", {})
total = sum(codes.values()) + sum(r.get("errorDistribution", {}).values())
ok = codes.get("200", 0)
p = r["latencyPercentiles"]
stats = json.load(open(f"{out}/sim-stats-during.json"))["models"]
mini = stats.get("gpt-4o-mini", {}); haiku = stats.get("claude-3-5-haiku-20241022", {})
perf = json.load(open(f"{out}/performance.json"))["models"]["gpt-4o-mini"]
print(f"requests: {total}, succeeded: {ok} ({100.0 * ok / max(total, 1):.2f}%), errors: {r.get('errorDistribution', {})} codes: {codes}")
print(f"latency p50 {p['p50']*1000:.0f} ms, p90 {p['p90']*1000:.0f} ms, p99 {p['p99']*1000:.0f} ms, req/s {r['summary']['requestsPerSec']:.1f}")
print(f"upstream calls: gpt-4o-mini {mini.get('requests', 0)} (faults injected {mini.get('faults_injected', 0)}), claude-3-5-haiku {haiku.get('requests', 0)}")
print(f"gpt-4o-mini as seen by the gateway: success rate {perf.get('success_rate')}, failures {perf.get('failures_by_kind')}")
print("breaker of gpt-4o-mini (seconds since start, state):")
print(open(f"{out}/breaker.tsv").read().rstrip())
print(f"closed again {float(closed) - lifted:.1f} s after the fault was lifted" if closed else "did not close within the trickle")
PY
