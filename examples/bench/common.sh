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
