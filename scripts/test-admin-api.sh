#!/usr/bin/env bash
# The admin API from outside, against a fresh `maas serve` (throwaway SQLite, free loopback
# ports) and `maas mock-upstream`:
#   1. the admin API session, extracted from docs/admin-api.md and run as written: it must end with
#      the mock's answer through the gateway and the audit rows it left;
#   2. schemathesis (PyPI, pinned, in the test venv) against /api/v1/openapi.json, a bounded
#      number of examples per operation: no 5xx, no answer that breaks the documented schema.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MAAS_BIN:?MAAS_BIN must point at the maas binary}"
VENV="${MAAS_SDK_VENV:-$HOME/.cache/maas-sdk-venv}"
SCHEMATHESIS=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS"; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS"
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mock_port=$(free_port); port=$(free_port)
"$BIN" mock-upstream --listen "127.0.0.1:$mock_port" > "$work/mock.log" 2>&1 & pids+=($!)
export DATABASE_URL="sqlite://$work/maas.db?mode=rwc" MAAS_DATA_DIR="$work" MAAS_LISTEN="127.0.0.1:$port" \
  MAAS_ADMIN_PASSWORD=admin-pass-123 MAAS_ADMIN_API_RATE=1000 RUST_LOG=warn
"$BIN" serve > "$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/login" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$port/login" || { cat "$work/serve.log"; exit 1; }

echo "[admin-api] the curl session of docs/admin-api.md"
sed -n '/<!-- admin-api-session -->/,/<!-- \/admin-api-session -->/p' docs/admin-api.md | sed -n '/^```bash$/,/^```$/p' | sed '1d;$d' > "$work/session.sh"
[ -s "$work/session.sh" ] || { echo "no admin-api-session block in docs/admin-api.md"; exit 1; }
TOKEN=$("$BIN" admin-token --name readme --write)
out=$(TOKEN="$TOKEN" MAAS="http://127.0.0.1:$port" UPSTREAM="http://127.0.0.1:$mock_port/v1" bash -euo pipefail "$work/session.sh")
echo "$out"
# The mock answers "Hello…!" to a chat call; the audit lists the session's writes.
grep -q "^Hello" <<<"$out" || { echo "no answer from the model through the gateway"; exit 1; }
grep -q "token:readme enable model" <<<"$out" || { echo "the audit log does not show the enable"; exit 1; }
grep -q "token:readme create api_key" <<<"$out" || { echo "the audit log does not show the key"; exit 1; }

echo "[admin-api] schemathesis $SCHEMATHESIS against /api/v1/openapi.json"
"$VENV/bin/schemathesis" --no-color run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --url "http://127.0.0.1:$port/api/v1" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --generation-deterministic \
  --request-timeout 10
