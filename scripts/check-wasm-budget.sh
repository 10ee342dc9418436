#!/usr/bin/env bash
# The console's release WASM must stay within its budget: 420 KiB gzipped (gzip -9). Issues 11
# and 14 set 400 KiB; issue 28's fleet section of the model form (fallbacks, retry policy, health
# checks: +9 KB after trimming) took it past, and the budget was raised by 20 KiB rather than
# drop the section (see docs/benchmarks.md for the figures and the lever to take it back down).
# A change that grows it past fails `make test` here, with the figure, rather than being found
# in a later session.
set -euo pipefail
SITE="${MAAS_SITE_ROOT:-${CARGO_TARGET_DIR:-target}/site}"
BUDGET=$((420 * 1024))
size=$(gzip -9c "$SITE/pkg/maas_bg.wasm" | wc -c)
if [ "$size" -gt "$BUDGET" ]; then
  echo "[wasm-budget] $SITE/pkg/maas_bg.wasm is $size B gzipped, over the $BUDGET B budget by $((size - BUDGET)) B" >&2
  exit 1
fi
echo "[wasm-budget] $size B gzipped, $((BUDGET - size)) B under the $BUDGET B budget"
