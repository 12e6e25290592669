#!/usr/bin/env bash
# Usage: BIN=<release switchyard> SECS=5 bash examples/bench/doors.sh      (needs wrk: apt-get install wrk)
# The front doors side by side on one gateway (demo config: four policies, SQLite request log),
# the simulator as every upstream, wrk on loopback: latency at c1, throughput at c32, and the
# gateway's CPU per request, for the same small request through each door.
set -euo pipefail
BIN=${BIN:-target/release/switchyard}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$(mktemp -d)
"$BIN" sim --listen 127.0.0.1:18190 >"$D/sim.log" 2>&1 & SIM=$!
SWITCHYARD_STORE_URL=sqlite://$D/requests.db SWITCHYARD_SIM_URL=http://127.0.0.1:18190 \
  SWITCHYARD_POLICIES=$ROOT/policies RUST_LOG=warn \
  "$BIN" serve --config "$ROOT/router/data/demo.toml" --listen 127.0.0.1:18191 >"$D/gw.log" 2>&1 & GW=$!
cleanup() { kill $SIM $GW 2>/dev/null || true; }
trap cleanup EXIT
sleep 1.5
cpu_ticks() { awk '{print $14+$15}' /proc/$GW/stat; }
run_one() { # label path conns body
  local before after out reqs
  before=$(cpu_ticks)
  out=$(BODY=$4 wrk -t$(( $3>1 ? 2 : 1 )) -c$3 -d${SECS:-5}s --latency -s "$ROOT/examples/bench/doors-post.lua" "http://127.0.0.1:18191$2")
  after=$(cpu_ticks)
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  printf '| %s | c%s | %s | %s | %s | %s | %s |\n' "$1" "$3" \
    "$(echo "$out" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$out" | awk '$1=="50%"{print $2}')" "$(echo "$out" | awk '$1=="99%"{print $2}')" \
    "$(echo "$out" | awk '/Non-2xx/{print $5}' | grep . || echo 0)" \
    "$(awk -v t=$((after-before)) -v n="$reqs" 'BEGIN{printf "%.3f ms", t*10/n}')"
}
MSG='"messages":[{"role":"user","content":"Say hello in one short sentence."}]'
declare -a DOORS=(
  "chat → gpt-4o-mini|/v1/chat/completions|{\"model\":\"gpt-4o-mini\",\"max_tokens\":16,$MSG}"
  "messages → gpt-4o-mini (translated)|/v1/messages|{\"model\":\"gpt-4o-mini\",\"max_tokens\":16,$MSG}"
  "messages → claude-3-5-haiku (native body)|/v1/messages|{\"model\":\"claude-3-5-haiku\",\"max_tokens\":16,$MSG}"
  "responses → gpt-4o-mini|/v1/responses|{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":16,\"input\":\"Say hello in one short sentence.\"}"
  "embeddings → text-embedding-3-small (cache off)|/v1/embeddings|{\"model\":\"text-embedding-3-small\",\"input\":\"Say hello in one short sentence.\",\"cache\":{\"mode\":\"off\"}}"
)
echo "| door | conns | req/s | p50 | p99 | non-2xx | gateway CPU/req |"
echo "|---|---|---|---|---|---|---|"
for d in "${DOORS[@]}"; do
  IFS='|' read -r label path body <<<"$d"
  BODY=$body wrk -t1 -c4 -d1s -s "$ROOT/examples/bench/doors-post.lua" "http://127.0.0.1:18191$path" >/dev/null
  run_one "$label" "$path" 1 "$body"
  run_one "$label" "$path" 32 "$body"
done
