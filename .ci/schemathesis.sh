#!/usr/bin/env bash
# The OpenAPI document against the gateway's behaviour: schemathesis (from PyPI, pinned in
# tests/schemathesis/requirements.txt) runs every operation of the demo's /openapi.json with
# valid and invalid inputs, and fails on any server error or any mismatch between what the
# document promises and what the gateway does: an answer (status, content type, headers, body,
# each event of a stream) outside the document, a schema-valid request refused, a
# schema-invalid one accepted.
#
# The demo runs in `keys` mode (an admin key is set), with its own SQLite store in a temporary
# directory and no provider API keys (the simulator answers). A virtual key is made first;
# schemathesis authenticates with it (bearer, or x-api-key where the document lists that first)
# and with the admin key on the admin operations. Keys and store are thrown away afterwards,
# so the output is not sanitised.
#
# One operation is excluded: `GET /ai/stream`, a WebSocket upgrade (HTTP tools cannot speak it;
# tests/python/test_stream.py and the gateway's tests/it/stream.rs test it). Every other one
# runs, also the ones that change state (create and revoke keys, clear the cache, reload
# policies, reset breakers; a drained model or a breaker forced open is given back at once by
# the hooks' `after_call`, or every later call to that model would answer 503). Should a generated call revoke the key in use, the calls
# after it answer 401, which the document allows. Not run: the stateful phase and its checks
# (the document declares no links), and `ignored_auth` (the document says no key is needed in
# `open` mode). The rules JSON Schema cannot state (one field naming another, the configured
# models, the analyst's numeric checks) are in tests/schemathesis/hooks.py.
#
# Environment: SWITCHYARD_BIN (default target/debug/switchyard), ST_MAX_EXAMPLES (per operation,
# default 30), ST_SEED (default a fixed seed, so CI is repeatable), ST_REPORT_DIR (keep the JUnit
# report there), ST_SCHEMA (a document file to test instead of the served one, to try an edit
# without a rebuild), ST_HOOKS / ST_HOOKS_PATH (another hooks module), ST_EXCUSED (a file listing
# each refusal the hooks excused).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN=${SWITCHYARD_BIN:-$ROOT/target/debug/switchyard}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-30}
SEED=${ST_SEED:-20261202}
VENV=$ROOT/tests/schemathesis/.venv

[ -x "$BIN" ] || { echo "$BIN not found: run cargo build --workspace --bins first"; exit 1; }
if [ ! -d policies/target ]; then
  bash policies/build.sh
fi

if [ ! -x "$VENV/bin/st" ] || ! cmp -s tests/schemathesis/requirements.txt "$VENV/.requirements"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
  cp tests/schemathesis/requirements.txt "$VENV/.requirements"
fi

WORK=$(mktemp -d)
DEMO_PID=
cleanup() {
  if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

ADMIN_KEY="st-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
env -u SWITCHYARD_SIM_KEY -u SWITCHYARD_SIM_URL \
  SWITCHYARD_ADMIN_KEY="$ADMIN_KEY" \
  SWITCHYARD_STORE_URL="sqlite://$WORK/demo.db" \
  SWITCHYARD_POLICIES="$ROOT/policies" \
  RUST_LOG=info \
  "$BIN" demo --listen 127.0.0.1:0 --log-format json >/dev/null 2>"$WORK/demo.log" &
DEMO_PID=$!

ADDR=
for _ in $(seq 1 300); do
  ADDR=$(python3 - "$WORK/demo.log" <<'PY'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("message") == "switchyard listening":
        print(event["addr"])
        break
PY
)
  [ -n "$ADDR" ] && break
  kill -0 "$DEMO_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "the demo did not start:"; cat "$WORK/demo.log"; exit 1
fi
URL="http://$ADDR"
echo "demo on $URL"

VIRTUAL_KEY=$(curl -fsS -X POST "$URL/admin/keys" \
  -H "authorization: Bearer $ADMIN_KEY" -H 'content-type: application/json' \
  -d '{"name": "schemathesis"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

# Credentials by security scheme name (components.securitySchemes of the document).
cat >"$WORK/schemathesis.toml" <<EOF
[auth.openapi.virtualKey]
bearer = "\${ST_VIRTUAL_KEY}"

[auth.openapi.virtualKeyHeader]
api_key = "\${ST_VIRTUAL_KEY}"

[auth.openapi.adminKey]
bearer = "\${ST_ADMIN_KEY}"

[auth.openapi.adminKeyHeader]
api_key = "\${ST_ADMIN_KEY}"
EOF

# The document the demo serves (ST_SCHEMA: a file instead, to try edits without a rebuild).
SCHEMA=("$URL/openapi.json")
if [ -n "${ST_SCHEMA:-}" ]; then
  SCHEMA=("$ST_SCHEMA" --url "$URL")
fi

REPORT_DIR=${ST_REPORT_DIR:-$WORK/report}
status=0
SCHEMATHESIS_HOOKS=${ST_HOOKS:-hooks} PYTHONPATH="$ROOT/tests/schemathesis${ST_HOOKS_PATH:+:$ST_HOOKS_PATH}" \
  ST_VIRTUAL_KEY="$VIRTUAL_KEY" ST_ADMIN_KEY="$ADMIN_KEY" ST_BASE_URL="$URL" \
  "$VENV/bin/st" --config-file "$WORK/schemathesis.toml" run "${SCHEMA[@]}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,missing_required_header,unsupported_method \
  --phases examples,coverage,fuzzing \
  --exclude-path /ai/stream \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --workers 2 \
  --request-timeout 60 \
  --no-color \
  --output-sanitize false \
  --report junit --report-dir "$REPORT_DIR" \
  || status=$?

if ! kill -0 "$DEMO_PID" 2>/dev/null; then
  echo "the demo died during the run:"; tail -50 "$WORK/demo.log"; exit 1
fi
exit "$status"
