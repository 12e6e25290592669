#!/usr/bin/env bash
# Usage: POSTGRES_URL=$(bash .ci/postgres.sh) BIN=<release switchyard> SECS=5 bash examples/bench/redis.sh
# Needs redis-server, wrk (apt-get install wrk) and curl.
# Added latency and CPU of Redis round trips: one gateway, local counters vs [redis], a key with a
# budget and an RPM limit (so every request reserves and settles), wrk on loopback.
set -euo pipefail
BIN=${BIN:-target/release/switchyard}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$(mktemp -d)
ADMIN=bench-admin-key-0123456789
redis-server --port 6399 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --maxmemory-policy noeviction --dir "$D" >/dev/null
"$BIN" sim --listen 127.0.0.1:18090 >"$D/sim.log" 2>&1 & SIM=$!
sleep 0.5
cleanup() { kill $SIM 2>/dev/null || true; redis-cli -p 6399 shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run_one() { # mode port conns secs
  local mode=$1 port=$2 c=$3 secs=$4 pid=$5
  local before after out reqs
  before=$(cpu_ticks $pid)
  out=$(KEY=$KEY wrk -t$(( c>1 ? 2 : 1 )) -c$c -d${secs}s --latency -s $ROOT/examples/bench/redis-post.lua http://127.0.0.1:$port/v1/chat/completions)
  after=$(cpu_ticks $pid)
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local p50 p99 rps non2xx
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
  echo "$mode c$c: $reqs req, $rps req/s, p50 $p50, p99 $p99, non-2xx ${non2xx:-0}, CPU/req $(awk -v t=$((after-before)) -v n=$reqs 'BEGIN{printf "%.3f ms", t*10/n}')"
}
start_gw() { # name port extra
  { cat $ROOT/router/data/demo.toml; echo; echo "[auth]"; echo 'mode = "keys"'; echo "$3"; } > "$D/$1.toml"
  SWITCHYARD_STORE_URL=${STORE:-sqlite://$D/$1.db} SWITCHYARD_SIM_URL=http://127.0.0.1:18090 SWITCHYARD_ADMIN_KEY=$ADMIN SWITCHYARD_POLICIES=$ROOT/policies RUST_LOG=warn \
    "$BIN" serve --config "$D/$1.toml" --listen 127.0.0.1:$2 >"$D/$1.log" 2>&1 &
  echo $!
}
key_on() {
  curl -s -X POST http://127.0.0.1:$1/admin/keys -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"bench","budget_usd":100000,"rpm":100000000,"tpm":1000000000}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
for mode in local redis; do
  extra=""
  [ $mode = redis ] && extra=$'[redis]\nurl = "redis://127.0.0.1:6399/0"\ntimeout_ms = 50'
  pid=$(start_gw $mode 18081 "$extra"); sleep 1.5
  KEY=$(key_on 18081)
  KEY=$KEY wrk -t1 -c4 -d2s -s $ROOT/examples/bench/redis-post.lua http://127.0.0.1:18081/v1/chat/completions >/dev/null
  run_one $mode 18081 1 ${SECS:-8} $pid
  run_one $mode 18081 32 ${SECS:-8} $pid
  kill $pid; wait $pid 2>/dev/null || true
done
# Two replicas against one, both on Redis, each loaded by its own wrk (c32 in all).
export STORE=${POSTGRES_URL:?set POSTGRES_URL (bash .ci/postgres.sh prints one): the two replicas share it}
p1=$(start_gw r1 18081 $'[redis]\nurl = "redis://127.0.0.1:6399/0"\ntimeout_ms = 50'); p2=$(start_gw r2 18082 $'[redis]\nurl = "redis://127.0.0.1:6399/0"\ntimeout_ms = 50'); sleep 1.5
KEY=$(key_on 18081)
curl -s -o /dev/null http://127.0.0.1:18082/v1/chat/completions -H "authorization: Bearer $KEY" -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
one=$(KEY=$KEY wrk -t2 -c32 -d${SECS:-8}s -s $ROOT/examples/bench/redis-post.lua http://127.0.0.1:18081/v1/chat/completions | awk '/Requests\/sec/{print $2}')
echo "one replica (c32): $one req/s"
KEY=$KEY wrk -t1 -c16 -d${SECS:-8}s -s $ROOT/examples/bench/redis-post.lua http://127.0.0.1:18081/v1/chat/completions > $D/a.txt &
KEY=$KEY wrk -t1 -c16 -d${SECS:-8}s -s $ROOT/examples/bench/redis-post.lua http://127.0.0.1:18082/v1/chat/completions > $D/b.txt; sleep 1
a=$(awk '/Requests\/sec/{print $2}' $D/a.txt); b=$(awk '/Requests\/sec/{print $2}' $D/b.txt)
echo "two replicas (c16 each, one key shared): $a + $b = $(awk -v a=$a -v b=$b 'BEGIN{print a+b}') req/s"
kill $p1 $p2
