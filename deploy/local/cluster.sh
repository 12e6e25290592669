#!/usr/bin/env bash
# A local Switchyard cluster, every part a native process on 127.0.0.1:
#
#   HAProxy :8080 (roundrobin, health check GET /health/ready)
#     ├── switchyard serve :8081 ─┐
#     └── switchyard serve :8082 ─┼── switchyard sim :8090   (simulated OpenAI/Anthropic/Gemini/Ollama)
#                                 ├── redis-server :6390     (counters: noeviction, appendonly)
#                                 ├── redis-server :6391     (L2 response cache: 64mb allkeys-lru, no persistence)
#                                 └── Postgres               (request log, keys, spend ledger)
#
# Usage:
#   deploy/local/cluster.sh start [N]     start (or resize to) N replicas, default 2; waits until ready
#   deploy/local/cluster.sh status        what runs, on which port, and whether it is ready
#   deploy/local/cluster.sh stop [--clean]  stop every process it started (--clean: remove the state folder)
#
# Running `start` twice is safe: what already runs is kept, what is missing is started, and
# replicas beyond N are stopped. Postgres is not stopped by `stop` (it is a system service, or
# yours).
#
# Environment (all optional):
#   SWITCHYARD_BIN                   the switchyard binary (default: the newest of target/release
#                                    and target/debug)
#   SWITCHYARD_CLUSTER_DIR           state folder: pid files, logs, Redis data, generated HAProxy
#                                    config (default deploy/local/.cluster)
#   SWITCHYARD_CLUSTER_POSTGRES_URL  postgres://… to use; without it, .ci/postgres.sh (root) starts
#                                    a local server and gives its URL
#   SWITCHYARD_CLUSTER_CONFIG        the replicas' config (default deploy/local/switchyard.toml)
#   SWITCHYARD_CLUSTER_SIM_CONFIG    config whose [sim] table sets the simulator's latencies
#                                    (default router/data/demo.toml; empty: no latency at all)
#   SWITCHYARD_CLUSTER_LB_PORT       HAProxy (8080)
#   SWITCHYARD_CLUSTER_REPLICA_PORT  first replica (8081; replica i listens on 8080+i)
#   SWITCHYARD_CLUSTER_REPLICA_PORTS space-separated ports, one per replica (instead of the above)
#   SWITCHYARD_CLUSTER_SIM_PORT      simulator (8090)
#   SWITCHYARD_CLUSTER_REDIS_PORT    counters Redis (6390)
#   SWITCHYARD_CLUSTER_REDIS_CACHE_PORT  cache Redis (6391)
#   SWITCHYARD_REDIS_SERVER          the redis-server binary (default: redis-server on PATH, as
#                                    .ci/redis.sh prints)
#   SWITCHYARD_ADMIN_KEY             passed to the replicas: with it they run in auth mode `keys`
#   SWITCHYARD_REDIS_ON_FAILURE      "local" (default) or "closed", read by switchyard.toml
#   SWITCHYARD_POLICIES              the policy folder (default: the repo's policies/ when
#                                    policies/build.sh has built them; else none)
#   SWITCHYARD_CLUSTER_LOG_FORMAT    text (default) or json, for the replicas' and sim's logs
#   SWITCHYARD_CLUSTER_READY_TIMEOUT_S  how long a replica may take to become ready (60)
#   RUST_LOG                         the replicas' log filter (default info)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

STATE=${SWITCHYARD_CLUSTER_DIR:-$HERE/.cluster}
CONFIG=${SWITCHYARD_CLUSTER_CONFIG:-$HERE/switchyard.toml}
SIM_CONFIG=${SWITCHYARD_CLUSTER_SIM_CONFIG-$ROOT/router/data/demo.toml}
LB_PORT=${SWITCHYARD_CLUSTER_LB_PORT:-8080}
REPLICA_PORT=${SWITCHYARD_CLUSTER_REPLICA_PORT:-8081}
SIM_PORT=${SWITCHYARD_CLUSTER_SIM_PORT:-8090}
REDIS_PORT=${SWITCHYARD_CLUSTER_REDIS_PORT:-6390}
CACHE_PORT=${SWITCHYARD_CLUSTER_REDIS_CACHE_PORT:-6391}
HOST=127.0.0.1
MARKER=.switchyard-cluster
# How long a replica may take to become ready, and to drain on stop (server.drain_ms is 10 s).
READY_TIMEOUT_S=${SWITCHYARD_CLUSTER_READY_TIMEOUT_S:-60}
STOP_TIMEOUT_S=20
LOG_FORMAT=${SWITCHYARD_CLUSTER_LOG_FORMAT:-text}
REDIS_SERVER=${SWITCHYARD_REDIS_SERVER:-redis-server}

RUN=$STATE/run   # NAME.proc: "PID STARTTIME" of each process started here
LOGS=$STATE/logs

log() { echo "cluster.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- processes ------------------------------------------------------------------------------

# The kernel's start time of PID (field 22 of /proc/PID/stat), or nothing: with the PID it
# names one process, so a PID reused by an unrelated process is never taken for ours.
starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  stat=${stat##*) }
  # shellcheck disable=SC2086 # word splitting into fields is the point
  set -- $stat
  echo "${20}"
}

record() { # NAME PID
  local t
  t=$(starttime "$2")
  [ -n "$t" ] || return 1
  echo "$2 $t" >"$RUN/$1.proc"
}

# The PID of NAME if the process recorded for it still runs, else nothing (and a stale record
# is removed).
running_pid() {
  local f=$RUN/$1.proc pid t
  [ -f "$f" ] || return 0
  read -r pid t <"$f" || true
  if [ -n "${pid:-}" ] && [ -n "${t:-}" ] && [ "$(starttime "$pid")" = "$t" ] &&
    ! grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null; then
    echo "$pid"
  else
    rm -f "$f"
  fi
}

# Stop NAME: SIGTERM, then SIGKILL after STOP_TIMEOUT_S.
stop_one() {
  local name=$1 pid i
  pid=$(running_pid "$name")
  [ -n "$pid" ] || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
    [ -n "$(running_pid "$name")" ] || return 0
    sleep 0.1
  done
  log "$name did not exit after ${STOP_TIMEOUT_S}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [ -n "$(running_pid "$name")" ] || return 0
    sleep 0.1
  done
  rm -f "$RUN/$name.proc"
}

# Run a command in the background, detached from this shell (its own session, no terminal, no
# pipe of ours held open), output to logs/NAME.log; record it as NAME.
spawn() { # NAME DIR CMD...
  local name=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1) &
  local pid=$!
  sleep 0.05
  record "$name" "$pid" || die "$name exited at once; log tail:$(echo; tail -n 30 "$LOGS/$name.log")"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Refuse to start NAME on PORT when something that is not ours listens there.
port_free_or_die() { # NAME PORT
  if port_open "$2"; then
    die "port $2 (for $1) is in use by another process; pick another with the SWITCHYARD_CLUSTER_*_PORT variables"
  fi
}

redis_ping() { # PORT
  local reply=""
  exec 3<>"/dev/tcp/$HOST/$1" || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 reply <&3 || true
  exec 3>&-
  [[ $reply == +PONG* ]]
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# Wait until CHECK ARGS succeeds, or NAME has died (log tail shown), or the timeout.
wait_for() { # NAME TIMEOUT_S CHECK ARGS...
  local name=$1 timeout=$2 i
  shift 2
  for ((i = 0; i < timeout * 10; i++)); do
    if "$@"; then return 0; fi
    if [ -z "$(running_pid "$name")" ]; then
      log "$name exited; log tail:"
      tail -n 40 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$name not ready after ${timeout}s; log tail:"
  tail -n 40 "$LOGS/$name.log" >&2 || true
  return 1
}

# --- setup ----------------------------------------------------------------------------------

binary() {
  if [ -n "${SWITCHYARD_BIN:-}" ]; then
    [ -x "$SWITCHYARD_BIN" ] || die "SWITCHYARD_BIN=$SWITCHYARD_BIN is not an executable"
    echo "$SWITCHYARD_BIN"
    return
  fi
  local newest="" c
  for c in "${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchyard" \
    "$ROOT/target/release/switchyard" "$ROOT/target/debug/switchyard"; do
    if [ -x "$c" ] && { [ -z "$newest" ] || [ "$c" -nt "$newest" ]; }; then newest=$c; fi
  done
  [ -n "$newest" ] || die "no switchyard binary: run 'cargo build --workspace --bins' or set SWITCHYARD_BIN"
  echo "$newest"
}

# Install what is missing (Debian/Ubuntu, as root).
ensure_packages() {
  local missing=() cmd pkg
  for cmd in "$REDIS_SERVER":redis-server haproxy:haproxy curl:curl setsid:util-linux; do
    pkg=${cmd#*:}
    cmd=${cmd%%:*}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing: ${missing[*]}; install them (as root on Debian/Ubuntu this script does it)"
  fi
  log "installing ${missing[*]}"
  local out
  out=$(mktemp)
  # No descriptor of ours goes to the package scripts: a service they start must not hold it.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    </dev/null >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "installing ${missing[*]} failed"
  fi
  rm -f "$out"
  # The packages start their own system services (redis on 6379, haproxy on its default
  # config); this cluster runs its own instances and leaves those alone.
}

replica_ports() { # N
  local n=$1 i
  if [ -n "${SWITCHYARD_CLUSTER_REPLICA_PORTS:-}" ]; then
    # shellcheck disable=SC2206 # a space-separated list by design
    local ports=($SWITCHYARD_CLUSTER_REPLICA_PORTS)
    [ "${#ports[@]}" -ge "$n" ] || die "SWITCHYARD_CLUSTER_REPLICA_PORTS lists ${#ports[@]} port(s), fewer than $n replicas"
    echo "${ports[@]:0:n}"
  else
    for ((i = 0; i < n; i++)); do printf '%s ' $((REPLICA_PORT + i)); done
    echo
  fi
}

# The URL given, else the one an earlier start used, else a local server's from .ci/postgres.sh.
postgres_url() {
  local url=${SWITCHYARD_CLUSTER_POSTGRES_URL:-}
  if [ -z "$url" ] && [ -f "$STATE/postgres.url" ]; then
    url=$(cat "$STATE/postgres.url")
  fi
  if [ -z "$url" ]; then
    [ "$(id -u)" -eq 0 ] || die "set SWITCHYARD_CLUSTER_POSTGRES_URL, or run as root so .ci/postgres.sh can start a local Postgres"
    log "no SWITCHYARD_CLUSTER_POSTGRES_URL: starting a local Postgres with .ci/postgres.sh"
    url=$(bash "$ROOT/.ci/postgres.sh") || die ".ci/postgres.sh failed"
  fi
  (umask 077 && echo "$url" >"$STATE/postgres.url")
  echo "$url"
}

# The policy folder for the replicas. The shipped policies only load once built (a missing
# .wasm fails to load, and pii-redact then fails closed: 503 on every route), so without their
# .wasm files the replicas run without policies, with a warning.
policies_dir() {
  if [ -n "${SWITCHYARD_POLICIES:-}" ]; then
    echo "$SWITCHYARD_POLICIES"
    return
  fi
  local manifest wasm unbuilt=0
  for manifest in "$ROOT"/policies/*/policy.toml; do
    [ -e "$manifest" ] || continue
    wasm=$(sed -n 's/^wasm = "\(.*\)"$/\1/p' "$manifest" | head -n 1)
    [ -f "${manifest%/policy.toml}/$wasm" ] || unbuilt=1
  done
  if [ "$unbuilt" -eq 1 ]; then
    log "warning: the policies are not built (bash policies/build.sh): the replicas run without policies"
    echo "$STATE/no-policies"
  else
    echo "$ROOT/policies"
  fi
}

# Passwords out of a URL, for printing.
masked() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# --- components -----------------------------------------------------------------------------

start_redis() { # NAME PORT ARGS...
  local name=$1 port=$2 pid
  shift 2
  pid=$(running_pid "$name")
  if [ -n "$pid" ]; then
    log "$name already running (pid $pid, port $port)"
    return
  fi
  port_free_or_die "$name" "$port"
  mkdir -p "$STATE/$name"
  # Daemonised by redis itself; its own pid file names the daemon.
  rm -f "$RUN/$name.pid"
  "$REDIS_SERVER" --daemonize yes --bind "$HOST" --port "$port" --protected-mode yes \
    --dir "$STATE/$name" --pidfile "$RUN/$name.pid" --logfile "$LOGS/$name.log" "$@" </dev/null >/dev/null ||
    die "redis-server ($name) failed to start; see $LOGS/$name.log"
  local i
  for ((i = 0; i < 100; i++)); do
    [ -s "$RUN/$name.pid" ] && break
    sleep 0.05
  done
  record "$name" "$(cat "$RUN/$name.pid")" || die "$name did not start; log tail:$(echo; tail -n 20 "$LOGS/$name.log")"
  wait_for "$name" 20 redis_ping "$port" || die "$name did not answer PING"
  log "$name ready on $HOST:$port"
}

start_sim() {
  local pid
  pid=$(running_pid sim)
  if [ -n "$pid" ]; then
    log "sim already running (pid $pid, port $SIM_PORT)"
    return
  fi
  port_free_or_die sim "$SIM_PORT"
  local args=(--log-format "$LOG_FORMAT" sim --listen "$HOST:$SIM_PORT")
  [ -n "$SIM_CONFIG" ] && args+=(--config "$SIM_CONFIG")
  spawn sim "$STATE/sim" env NO_COLOR=1 "$BIN" "${args[@]}"
  wait_for sim 30 port_open "$SIM_PORT" || die "the simulator did not start"
  log "sim ready on $HOST:$SIM_PORT"
}

start_replica() { # I PORT
  local name=replica-$1 port=$2 pid
  pid=$(running_pid "$name")
  if [ -n "$pid" ]; then
    local was
    was=$(cat "$RUN/$name.port" 2>/dev/null || true)
    [ "$was" = "$port" ] || die "$name runs on port $was, not $port: '$0 stop' first to change ports"
    log "$name already running (pid $pid, port $port)"
    return
  fi
  port_free_or_die "$name" "$port"
  echo "$port" >"$RUN/$name.port"
  spawn "$name" "$STATE/$name" env \
    SWITCHYARD_SIM_URL="http://$HOST:$SIM_PORT" \
    SWITCHYARD_STORE_URL="$PG_URL" \
    SWITCHYARD_REDIS_URL="redis://$HOST:$REDIS_PORT/0" \
    SWITCHYARD_REDIS_CACHE_URL="redis://$HOST:$CACHE_PORT/0" \
    SWITCHYARD_POLICIES="$POLICIES" \
    RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    "$BIN" --log-format "$LOG_FORMAT" serve --config "$CONFIG" --listen "$HOST:$port"
}

write_haproxy_config() { # PORTS...
  local cfg=$STATE/haproxy.cfg tmp i=0 port
  tmp=$(mktemp "$STATE/haproxy.cfg.XXXXXX")
  cat >"$tmp" <<EOF
# Generated by deploy/local/cluster.sh; rewritten on every start.
global
    log stderr format raw local0 info
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    timeout http-request 10s
    timeout http-keep-alive 60s
    # A request the chosen replica refused before reading (connection error) goes to another.
    retries 2
    option redispatch

frontend switchyard
    bind $HOST:$LB_PORT
    default_backend replicas

backend replicas
    balance roundrobin
    # A replica is sent traffic only while /health/ready answers 200; a draining replica (after
    # SIGTERM) answers 503 and is taken out within about two checks.
    option httpchk
    http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host $HOST
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1
EOF
  for port in "$@"; do
    i=$((i + 1))
    echo "    server replica-$i $HOST:$port check" >>"$tmp"
  done
  if [ -f "$cfg" ] && cmp -s "$tmp" "$cfg"; then
    rm -f "$tmp"
    return 1 # unchanged
  fi
  mv "$tmp" "$cfg"
  return 0
}

start_haproxy() { # CHANGED
  local changed=$1 pid
  haproxy -c -q -f "$STATE/haproxy.cfg" || die "generated HAProxy config is invalid: $STATE/haproxy.cfg"
  pid=$(running_pid haproxy)
  if [ -n "$pid" ]; then
    if [ "$changed" = 1 ]; then
      log "reloading haproxy (pid $pid) with the new replica list"
      kill -USR2 "$pid"
    else
      log "haproxy already running (pid $pid, port $LB_PORT)"
    fi
    return
  fi
  port_free_or_die haproxy "$LB_PORT"
  # Master-worker mode in the foreground (-W -db): logs go to its stderr (our log file), and
  # SIGUSR2 to the master reloads the config.
  spawn haproxy "$STATE" haproxy -W -db -f "$STATE/haproxy.cfg"
  wait_for haproxy 20 port_open "$LB_PORT" || die "haproxy did not start"
}

# --- commands -------------------------------------------------------------------------------

cmd_start() {
  local n=${1:-2}
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$n'"
  ensure_packages
  BIN=$(binary)
  case "$LOG_FORMAT" in text | json) ;; *) die "SWITCHYARD_CLUSTER_LOG_FORMAT must be text or json" ;; esac
  [ -f "$CONFIG" ] || die "no config at $CONFIG"
  mkdir -p "$STATE" "$RUN" "$LOGS"
  touch "$STATE/$MARKER"
  log "state in $STATE; binary $BIN"

  local ports i port
  read -r -a ports <<<"$(replica_ports "$n")"
  # Every port this start needs and does not already serve itself must be free: fail before
  # starting anything.
  local pair
  for pair in haproxy:"$LB_PORT" sim:"$SIM_PORT" redis-counters:"$REDIS_PORT" redis-cache:"$CACHE_PORT"; do
    [ -n "$(running_pid "${pair%%:*}")" ] || port_free_or_die "${pair%%:*}" "${pair#*:}"
  done
  for ((i = 1; i <= n; i++)); do
    [ -n "$(running_pid "replica-$i")" ] || port_free_or_die "replica-$i" "${ports[i - 1]}"
  done

  PG_URL=$(postgres_url)
  POLICIES=$(policies_dir)

  start_redis redis-counters "$REDIS_PORT" \
    --maxmemory-policy noeviction --appendonly yes --appendfsync everysec
  start_redis redis-cache "$CACHE_PORT" \
    --maxmemory 64mb --maxmemory-policy allkeys-lru --save '' --appendonly no
  start_sim

  # Replicas beyond N (from an earlier, larger start) are stopped once HAProxy no longer
  # sends them anything.
  local extra=() f
  for f in "$RUN"/replica-*.proc; do
    [ -e "$f" ] || continue
    i=${f##*/replica-}
    i=${i%.proc}
    if [ "$i" -gt "$n" ]; then extra+=("$i"); fi
  done
  local changed=0
  write_haproxy_config "${ports[@]}" && changed=1

  # All replicas start at once (as pods of a Deployment would), then each must become ready.
  for ((i = 1; i <= n; i++)); do
    start_replica "$i" "${ports[i - 1]}"
  done
  local failed=0
  for ((i = 1; i <= n; i++)); do
    port=${ports[i - 1]}
    if wait_for "replica-$i" "$READY_TIMEOUT_S" http_ok "http://$HOST:$port/health/ready"; then
      log "replica-$i ready on $HOST:$port"
    else
      failed=1
    fi
  done
  [ "$failed" -eq 0 ] || die "a replica did not become ready (the others keep running: '$0 stop' stops them)"

  start_haproxy "$changed"
  for i in "${extra[@]}"; do
    stop_one "replica-$i"
    rm -f "$RUN/replica-$i.port"
  done
  wait_for haproxy 20 http_ok "http://$HOST:$LB_PORT/health/ready" ||
    die "HAProxy does not reach a ready replica"

  cat <<EOF
Switchyard cluster: $n replica(s)
  gateway (HAProxy)  http://$HOST:$LB_PORT        e.g. curl http://$HOST:$LB_PORT/v1/models
EOF
  for ((i = 1; i <= n; i++)); do
    echo "  replica-$i          http://$HOST:${ports[i - 1]}        /metrics, /health/ready"
  done
  cat <<EOF
  simulator          http://$HOST:$SIM_PORT
  redis (counters)   redis://$HOST:$REDIS_PORT/0
  redis (L2 cache)   redis://$HOST:$CACHE_PORT/0
  postgres           $(masked "$PG_URL")
  state and logs     $STATE
EOF
}

cmd_stop() {
  local clean=0
  case "${1:-}" in
    "") ;;
    --clean) clean=1 ;;
    *) usage ;;
  esac
  if [ ! -d "$RUN" ]; then
    log "nothing recorded in $STATE: nothing to stop"
  else
    # Front to back: the balancer first, then the replicas (they drain and flush to the store
    # while Redis and the simulator still answer), then what they used.
    stop_one haproxy
    local f names=()
    for f in "$RUN"/replica-*.proc; do
      [ -e "$f" ] || continue
      f=${f##*/}
      names+=("${f%.proc}")
    done
    # SIGTERM to every replica at once, so their drains overlap.
    local name
    for name in "${names[@]}"; do
      stop_one "$name" &
    done
    wait
    stop_one sim
    stop_one redis-cache
    stop_one redis-counters
    rm -f "$RUN"/*.port "$RUN"/*.pid
    log "stopped (Postgres, if .ci/postgres.sh started it, keeps running)"
  fi
  if [ "$clean" -eq 1 ] && [ -d "$STATE" ]; then
    [ -f "$STATE/$MARKER" ] || die "$STATE has no $MARKER file: not removing a folder this script did not make"
    rm -rf "$STATE"
    log "removed $STATE"
  fi
}

cmd_status() {
  if [ ! -d "$RUN" ]; then
    echo "not started (no state in $STATE)"
    return 3
  fi
  local name pid port what all=0
  show() { # NAME PORT CHECK...
    name=$1 port=$2
    shift 2
    pid=$(running_pid "$name")
    if [ -z "$pid" ]; then
      what=stopped
      all=1
    elif "$@"; then
      what="ready   pid $pid"
    else
      what="running pid $pid (not ready)"
      all=1
    fi
    printf '  %-16s %-6s %s\n' "$name" "$port" "$what"
  }
  echo "Switchyard cluster in $STATE"
  show haproxy "$LB_PORT" http_ok "http://$HOST:$LB_PORT/health/ready"
  local f
  for f in "$RUN"/replica-*.port; do
    [ -e "$f" ] || continue
    name=${f##*/}
    name=${name%.port}
    port=$(cat "$f")
    show "$name" "$port" http_ok "http://$HOST:$port/health/ready"
    # Whether this replica's shared counters answer (0: degraded to on_failure).
    local up
    up=$(curl -fsS --max-time 2 "http://$HOST:$port/metrics" 2>/dev/null | awk '$1 == "switchyard_redis_up" {print $2}' || true)
    case "$up" in
      1) printf '  %-16s        redis: up\n' "" ;;
      0) printf '  %-16s        redis: DOWN (limits degraded to on_failure)\n' "" ;;
    esac
  done
  show sim "$SIM_PORT" port_open "$SIM_PORT"
  show redis-counters "$REDIS_PORT" redis_ping "$REDIS_PORT"
  show redis-cache "$CACHE_PORT" redis_ping "$CACHE_PORT"
  [ -f "$STATE/postgres.url" ] && printf '  %-16s %s\n' postgres "$(masked "$(cat "$STATE/postgres.url")")"
  return "$all"
}

# Sourced (by .ci/validate-deploy.sh, to check the HAProxy config it writes): functions only.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
  return 0
fi

case "${1:-}" in
  start)
    shift
    [ $# -le 1 ] || usage
    cmd_start "$@"
    ;;
  stop)
    shift
    [ $# -le 1 ] || usage
    cmd_stop "$@"
    ;;
  status) cmd_status ;;
  *) usage ;;
esac
