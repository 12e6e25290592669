#!/usr/bin/env bash
# Call the three analyst endpoints of a running gateway (default: `switchyard demo` on :8080).
#   cargo run --release -p switchyard -- demo &   then   bash examples/analyst/run.sh
set -euo pipefail
cd "$(dirname "$0")"
GW=${GW:-http://127.0.0.1:8080}
for call in "analyze/market market.json" "analyze/market market-csv.json" \
            "sentiment/news sentiment.json" "optimize/portfolio portfolio.json"; do
  set -- $call
  echo "== POST /ai/$1 < $2"
  curl -sS "$GW/ai/$1" -H 'content-type: application/json' --data-binary @"$2" | python3 -m json.tool | head -60
done
