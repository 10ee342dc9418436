#!/usr/bin/env bash
# Drives the gateway with the official OpenAI SDKs: the `openai` Python package (from PyPI, in a
# venv made here) and the `openai` Node package (from npm, pinned in end2end/package.json, which
# scripts/setup.sh installs): chat, streams, embeddings, models, and their error classes (a 429
# surfacing as RateLimitError). Each test file starts its own `maas mock-upstream` and
# `maas serve` on free loopback ports with a throwaway database.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MAAS_BIN:?MAAS_BIN must point at the maas binary}"
VENV="${MAAS_SDK_VENV:-$HOME/.cache/maas-sdk-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openai' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'openai>=1.40,<3'
fi
"$VENV/bin/python" tests/sdk/test_openai_sdk.py
NODE_PATH="$PWD/end2end/node_modules" node --test tests/sdk/test_openai_node.cjs
