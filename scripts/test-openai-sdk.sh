#!/usr/bin/env bash
# Drives the gateway with the official SDKs and an agent: Claude Code and Anthropic's SDK (Python) on /v1/messages, the OpenAI Agents SDK
# on /v1/responses, and OpenAI's: the `openai` Python package (from PyPI, in a
# venv made here) and the `openai` Node package (from npm, pinned in end2end/package.json, which
# scripts/setup.sh installs): chat, streams, embeddings, models, and their error classes (a 429
# surfacing as RateLimitError). Each test file starts its own `maas mock-upstream` and
# `maas serve` on free loopback ports with a throwaway database.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MAAS_BIN:?MAAS_BIN must point at the maas binary}"
VENV="${MAAS_SDK_VENV:-$HOME/.cache/maas-sdk-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openai, anthropic, agents' 2>/dev/null; then
  python3 -m venv "$VENV"
  # The Agents SDK pins the openai package it needs.
  "$VENV/bin/pip" install -q 'openai>=1.40' 'anthropic>=0.40,<1' 'openai-agents>=0.2,<1'
fi
"$VENV/bin/python" tests/sdk/test_openai_sdk.py
# The Responses API (translated and native), and the OpenAI Agents SDK's tool loop on it.
"$VENV/bin/python" tests/sdk/test_openai_responses.py
# Speech and images through the SDK, rerank over HTTP.
"$VENV/bin/python" tests/sdk/test_other_models.py
# The official Anthropic SDK on /v1/messages, translated to chat completions for the mock.
"$VENV/bin/python" tests/sdk/test_anthropic_sdk.py
NODE_PATH="$PWD/end2end/node_modules" node --test tests/sdk/test_openai_node.cjs
# Claude Code, unchanged, on /v1/messages, and Codex on /v1/responses (translated and native).
# From npm, pinned, in a cache
# outside the clone; its postinstall (which puts the platform's binary in place) is run here, as
# npm may skip install scripts.
AGENTS="${MAAS_AGENTS_DIR:-$HOME/.cache/maas-agents}"
CLAUDE_VERSION=2.1.197
CODEX_VERSION=0.171.0
if ! "$AGENTS/node_modules/.bin/claude" --version 2>/dev/null | grep -q "^$CLAUDE_VERSION " \
  || ! "$AGENTS/node_modules/.bin/codex" --version 2>/dev/null | grep -q " $CODEX_VERSION\$"; then
  mkdir -p "$AGENTS"
  npm install --prefix "$AGENTS" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_VERSION" "@openai/codex@$CODEX_VERSION"
  (cd "$AGENTS/node_modules/@anthropic-ai/claude-code" && node install.cjs)
fi
CLAUDE_BIN="$AGENTS/node_modules/.bin/claude" "$VENV/bin/python" tests/sdk/test_claude_code.py
# Codex, unchanged, with the gateway as its Responses provider (translated and native).
CODEX_BIN="$AGENTS/node_modules/.bin/codex" "$VENV/bin/python" tests/sdk/test_codex.py
