#!/usr/bin/env bash
# Call the three analyst endpoints of a running gateway (default: `switchyard demo` on :8080).
#   cargo run --release -p switchyard -- demo &   then   bash examples/analyst/run.sh
# Each answer is saved whole to $OUT/<endpoint>.json and its first lines are printed.
set -euo pipefail
cd "$(dirname "$0")"
GW=${GW:-http://127.0.0.1:8080}
OUT=${OUT:-/tmp/switchyard-analyst}
mkdir -p "$OUT"
for call in "analyze/market market.json" "analyze/market market-csv.json" \
            "sentiment/news sentiment.json" "optimize/portfolio portfolio.json"; do
  read -r path file <<<"$call"
  out="$OUT/${file%.json}.json"
  echo "== POST /ai/$path < $file  (whole answer: $out)"
  curl -sS "$GW/ai/$path" -H 'content-type: application/json' --data-binary @"$file" \
    | python3 -m json.tool >"$out"
  sed -n '1,40p' "$out"
done
