#!/usr/bin/env bash
# Makes sure redis-server is installed and prints its path on stdout (and nothing else there;
# progress goes to stderr). Tests start their own servers on free ports with it, so nothing is
# started here. Installing needs root (Debian/Ubuntu):
#
#   export SWITCHYARD_REDIS_SERVER="$(bash .ci/redis.sh)"
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "redis.sh: redis-server is missing; run as root to install it" >&2
    exit 1
  fi
  echo "redis.sh: installing redis-server" >&2
  out=$(mktemp)
  # All descriptors redirected: the service the package starts must not hold a pipe of ours.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; } \
    </dev/null >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    echo "redis.sh: installing redis-server failed" >&2
    exit 1
  fi
  rm -f "$out"
fi

bin=$(command -v redis-server)
echo "redis.sh: $("$bin" --version)" >&2
echo "$bin"
