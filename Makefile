# The two front-door commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
# One cargo target dir outside the clone: builds are cached across clones and CI runs.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/maas-target
export MAAS_SITE_ROOT ?= $(CARGO_TARGET_DIR)/site
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: setup setup-run site build run test lint test-rust test-sdk test-api test-e2e bench-list bench-gateway bench-login bench-usage clean-data

## What `make test` needs (also Chromium, Redis, PostgreSQL); `make run` needs only setup-run.
setup:
	@scripts/setup.sh test

setup-run:
	@scripts/setup.sh run

site: setup-run
	@scripts/build-site.sh

build: site
	cargo build --release -p server

## Start the console + gateway on http://127.0.0.1:3000 (SQLite in data/maas.db), with
## `maas mock-upstream` on 127.0.0.1:9099 behind a demo model, so the gateway answers at once.
run: build
	@$(CARGO_TARGET_DIR)/release/maas mock-upstream --listen 127.0.0.1:9099 --chunks 8 --chunk-delay-ms 50 & \
	  mock=$$!; trap 'kill $$mock 2>/dev/null' EXIT INT TERM; \
	  $(CARGO_TARGET_DIR)/release/maas serve --demo-upstream http://127.0.0.1:9099

## Every test: formatting and lints, Rust unit/service/HTTP/gateway tests, the official OpenAI
## Python SDK against the gateway, the admin API from outside, then the browser tests.
test: setup lint test-rust test-sdk test-api test-e2e

## `cargo fmt` clean (rustfmt.toml), no cycle among sibling modules, and clippy with warnings as
## errors on the server side (server, app with `ssr`, tests and benches) and the browser side (app
## with `hydrate`, the WASM entry).
lint:
	cargo fmt --all --check
	scripts/check-module-cycles.py
	cargo clippy --workspace --exclude frontend --all-targets -- -D warnings
	cargo clippy -p frontend -p app --target wasm32-unknown-unknown --features app/hydrate -- -D warnings

test-rust:
	cargo test --workspace --exclude frontend
	# The console's services, its HTTP surface and the gateway again on PostgreSQL (each test
	# starts its own server): the scale-out control plane's database.
	MAAS_TEST_DB=postgres cargo test -p server --test services --test http --test gateway --test usage --test admin_api

test-sdk:
	cargo build --workspace --exclude frontend --tests
	MAAS_BIN=$(CARGO_TARGET_DIR)/debug/maas scripts/test-openai-sdk.sh

## The admin API from outside: the curl session of docs/admin-api.md, then schemathesis on its OpenAPI document.
test-api:
	cargo build --workspace --exclude frontend --tests
	MAAS_BIN=$(CARGO_TARGET_DIR)/debug/maas scripts/test-admin-api.sh

test-e2e: site
	scripts/check-wasm-budget.sh
	cargo build --workspace --exclude frontend --tests  # same selection as `cargo test`: no rebuild
	cd end2end && MAAS_BIN=$(CARGO_TARGET_DIR)/debug/maas npx playwright test

## Server time to render the management list with 10,000 models (figures for the notes).
bench-list:
	cargo build --release -p server
	MAAS_BIN=$(CARGO_TARGET_DIR)/release/maas scripts/bench-list.py

## Gateway throughput/latency/CPU/RSS against the mock, direct vs through the gateway.
bench-gateway:
	command -v oha >/dev/null || cargo install oha --locked
	cargo build --release -p server
	MAAS_BIN=$(CARGO_TARGET_DIR)/release/maas scripts/bench-gateway.py

## Usage page server time with 30 days of rollups (1,000 models, 10,000 keys), and a flush of
## 10,000 rollup rows into SQLite (figures for the notes).
bench-usage:
	cargo build --release -p server
	MAAS_BIN=$(CARGO_TARGET_DIR)/release/maas scripts/bench-usage.py
	cargo bench -p server --bench usage_flush
	MAAS_BIN=$(CARGO_TARGET_DIR)/release/maas scripts/bench-flush-floor.py

## RSS of `maas serve` under a flood of concurrent logins (figures for the notes).
bench-login:
	cargo build --release -p server
	MAAS_BIN=$(CARGO_TARGET_DIR)/release/maas scripts/bench-login.py

clean-data:
	rm -rf data
