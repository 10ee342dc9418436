"""Claude Code, unchanged, pointed at the gateway (`ANTHROPIC_BASE_URL`, a platform key): a
print-mode session on `demo-chat` (translated to chat completions) and on `demo-agent`
(Messages passed through). The mock answers its first request with a call of the first tool
Claude Code offers, so each session runs a whole agent turn: a streamed tool call, Claude
Code's tool result sent back, the final text. Offline: loopback only, no telemetry, bounded."""
import json, os, subprocess, urllib.request

from served import ServedCase, main

CLAUDE = os.environ["CLAUDE_BIN"]


class ClaudeCode(ServedCase):
    PREFIX = "maas-claude-"

    def session(self, model):
        home = os.path.join(self.served.tmp, "home-" + model)
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home, ANTHROPIC_BASE_URL=self.served.base, ANTHROPIC_API_KEY=self.served.key,
                   ANTHROPIC_SMALL_FAST_MODEL=model, ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1")
        p = subprocess.run([CLAUDE, "-p", "Say hello", "--model", model, "--max-turns", "4", "--output-format", "json"],
                           env=env, capture_output=True, text=True, timeout=120, cwd=home)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-2000:])
        return json.loads(p.stdout)

    def sent(self):
        return json.load(urllib.request.urlopen(self.served.mock_url + "/_mock/requests", timeout=10))

    def test_a_session_on_a_chat_only_endpoint(self):
        before = len(self.sent())
        r = self.session("demo-chat")
        self.assertFalse(r["is_error"], r)
        self.assertEqual((r["result"], r["num_turns"]), ("chunk 0 chunk 1 chunk 2 chunk 3", 2))
        self.assertEqual(r["usage"]["output_tokens"], 6 + 4, "the tool call's and the answer's, as the gateway reported them")
        calls = self.sent()[before:]
        self.assertTrue(calls and all(c["path"].endswith("/v1/chat/completions") for c in calls), calls)

    def test_a_session_on_a_native_messages_endpoint(self):
        before = len(self.sent())
        r = self.session("demo-agent")
        self.assertFalse(r["is_error"], r)
        self.assertEqual((r["result"], r["num_turns"]), ("Hello!", 2))
        self.assertEqual(r["usage"]["cache_read_input_tokens"], 6, "the endpoint's cache reads, passed through")
        calls = [c for c in self.sent()[before:] if c["path"].endswith("/v1/messages")]
        self.assertTrue(calls)
        self.assertTrue(all("claude-code" in (c["anthropic_beta"] or "") for c in calls), "Claude Code's betas passed on")
        self.assertTrue(all(c["x_api_key"] == "sk-mock-upstream" for c in calls), "the endpoint's own key")


if __name__ == "__main__":
    main()
