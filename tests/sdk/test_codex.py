"""Codex, unchanged, with the gateway as its model provider on the Responses API
(`wire_api = "responses"`): an `exec` session on `demo-chat` (translated to chat completions)
and on `demo-agent` (Responses passed through). The mock answers its first request with a call
of the first tool Codex offers, so each session runs a whole agent turn: a streamed function
call, Codex's output for it sent back, the final text. Offline: loopback only, bounded."""
import json, os, subprocess, urllib.request

from served import ServedCase, main

CODEX = os.environ["CODEX_BIN"]


class Codex(ServedCase):
    PREFIX = "maas-codex-"

    def session(self, model):
        home = os.path.join(self.served.tmp, "codex-" + model)
        os.makedirs(os.path.join(home, ".codex"), exist_ok=True)
        with open(os.path.join(home, ".codex", "config.toml"), "w") as f:
            f.write(f'model = "{model}"\nmodel_provider = "maas"\n\n[model_providers.maas]\nname = "MaaS"\n'
                    f'base_url = "{self.served.base}/v1"\nenv_key = "MAAS_API_KEY"\nwire_api = "responses"\n')
        env = dict(os.environ, HOME=home, CODEX_HOME=os.path.join(home, ".codex"), MAAS_API_KEY=self.served.key)
        p = subprocess.run([CODEX, "exec", "--skip-git-repo-check", "Say hello"], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120, cwd=home)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-3000:])
        return p.stdout.strip()

    def sent(self):
        return json.load(urllib.request.urlopen(self.served.mock_url + "/_mock/requests", timeout=10))

    def test_a_session_on_a_chat_only_endpoint(self):
        before = len(self.sent())
        self.assertEqual(self.session("demo-chat"), "chunk 0 chunk 1 chunk 2 chunk 3")
        calls = self.sent()[before:]
        self.assertEqual(len(calls), 2, "the tool call, then the answer")
        self.assertTrue(all(c["path"].endswith("/v1/chat/completions") for c in calls), calls)
        # Codex's function tools reach the chat model; its built-in ones are not offered to it.
        self.assertTrue(calls[0]["body"]["tools"] and all(t["type"] == "function" for t in calls[0]["body"]["tools"]))
        self.assertEqual(calls[1]["body"]["messages"][-1]["role"], "tool", "Codex's output for the call went back")

    def test_a_session_on_a_native_responses_endpoint(self):
        before = len(self.sent())
        self.assertEqual(self.session("demo-agent"), "Hello!")
        calls = self.sent()[before:]
        self.assertEqual(len(calls), 2)
        self.assertTrue(all(c["path"].endswith("/v1/responses") for c in calls), calls)
        self.assertIn("web_search", [t["type"] for t in calls[0]["body"]["tools"]], "passed through whole")


if __name__ == "__main__":
    main()
