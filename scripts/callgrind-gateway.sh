#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable to about ±0.6 %
# where wall-clock runs on this 2-core VM vary by ±10 %, so it can tell a 2 % change apart.
# Runs the release server (one worker) under callgrind twice, with 0 and with N chat requests
# (oha, 4 connections, loopback, against `maas mock-upstream`), and prints the difference / N.
# Usage: scripts/callgrind-gateway.sh [N]   (env: MAAS_BIN, REDIS_URL to count the shared path,
# KEY_SCOPE=1 to give the key an expiry and a model list, the gateway's scope checks on,
# RULES=tokens+concurrent to replace the demo key's request rule by a token and a concurrency rule)
# The profile of the N-request run stays in $OUT/cg.N for `callgrind_annotate`.
set -euo pipefail
N=${1:-2000}
BIN=${MAAS_BIN:-$HOME/.cache/maas-target/release/maas}
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian package valgrind)"; exit 1; }
OUT=$(mktemp -d /tmp/maas-callgrind-XXXX)
MOCK_PORT=19199 PORT=13199
"$BIN" mock-upstream --listen 127.0.0.1:$MOCK_PORT --no-record >/dev/null 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
export MAAS_DATA_DIR=$OUT/data DATABASE_URL="sqlite://$OUT/data/maas.db?mode=rwc" MAAS_LISTEN=127.0.0.1:$PORT MAAS_WORKERS=1 RUST_LOG=error
# Seed the demo data once (and its key), then lift the demo rule so no request is refused.
"$BIN" serve --demo-upstream http://127.0.0.1:$MOCK_PORT >"$OUT/seed.log" 2>&1 &
seed=$!
for _ in $(seq 1 100); do grep -q "demo API key" "$OUT/seed.log" && break; sleep 0.2; done
kill -INT $seed; wait $seed 2>/dev/null || true
KEY=$(grep -o 'sk-maas-[0-9a-f]*' "$OUT/seed.log" | head -1)
python3 -c "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute('UPDATE rate_limit_rules SET limit_value=1000000000, duration_secs=1'); d.execute('UPDATE config_revision SET revision=revision+1'); d.commit()" "$OUT/data/maas.db"
if [ "${RULES:-}" = tokens+concurrent ]; then
  python3 -c "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); m,w,k=d.execute('SELECT maas_model_id, workspace_id, api_key_id FROM rate_limit_rules WHERE api_key_id IS NOT NULL LIMIT 1').fetchone(); d.execute('DELETE FROM rate_limit_rules WHERE maas_model_id=?', (m,)); d.executemany('INSERT INTO rate_limit_rules (maas_model_id, position, kind, target, workspace_id, api_key_id, limit_value, duration_secs) VALUES (?, ?, ?, \'api_key\', ?, ?, ?, ?)', [(m, 0, 'tokens', w, k, 10**12, 60), (m, 1, 'concurrent', w, k, 100000, 0)]); d.execute('UPDATE config_revision SET revision=revision+1'); d.commit()" "$OUT/data/maas.db"
fi
if [ "${KEY_SCOPE:-0}" = 1 ]; then
  python3 -c "import sqlite3,sys,time; d=sqlite3.connect(sys.argv[1]); ids=[r[0] for r in d.execute('SELECT id FROM maas_models')]; d.execute('UPDATE api_keys SET limit_expires_at=?, limit_models=?', (int(time.time()) + 86400, str(ids + [999]))); d.execute('UPDATE config_revision SET revision=revision+1'); d.commit()" "$OUT/data/maas.db"
fi

run() {  # run <requests> → total instructions
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$BIN" serve >/dev/null 2>"$OUT/vg.$1.log" &
  local vg=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/models" && break; sleep 0.25; done
  if [ "$1" -gt 0 ]; then
    "$OHA" -n "$1" -c 4 -m POST -H "content-type: application/json" -H "authorization: Bearer $KEY" \
      -d '{"model":"demo-chat","messages":[{"role":"user","content":"Hello"}]}' --no-tui \
      "http://127.0.0.1:$PORT/v1/chat/completions" | grep -E '\[200\]' >&2
  fi
  kill -INT $vg; wait $vg 2>/dev/null || true
  awk '/^summary:/{print $2}' "$OUT/cg.$1"
}
base=$(run 0)
total=$(run "$N")
echo "instructions: start-up and idle $base, with $N requests $total"
echo "per proxied request: $(( (total - base) / N ))   (profile: callgrind_annotate $OUT/cg.$N)"
