#!/usr/bin/env bash
# Refresh the dashboard's vendored uPlot from the npm registry: installs exactly what
# vendor/package-lock.json pins (in a scratch folder) and copies the built files into vendor/.
# The copies are committed, so building the gateway needs no npm; run this only to upgrade
# (edit vendor/package.json, `npm install --package-lock-only` there, then this script).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$here/vendor/package.json" "$here/vendor/package-lock.json" "$scratch/"
(cd "$scratch" && npm ci --ignore-scripts --no-audit --no-fund --silent)
pkg="$scratch/node_modules/uplot"
cp "$pkg/dist/uPlot.iife.min.js" "$here/vendor/uPlot.iife.min.js"
cp "$pkg/dist/uPlot.min.css" "$here/vendor/uPlot.min.css"
cp "$pkg/LICENSE" "$here/vendor/LICENSE"
version="$(node -p "require('$pkg/package.json').version")"
echo "vendored uplot $version into $here/vendor"
