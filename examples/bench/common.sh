# shellcheck shell=bash
# Shared by the benchmark scripts: start processes we own, wait for their ports, stop them on exit.
# Loopback only.

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# wait_port HOST:PORT — up to 10 s for something to accept connections there.
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on $1"
  exit 1
}

# Gateway process figures: CPU ticks (user + system) and resident memory.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)

# run LABEL direct|gateway OHA-ARGS… — POST $BODY to the simulator at $SIM or the gateway at $GW;
# oha's JSON report goes to $OUT/LABEL-TARGET.json.
run() {
  local label=$1 target=$2; shift 2
  local url=http://$SIM/openai/v1/chat/completions
  [ "$target" = gateway ] && url=http://$GW/v1/chat/completions
  timeout 150 oha --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -H 'authorization: Bearer sim' -d "$BODY" "$@" "$url" >"$OUT/$label-$target.json"
}
