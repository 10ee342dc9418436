"""The official OpenAI Python SDK against the gateway (loopback only, bounded)."""
import os, time

import openai
from openai import OpenAI

from served import ServedCase, main


class OpenAISdk(ServedCase):
    PREFIX = "maas-sdk-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp, cls.base, cls.key = cls.served.tmp, cls.served.base, cls.served.key
        cls.client = OpenAI(base_url=cls.base + "/v1", api_key=cls.key, max_retries=0, timeout=10)

    def test_chat_non_streamed(self):
        r = self.client.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "Hello"}])
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.choices[0].message.content, "Hello!")
        self.assertEqual(r.usage.total_tokens, 7)

    def test_chat_streamed_with_usage(self):
        stream = self.client.chat.completions.create(
            model="demo-chat", messages=[{"role": "user", "content": "Hello"}], stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, "chunk 0 chunk 1 chunk 2 chunk 3")
        self.assertEqual(chunks[-1].usage.completion_tokens, 4)

    def test_embeddings(self):
        r = self.client.embeddings.create(model="demo-embed", input=["a", "b", "c"])
        self.assertEqual([d.index for d in r.data], [0, 1, 2])
        # The SDK asked for base64 (its default) and decoded it: the mock's exact float32 values.
        self.assertEqual(r.data[2].embedding, [2 + k / 8 for k in range(1, 9)])
        r = self.client.embeddings.create(model="demo-embed", input="a", encoding_format="float")
        self.assertEqual(r.data[0].embedding, [k / 8 for k in range(1, 9)])

    def test_models_and_unknown_model(self):
        self.assertIn("demo-chat", [m.id for m in self.client.models.list()])
        self.assertEqual(self.client.models.retrieve("demo-chat").id, "demo-chat")
        with self.assertRaises(openai.NotFoundError):
            self.client.models.retrieve("no-such-model")
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.chat.completions.create(model="no-such-model", messages=[])
        self.assertEqual(e.exception.code, "model_not_found")

    def test_wrong_key_is_authentication_error(self):
        bad = OpenAI(base_url=self.base + "/v1", api_key="sk-maas-wrong", max_retries=0, timeout=10)
        with self.assertRaises(openai.AuthenticationError):
            bad.chat.completions.create(model="demo-chat", messages=[])

    def test_zz_rate_limit_is_rate_limit_error(self):
        # The demo key's rule allows 600 requests per 60 s; exhaust it (bounded) and expect 429.
        last = None
        for _ in range(700):
            try:
                self.client.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "x"}])
            except openai.RateLimitError as e:
                last = e
                break
        self.assertIsNotNone(last, "no 429 within 700 requests")
        self.assertEqual(last.status_code, 429)
        self.assertEqual(last.code, "rate_limit_exceeded")
        self.assertEqual(last.response.headers["x-ratelimit-limit-requests"], "600")
        secs, ms = int(last.response.headers["retry-after"]), int(last.response.headers["retry-after-ms"])
        self.assertTrue(secs >= 1)
        self.assertEqual(secs, max(1, -(-ms // 1000)), "Retry-After is retry-after-ms rounded up")
        # What the SDK itself waits before retrying (max_retries > 0): the exact wait, not the
        # rounded-up second (a private method, but the one its retry loop calls).
        self.assertEqual(self.client._parse_retry_after_header(last.response.headers), ms / 1000)

    def _key_with_quota(self, name, column, budget):
        # A new key of the demo workspace with a daily quota of `budget` in `column`, written as
        # the console would (then the revision bump every gateway watches); a client with it,
        # once the gateway serves the key (its heartbeat, bounded).
        import hashlib, sqlite3
        secret = f"sk-maas-{name}-test-0123456789abcdef"
        db = sqlite3.connect(os.path.join(self.tmp, "maas.db"))
        ws = db.execute("SELECT workspace_id FROM api_keys ORDER BY id LIMIT 1").fetchone()[0]
        cur = db.execute("INSERT INTO api_keys (workspace_id, public_id, name, secret_hash, created_at) VALUES (?, ?, ?, ?, 0)",
                         (ws, f"key_{name}", name, hashlib.sha256(secret.encode()).hexdigest()))
        db.execute(f"INSERT INTO quotas (target, workspace_id, api_key_id, period, {column}) VALUES ('api_key', ?, ?, 'day', ?)", (ws, cur.lastrowid, budget))
        db.execute("UPDATE config_revision SET revision = revision + 1")
        db.commit()
        db.close()
        client = OpenAI(base_url=self.base + "/v1", api_key=secret, max_retries=2, timeout=10)
        for _ in range(100):
            try:
                client.models.list()
                break
            except openai.AuthenticationError:
                time.sleep(0.1)
        return client

    def test_zzz_spent_quota_is_rate_limit_error_with_insufficient_quota(self):
        # A key of the demo workspace with a quota of one request a day.
        client = self._key_with_quota("quota", "requests", 1)
        client.embeddings.create(model="demo-embed", input="x")
        with self.assertRaises(openai.RateLimitError) as ctx:
            client.embeddings.create(model="demo-embed", input="x")
        e = ctx.exception
        self.assertEqual((e.status_code, e.code, e.type), (429, "insufficient_quota", "insufficient_quota"))
        self.assertIn("daily quota of 1 requests", e.message)
        # Not retried: the SDK (max_retries=2) honours x-should-retry: a spent quota stays spent.
        self.assertEqual(e.response.headers["x-should-retry"], "false")


    def test_zzzz_spent_money_budget_is_rate_limit_error_with_insufficient_quota(self):
        # A key with a daily budget in money of 0.000001 (1,000 nano-units) on the demo model,
        # priced at 0.15 / 0.60 per million tokens: its first call (5 + 2 tokens, 1,950 nano)
        # spends it, the next is refused with the SDK's RateLimitError, not retried.
        client = self._key_with_quota("money", "spend_nanos", 1000)
        client.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "hi"}])
        with self.assertRaises(openai.RateLimitError) as ctx:
            client.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "hi"}])
        e = ctx.exception
        self.assertEqual((e.status_code, e.code, e.type), (429, "insufficient_quota", "insufficient_quota"))
        self.assertIn("this API key's daily quota of 0.000001 USD in money", e.message)
        self.assertEqual(e.response.headers["x-should-retry"], "false")


if __name__ == "__main__":
    main()
