#!/usr/bin/env bash
# The performance gate (issue 17): the shared peers' load harness (../shared/bench: nginx mock on
# 127.0.0.1:18080, oha, lib.sh's measure_gateway) run on Switchyard in ONE run, in four
# configurations, plus nginx direct, and a markdown table per configuration with Δp50/Δp99
# against nginx at the same load (absolute and as a ratio), CPU per request and peak RSS.
#
#   bash policies/build.sh && bash examples/bench/gate.sh   # ~5 min on a quiet machine, more if it waits
#   CONFIGS="bare everything" LOADS_SPEC="c32|-n 5000 -c 32" bash examples/bench/gate.sh
#   The 10-minute soak (RSS every 0.5 s during the load, per minute by gate/soak.py):
#   CONFIGS=everything LOADS_SPEC="soak|-z 600s -q 1000 -c 32 --latency-correction" LOAD_TIMEOUT_S=700 \
#     BASELINE_START=0 BASELINE_END=0 NOISY_RETRIES=0 bash examples/bench/gate.sh
#   python3 examples/bench/gate/soak.py ~/.cache/gateway-bench/runs/gate-*/everything-soak_.rss
#
# Configurations (examples/bench/gate/*.toml), in this order:
#   bare        one OpenAI model at the mock; no policies, no store, no keys, no cache
#   policies    + the four shipped WASM policies (policies/, as router/data/demo.toml declares them)
#   everything  + the SQLite request log + keys (admin key, one virtual key made with POST /admin/keys)
#   cache-hit   everything, with the response cache on: every request after the first is a hit
# Each is started, checked, warmed up (WARMUP_N requests, default 1,000), measured with the loads below and
# stopped before the next. nginx direct is measured first and again at the end (`nginx-end`,
# drift). bare also gets an oha stream run at c1 and a TTFB comparison (gate/ttfb.py).
# After `everything` and `cache-hit`: the gateway's dropped-row counter (/metrics) and the
# SQLite row count against the requests sent; after `cache-hit`: the cache hits (/metrics).
#
# Needs: nginx, oha 1.16 (cargo install oha --version 1.16.0 --locked), python3, curl, a
# release binary (BIN), the policies built. Env:
#   BIN          gateway binary (default /work/target-rel/release/switchyard)
#   CONFIGS      subset of "bare policies everything cache-hit", in that order
#   LOADS_SPEC   "label|oha args;..." (default c1, c32, q2000, c128, c256 as in issue 17)
#   OUT_MD       the table (default /tmp/switchyard-gate.md); raw oha JSON and logs go to
#                $BENCH_HOME/runs/gate-<time>/ (BENCH_HOME default ~/.cache/gateway-bench)
#   TTFB_N       streamed requests per target for the TTFB comparison (default 200)
#   BASELINE_END 0 skips the nginx run at the end; BASELINE_START 0 the one at the start (the table
#                then has no Δ columns: for a soak, whose figure is the gateway's RSS over time)
#   GW_PORT      gateway port (default 18110); GW_RUST_LOG (default warn)
#   MAX_TOTAL_S  time budget (default 3000): once spent, remaining loads and configurations are
#                skipped, so the run ends within about MAX_TOTAL_S + one load's worst case
#                ((NOISY_RETRIES + 1) × (QUIET_MAX_S + LOAD_TIMEOUT_S)).
#   lib.sh's: QUIET_MAX_S, QUIET_PCT, NOISY_PCT, NOISY_RETRIES, LOAD_TIMEOUT_S, WARMUP_N.
# Loopback only. Every process it starts (mock, gateways) is stopped on exit, by process group.
# Ctrl-C takes effect when the current oha run ends (lib.sh runs oha in its own process group,
# under `timeout`), so within LOAD_TIMEOUT_S.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GATE=$ROOT/examples/bench/gate
BENCH=${BENCH:-$(cd "$ROOT/.." && pwd)/shared/bench}
BIN=${BIN:-/work/target-rel/release/switchyard}
OUT_MD=${OUT_MD:-/tmp/switchyard-gate.md}
CONFIGS=${CONFIGS:-"bare policies everything cache-hit"}
LOADS_SPEC=${LOADS_SPEC:-"c1|-n 1000 -c 1;c32|-n 5000 -c 32;q2000|-z 10s -w -q 2000 -c 128 --latency-correction;c128|-n 5000 -c 128;c256|-n 5000 -c 256"}
STREAM_LOAD=${STREAM_LOAD:-"stream c1|-n 1000 -c 1"}
TTFB_N=${TTFB_N:-200}
BASELINE_END=${BASELINE_END:-1}
BASELINE_START=${BASELINE_START:-1}
GW_PORT=${GW_PORT:-18110}
GW_RUST_LOG=${GW_RUST_LOG:-warn}
MAX_TOTAL_S=${MAX_TOTAL_S:-3000}
RUN_DATE=${RUN_DATE:-gate-$(date -u +%Y%m%d-%H%M%S)}

die() { echo "gate.sh: $*" >&2; exit 1; }

# Inputs are checked before anything starts.
if ! [[ $GW_PORT =~ ^[0-9]{4,5}$ ]] || (( GW_PORT < 1024 || GW_PORT > 65535 )); then die "GW_PORT must be a port number ≥ 1024"; fi
if ! [[ $TTFB_N =~ ^[0-9]{1,5}$ ]] || (( TTFB_N < 1 || TTFB_N > 10000 )); then die "TTFB_N must be 1..10000"; fi
[[ $MAX_TOTAL_S =~ ^[0-9]+$ ]] || die "MAX_TOTAL_S must be a number of seconds"
[[ $RUN_DATE =~ ^[A-Za-z0-9._-]+$ ]] || die "RUN_DATE may hold only letters, digits, . _ -"
[[ $GW_RUST_LOG =~ ^[A-Za-z0-9_:=,.-]+$ ]] || die "GW_RUST_LOG: an env-filter like warn or warn,switchyard=info"
ALL_CONFIGS=(bare policies everything cache-hit)
RUN_CONFIGS=()
for c in "${ALL_CONFIGS[@]}"; do
  [[ " $CONFIGS " == *" $c "* ]] && RUN_CONFIGS+=("$c")
done
for c in $CONFIGS; do
  [[ " ${ALL_CONFIGS[*]} " == *" $c "* ]] || die "unknown configuration '$c' (known: ${ALL_CONFIGS[*]})"
done
(( ${#RUN_CONFIGS[@]} > 0 )) || die "CONFIGS names no configuration"
[[ -f $BENCH/lib.sh && -f $BENCH/body.json ]] || die "the shared harness is not at $BENCH (set BENCH)"

export LOADS_SPEC STREAM_LOAD MAX_TOTAL_S RUN_DATE
unset RUN_DIR   # always $BENCH_HOME/runs/$RUN_DATE: this script empties it
# shellcheck source=/dev/null
source "$BENCH/lib.sh"   # sets LOADS from LOADS_SPEC, RUN_DIR, ROWS, the oha/mock/sampling helpers
: "${ROWS:?lib.sh sets ROWS}" "${RUN_DIR:?lib.sh sets RUN_DIR}"

[[ -x $BIN ]] || die "no gateway binary at $BIN (cargo build --release -p switchyard, or set BIN)"
[[ -x $OHA ]] || die "oha not found (cargo install oha --version 1.16.0 --locked)"
command -v nginx >/dev/null || die "nginx not found (apt-get install -y nginx)"
command -v curl >/dev/null || die "curl not found"
if [[ " ${RUN_CONFIGS[*]} " != " bare " ]]; then   # every other configuration runs the policies
  for m in "$ROOT"/policies/*/policy.toml; do
    w=$(sed -n 's/^wasm = "\(.*\)"$/\1/p' "$m" | head -n 1)
    [[ -n $w && -f $(dirname "$m")/$w ]] || die "$(dirname "$m")/$w is missing: bash policies/build.sh"
  done
fi
port_busy "$GW_PORT" && die "port $GW_PORT is already in use (set GW_PORT)"

rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"; : >"$ROWS"
FACTS=$RUN_DIR/facts.tsv CHECKS=$RUN_DIR/checks.md
: >"$FACTS"; : >"$CHECKS"
trap 'stop_started; stop_mock' EXIT
trap 'exit 130' INT TERM

GW="http://127.0.0.1:$GW_PORT"
BODY=$BENCH/body.json
STREAM_BODY_FILE=$RUN_DIR/stream-body.json
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["stream"]=True; print(json.dumps(d))' \
  "$BODY" >"$STREAM_BODY_FILE"
GW_STREAM_BODY_FILE=$RUN_DIR/gw-stream-body.json   # the model bare.toml points at the SSE mock
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["model"]="gpt-4o-mini-stream"; print(json.dumps(d))' \
  "$STREAM_BODY_FILE" >"$GW_STREAM_BODY_FILE"

fact() { printf '%s\t%s\n' "$1" "$2" >>"$FACTS"; }
check() { printf '%s\n' "$*" >>"$CHECKS"; log "check: $*"; }

# metric NAME: the sum of a counter's samples (every label set) on the gateway's /metrics
metric() {
  { curl -fsS -m 5 "${AUTH_ADMIN[@]}" "$GW/metrics" 2>/dev/null || true; } \
    | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $NF; f = 1} END {if (f) printf "%.0f\n", s; else print "-"}'
}

# minus A B: A − B, or "-" when either is not a number
minus() { [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && echo $(( $1 - $2 )) || echo -; }
# db_rows DB: rows in the request log (sqlite3, else python3's sqlite3 module)
db_rows() {
  if command -v sqlite3 >/dev/null; then
    sqlite3 "$1" 'select count(*) from requests' 2>&1
  else
    "$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from requests").fetchone()[0])' "$1" 2>&1
  fi
}
# db_statuses DB: "status×rows, ..." of the request log
db_statuses() {
  "$PY" -c 'import sqlite3,sys
rows = sqlite3.connect(sys.argv[1]).execute("select status, count(*) from requests group by status order by status")
print(", ".join("%s×%s" % r for r in rows))' "$1" 2>&1 || true
}
# sent NAME: requests the harness sent to the chat endpoint for NAME: its functional check,
# the warm-up, every measured load (rows, with their requests column) and every load that was
# set aside as disturbed and run again.
sent() {
  { cat "$ROWS"; cat "$RUN_DIR/disturbed.tsv" 2>/dev/null || true; } \
    | awk -F'\t' -v n="$1" -v w="$WARMUP_N" '$1 == n && $11 ~ /^[0-9]+$/ {s += $11} END {print s + 1 + w}'
}

# start_gateway NAME [VAR=value...]: start the gateway with gate/NAME.toml in a clean
# environment (only what is given here), in its own process group; wait until it is ready.
start_gateway() {
  local name=$1; shift
  local work=$RUN_DIR/$name
  mkdir -p "$work"
  local envs=(PATH="$PATH" HOME="$HOME" RUST_LOG="$GW_RUST_LOG"
              SWITCHYARD_POLICIES="$ROOT/policies" SWITCHYARD_GATE_WORK="$work" "$@")
  env -i "${envs[@]}" "$BIN" check --config "$GATE/$name.toml" >"$work/check.txt" 2>&1 \
    || { log "$name: config check failed: $(head -5 "$work/check.txt")"; return 1; }
  cd "$work"   # anything the gateway writes relative to its folder stays in the run folder
  start_bg "gw-$name" env -i "${envs[@]}" "$BIN" serve --config "$GATE/$name.toml" --listen "127.0.0.1:$GW_PORT"
  cd "$ROOT"
  GW_PGID=$BG_PGID
  local deadline=$(( $(date +%s) + 60 ))
  until [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$GW/health/ready") == 200 ]]; do
    if ! kill -0 -- "-$GW_PGID" 2>/dev/null || (( $(date +%s) > deadline )); then
      log "$name: gateway not ready (see $RUN_DIR/gw-$name.log)"; tail -5 "$RUN_DIR/gw-$name.log" >&2
      return 1
    fi
    sleep 0.5
  done
  check "$name: gateway ready (pgid $GW_PGID), idle RSS $(( $(group_rss_kb "$GW_PGID") / 1024 )) MiB"
}

# wait_policies NAME: until /ai/policies shows the four shipped policies active (they are
# compiled and self-tested after start); prints their status to the checks.
wait_policies() {
  local deadline=$(( $(date +%s) + 120 )) out=""
  while (( $(date +%s) <= deadline )); do
    out=$(curl -fsS -m 5 "${AUTH_ADMIN[@]}" "$GW/ai/policies" 2>/dev/null \
      | "$PY" -c 'import json,sys
ps = json.load(sys.stdin).get("policies", [])
print(sum(1 for p in ps if p.get("status") == "active"), " ".join("%s=%s" % (p.get("name"), p.get("status")) for p in ps))' 2>/dev/null) || out=""
    [[ ${out%% *} == 4 ]] && { log "$1: policies active: ${out#* }"; return 0; }
    sleep 1
  done
  log "$1: the four policies did not become active: ${out:-no answer from /ai/policies}"
  return 1
}

# policy_evals: each policy's evaluations, errors, busy and p50/p99 (proof that they ran)
policy_evals() {
  { curl -fsS -m 5 "${AUTH_ADMIN[@]}" "$GW/ai/policies" 2>/dev/null || true; } | "$PY" -c 'import json,sys
ps = json.load(sys.stdin).get("policies", [])
print("; ".join("%s: %s evaluations, %s errors, %s busy, p50/p99 %s/%s us" % tuple(p.get(k) for k in
      ("name", "evaluations", "errors", "busy", "p50_us", "p99_us")) for p in ps) or "none")' 2>/dev/null || echo "unknown"
}

# make_key: a virtual key through the admin API (budget and limits far above what the run uses,
# so the reservation and rate-limit paths run without refusing anything); sets VKEY.
make_key() {
  VKEY=$(curl -fsS -m 10 -X POST "$GW/admin/keys" "${AUTH_ADMIN[@]}" -H 'content-type: application/json' \
      -d '{"name":"gate","budget_usd":1000,"budget_period":"month","rpm":1000000,"tpm":1000000000}' \
    | "$PY" -c 'import json,sys; k=json.load(sys.stdin).get("key",""); print(k if k.startswith("sk-") else "")') || VKEY=""
  [[ -n $VKEY ]] || { log "could not make a virtual key (POST /admin/keys)"; return 1; }
}

# log_rows_check NAME DB [EXTRA]: after the loads, the gateway's log-row counters and (once it
# has stopped and flushed) the SQLite rows written since LOG_BASE (the rows there before the
# loads: the no-key check's), against the requests sent (plus EXTRA sent by this script).
log_rows_check() {
  local name=$1 db=$2 dropped fates rows n extra=${3:-0}
  sleep 1
  dropped=$(metric switchyard_log_rows_dropped_total)
  [[ $dropped == - ]] && dropped=$(metric switchyard_log_rows_dropped)
  fates=$({ curl -fsS -m 5 "${AUTH_ADMIN[@]}" "$GW/metrics" 2>/dev/null || true; } \
    | awk '/^switchyard_log_rows_total[{]/ {printf "%s%s", sep, $0; sep = ", "}')
  stop_pgid "$GW_PGID"   # SIGTERM: the writer flushes what is queued before the process exits
  n=$(( $(sent "$name") + extra ))
  rows=$(db_rows "$db") || rows="error: $rows"
  local got; got=$(minus "$rows" "$LOG_BASE")
  fact "$name.sent" "$n"; fact "$name.rows" "$got"; fact "$name.dropped" "$dropped"
  check "$name: request log: switchyard_log_rows_dropped_total = $dropped; ${fates:-no switchyard_log_rows_total on /metrics}"
  local statuses; statuses=$(db_statuses "$db")
  if [[ $got == "$n" ]]; then
    check "$name: request log: $got rows written during the run ($rows in all, $LOG_BASE before the loads) = $n requests sent: OK (rows by status: $statuses)"
  else
    # A load cut by LOAD_TIMEOUT_S (or Ctrl-C) leaves requests in flight that oha does not
    # count and the gateway logs as cancelled (499).
    check "$name: request log: $got rows written during the run ($rows in all, $LOG_BASE before the loads), $n requests sent: MISMATCH (rows by status: $statuses)"
  fi
}

run_baseline() {
  log "== $1: nginx direct"
  STREAM_BASE_URL=$MOCK_STREAM_URL STREAM_BODY=@$STREAM_BODY_FILE \
    measure_gateway "$1" "$MOCK_URL" "@$BODY" "$MOCK_PGID" || check "$1: functional check failed"
}

run_config() {
  local name=$1 db="" envs=() hdrs=() extra=0
  AUTH_ADMIN=() LOG_BASE=0
  if [[ $name == everything || $name == cache-hit ]]; then
    db=$RUN_DIR/$name/requests.db
    local admin; admin="gate-admin-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
    envs=(SWITCHYARD_STORE_URL="sqlite://$db" SWITCHYARD_ADMIN_KEY="$admin")
    AUTH_ADMIN=(-H "authorization: Bearer $admin")
  fi
  log "== $name"
  start_gateway "$name" "${envs[@]}" || { check "$name: did not start (see $RUN_DIR/gw-$name.log)"; return 0; }
  if [[ $name != bare ]]; then
    wait_policies "$name" || { check "$name: policies not active; not measured"; stop_pgid "$GW_PGID"; return 0; }
  fi
  if [[ -n $db ]]; then
    make_key || { check "$name: no virtual key; not measured"; stop_pgid "$GW_PGID"; return 0; }
    hdrs=("authorization: Bearer $VKEY")
    # keys mode really is on: the same request without the key is refused.
    local code; code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST "$GW/v1/chat/completions" \
      -H 'content-type: application/json' --data-binary @"$BODY") || code=000
    check "$name: a request without the virtual key gets HTTP $code (401 expected)"
    sleep 1   # past [store] flush_ms, so a row it may leave is counted before the loads
    LOG_BASE=$(db_rows "$db") || LOG_BASE=0
    [[ $LOG_BASE =~ ^[0-9]+$ ]] || LOG_BASE=0
  fi
  local h0=0 m0=0
  if [[ $name == cache-hit ]]; then h0=$(metric switchyard_cache_hits_total); m0=$(metric switchyard_cache_misses_total); fi
  if [[ $name == bare ]]; then
    STREAM_BASE_URL=$GW/v1 STREAM_BODY=@$GW_STREAM_BODY_FILE \
      measure_gateway "$name" "$GW/v1" "@$BODY" "$GW_PGID" "${hdrs[@]}" || check "$name: functional check failed"
  else
    measure_gateway "$name" "$GW/v1" "@$BODY" "$GW_PGID" "${hdrs[@]}" || check "$name: functional check failed"
  fi
  if [[ $name == bare ]] && ! over_budget; then
    log "$name: TTFB of streamed answers, $TTFB_N each, gateway and nginx alternating"
    local t
    if t=$(timeout 300 "$PY" "$GATE/ttfb.py" "$TTFB_N" "$GW/v1/chat/completions" "$GW_STREAM_BODY_FILE" \
             "$MOCK_STREAM_URL/chat/completions" "$STREAM_BODY_FILE"); then
      printf '%s\n' "$t" >"$RUN_DIR/ttfb.json"
      "$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print("ttfb.n", d["gateway"]["n"], sep="\t")
for side in ("gateway", "direct"):
    for k in ("p50", "p90", "p99"):
        print(f"ttfb.{side}_{k}_ms", d[side][f"{k}_ms"], sep="\t")
    print(f"ttfb.{side}_errors", sum(d[side]["errors"].values()), sep="\t")
g, n = d["gateway"]["p50_ms"], d["direct"]["p50_ms"]
if g is not None and n is not None:
    print("ttfb.delta_p50_ms", round(g - n, 4), sep="\t")' "$RUN_DIR/ttfb.json" >>"$FACTS"
      check "bare: TTFB p50 gateway $(awk -F'\t' '$1=="ttfb.gateway_p50_ms"{print $2}' "$FACTS") ms, nginx $(awk -F'\t' '$1=="ttfb.direct_p50_ms"{print $2}' "$FACTS") ms"
    else
      check "bare: the TTFB measurement failed"
    fi
  fi
  if [[ $name != bare ]]; then check "$name: policy stats: $(policy_evals)"; fi
  if [[ $name == cache-hit ]]; then
    local hdr; hdr=$({ curl -s -m 5 -D - -o /dev/null -X POST "$GW/v1/chat/completions" \
        -H 'content-type: application/json' -H "authorization: Bearer $VKEY" --data-binary @"$BODY" || true; } \
      | tr -d '\r' | grep -i '^x-switchyard-cache:') || hdr="no x-switchyard-cache header"
    extra=1
    local h1 m1 n
    h1=$(metric switchyard_cache_hits_total); m1=$(metric switchyard_cache_misses_total)
    n=$(( $(sent "$name") + extra ))
    fact cache-hit.hits "$(minus "$h1" "$h0")"; fact cache-hit.misses "$(minus "$m1" "$m0")"
    check "cache-hit: one more request answers with '$hdr'; since the gateway started: cache hits $(minus "$h1" "$h0"), misses $(minus "$m1" "$m0") for $n requests sent (expected: 1 miss, the rest hits)"
  fi
  if [[ -n $db ]]; then
    log_rows_check "$name" "$db" "$extra"
  else
    stop_pgid "$GW_PGID"
  fi
}

log "gate: binary $BIN; configurations: ${RUN_CONFIGS[*]}; loads: ${LOADS[*]}; raw results in $RUN_DIR"
start_mock || die "the nginx mock did not start"
if [[ $BASELINE_START == 1 ]]; then run_baseline nginx; fi
AUTH_ADMIN=()
for c in "${RUN_CONFIGS[@]}"; do
  if over_budget; then check "time budget ($MAX_TOTAL_S s) spent before $c: not measured"; break; fi
  # lib.sh is written for `set -u` without `-e`; so is run_config (every step checks itself).
  run_config "$c" || check "$c: stopped early (see the log)"
done
if [[ $BASELINE_END == 1 ]] && ! over_budget; then run_baseline nginx-end; fi

# ---- report -------------------------------------------------------------------------------
HEADER=$RUN_DIR/header.md
{
  echo "# Switchyard performance gate ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "\`bash examples/bench/gate.sh\` in $(elapsed_s) s, one run: nginx direct, then each configuration"
  echo "(\`examples/bench/gate/*.toml\`), then nginx again (\`nginx-end\`, drift). Binary \`$BIN\`"
  echo "($(stat -c '%y' "$BIN" | cut -d. -f1)); $(nproc) cores, shared by oha, nginx (1 worker) and the gateway;"
  echo "oha $("$OHA" --version 2>/dev/null | head -1 | awk '{print $NF}'), $(nginx -v 2>&1 | sed 's/.*: //'). Body: the harness's \`body.json\`"
  echo "(temperature 0). Loads: \`${LOADS_SPEC}\`; each after a $WARMUP_N-request warm-up (c32)."
  echo "Δ = Switchyard − nginx at the same load, in ms; ÷ nginx = Switchyard's latency over nginx's."
  echo "CPU = gateway CPU time per request; RSS = peak resident memory of the gateway during the load."
  echo "req/s ÷ peak (c256 only) = c256 throughput over the configuration's best load. Rows marked *"
  echo "ran while other work used > ${NOISY_PCT:-10}% of the machine (other CPU %); calib = ms for a fixed CPU"
  echo "task before the run (compare rows with similar calib). Gateway logging: RUST_LOG=$GW_RUST_LOG."
  echo "Raw oha JSON and logs: \`$RUN_DIR\`."
} >"$HEADER"
"$PY" "$GATE/table.py" "$RUN_DIR" "$HEADER" "$OUT_MD" "${RUN_CONFIGS[@]}"
{
  echo
  echo "## Checks"
  echo
  sed 's/^/- /' "$CHECKS"
} >>"$OUT_MD"
cat "$OUT_MD"
log "table written to $OUT_MD (raw results in $RUN_DIR)"
