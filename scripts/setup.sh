#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test MaaS. Idempotent: every step
# checks first and skips what is present, so `make run` / `make test` can call it each time.
#
# Why no cargo-leptos: building it from source costs ~20 minutes on this 2-core machine, while
# what it does for us (build the WASM, run wasm-bindgen and wasm-opt, copy CSS) is a dozen lines
# of scripts/build-site.sh. wasm-bindgen-cli (~5 min, once) and npm's binaryen are all we need.
#
#   scripts/setup.sh run    what `make run` needs: the WASM target, wasm-bindgen-cli, binaryen
#   scripts/setup.sh test   also what `make test` needs: Chromium, Redis, PostgreSQL, openssl
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
case "$what" in run|test) ;; *) echo "usage: $0 run|test" >&2; exit 2 ;; esac

WASM_BINDGEN_VERSION=0.2.130   # must equal the `wasm-bindgen = "=…"` pin in Cargo.toml
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# A long-lived target dir grows with every change (incremental caches, test binaries of earlier
# hashes; one reached 74 GB): past 40 GB the incremental caches go, and artefacts untouched for 3
# days (a rebuild costs minutes, a full disk fails the run).
target="${CARGO_TARGET_DIR:-$HOME/.cache/maas-target}"
if [ -d "$target" ] && [ "$(du -s --block-size=1G "$target" | cut -f1)" -gt 40 ]; then
  log "$target is over 40 GB: sweeping incremental caches and artefacts unused for 3 days"
  rm -rf "$target"/*/incremental
  find "$target" -path '*/deps/*' -type f -mtime +3 -delete
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 5 minutes, once per machine)"
  # Not --locked: its lockfile names a yanked webpki-roots (see shared/TOOLCHAIN.md).
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# Node tooling lives in end2end/: Playwright for the browser tests and binaryen for wasm-opt
# (Debian's binaryen 108 produces a release WASM that fails at hydration).
if [ ! -x end2end/node_modules/.bin/wasm-opt ] || [ ! -d end2end/node_modules/@playwright/test ] \
   || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
  log "installing end2end node modules (playwright, binaryen)"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

if [ "$what" = run ]; then
  log "toolchain ready to run"
  exit 0
fi

# `make lint` (the first step of `make test`) runs rustfmt and clippy: rustup's default profile
# has both; a minimal toolchain gets them here.
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    log "adding rust component $component"
    rustup component add "$component"
  fi
done

# Chromium for the browser tests; Redis and PostgreSQL for the scale-out tests, Prometheus for
# the metrics test, which start their own servers on 127.0.0.1 (nothing is left running, nothing is enabled as a service).
need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need_apt+=(postgresql)
[ -x /usr/bin/openssl ] || need_apt+=(openssl)  # certificates for the TLS Redis test
# The admin API session of docs/admin-api.md, run by scripts/test-admin-api.sh.
[ -x /usr/bin/curl ] || need_apt+=(curl)
[ -x /usr/bin/jq ] || need_apt+=(jq)
# A real Prometheus scrapes /metrics in the metrics test; promtool checks the exposition.
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # apt sometimes fails once mid-way on this machine; a second pass with -f finishes it.
  $SUDO apt-get install -y -qq "${need_apt[@]}" || $SUDO apt-get install -y -qq -f "${need_apt[@]}"
fi
log "toolchain ready"
