#!/usr/bin/env bash
# The console's release WASM must stay within its budget: 400 KiB gzipped (gzip -9), the goal
# set in issues 11 and 14. A change that grows it past fails `make test` here, with the figure,
# rather than being found in a later session. What it costs and where: docs/benchmarks.md.
set -euo pipefail
SITE="${MAAS_SITE_ROOT:-${CARGO_TARGET_DIR:-target}/site}"
BUDGET=$((400 * 1024))
size=$(gzip -9c "$SITE/pkg/maas_bg.wasm" | wc -c)
if [ "$size" -gt "$BUDGET" ]; then
  echo "[wasm-budget] $SITE/pkg/maas_bg.wasm is $size B gzipped, over the $BUDGET B budget by $((size - BUDGET)) B" >&2
  exit 1
fi
echo "[wasm-budget] $size B gzipped, $((BUDGET - size)) B under the $BUDGET B budget"
