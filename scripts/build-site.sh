#!/usr/bin/env bash
# Builds the browser half of the console into $MAAS_SITE_ROOT (default target/site):
#   pkg/maas.js + pkg/maas_bg.wasm  (frontend crate → wasm-bindgen → wasm-opt)
#   pkg/maas.css                     (style/main.css, plain CSS)
#   pkg/api-docs/                    (Swagger UI for /api/docs, from npm's swagger-ui-dist)
# This is what cargo-leptos would do; see docs/building.md for why we do it with these few lines.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SITE="${MAAS_SITE_ROOT:-target/site}"
mkdir -p "$SITE/pkg"

cargo build -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
WASM="$TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm"
STAMP="$SITE/pkg/.built-from"
# cargo leaves the .wasm untouched when nothing changed: then so do we (wasm-bindgen and
# wasm-opt took most of an unchanged `make run`'s start). Compared by content, not by time:
# two checkouts sharing one target dir (a CI clone beside a working tree) overwrite each
# other's .wasm, and a newer stamp must not keep the other's bundle.
SUM="$(sha256sum "$WASM" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SUM" ] && [ -f "$SITE/pkg/maas_bg.wasm" ] && [ -f "$SITE/pkg/maas.js" ]; then
  echo "[site] WASM unchanged: keeping $SITE/pkg"
else
  wasm-bindgen --target web --no-typescript --out-name maas --out-dir "$SITE/pkg" "$WASM"
  # binaryen from npm (end2end/node_modules): Debian's wasm-opt 108 breaks hydration.
  end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types \
    -o "$SITE/pkg/maas_bg.wasm" "$SITE/pkg/maas_bg.wasm"
  echo "$SUM" > "$STAMP"
fi
cp style/main.css "$SITE/pkg/maas.css"
# The admin API's reference page (/api/docs): Swagger UI from npm, served from our own origin.
mkdir -p "$SITE/pkg/api-docs"
cp end2end/node_modules/swagger-ui-dist/{swagger-ui-bundle.js,swagger-ui.css,LICENSE} "$SITE/pkg/api-docs/"
printf '[site] %s: wasm %s bytes (%s gzipped)\n' "$SITE/pkg" \
  "$(stat -c %s "$SITE/pkg/maas_bg.wasm")" "$(gzip -9c "$SITE/pkg/maas_bg.wasm" | wc -c)"
