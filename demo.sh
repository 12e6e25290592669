#!/usr/bin/env bash
# The main job: build the shipped WASM policies, then run the gateway with its built-in simulated
# providers (no API keys), with demo traffic (5 requests/s) so the dashboard shows routing live.
# Extra arguments go to `switchyard demo` (e.g. --listen 127.0.0.1:9000, --traffic=20);
# --no-traffic leaves the gateway idle.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo >/dev/null || { echo "cargo not found: install Rust via rustup first"; exit 1; }
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
bash policies/build.sh
traffic=(--traffic=5)
args=()
for a in "$@"; do
  case "$a" in
    --no-traffic) traffic=() ;;
    --traffic|--traffic=*) traffic=("$a") ;;
    *) args+=("$a") ;;
  esac
done
exec cargo run --release -p switchyard -- demo ${traffic[@]+"${traffic[@]}"} ${args[@]+"${args[@]}"}
