"""The official OpenAI Python SDK's transcription, translation, speech, image generation and
edit calls, and rerank over HTTP, through the gateway to `maas mock-upstream` (which answers them
as those models do) on the demo's model of each kind. Each model is given, through the admin
API, a failing endpoint before a working one and a request rule: every call fails over, the one
past the rule gets the SDK's RateLimitError, and /metrics counts each in its unit as the mock
reported it. A 20 MB upload streams through with the gateway's peak memory flat. Loopback only,
bounded."""
import datetime, hashlib, io, json, os, re, subprocess, tempfile, time, urllib.request, wave

import openai
from openai import OpenAI

from served import BIN, ServedCase, main

AUDIO = bytes(i % 251 for i in range(4000))
METRICS_TOKEN = "sdk-metrics-token"


def wav(seconds, rate=16000):
    """A 16-bit mono WAV of `seconds` (a tone's worth of varied samples), as bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes((i * 7) % 256 for i in range(int(seconds * rate) * 2)))
    return buf.getvalue()


class OtherModels(ServedCase):
    PREFIX = "maas-kinds-"
    ENV = {"MAAS_METRICS_TOKEN": METRICS_TOKEN, "MAAS_USAGE_FLUSH": "200ms"}
    # Calls each test makes that are answered; the rule refuses the next.
    CALLS = {"demo-whisper": 4, "demo-tts": 2, "demo-image": 3, "demo-rerank": 1}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.client = OpenAI(base_url=cls.served.base + "/v1", api_key=cls.served.key, max_retries=0, timeout=30)
        env = dict(os.environ, DATABASE_URL=f"sqlite://{cls.served.tmp}/maas.db?mode=rwc")
        cls.admin = subprocess.run([BIN, "admin-token", "--name", "sdk", "--write"], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
        ws = cls.api("GET", "/workspaces?search=demo")["items"][0]["id"]
        mock = cls.served.mock_url
        for name, calls in cls.CALLS.items():
            model = cls.api("GET", f"/models?search={name}")["items"][0]["id"]
            eps = [{"model_id": "mock-model", "url": f"{mock}/name/bad/status/503/v1"},
                   {"model_id": "mock-model", "url": f"{mock}/name/good/v1"}]
            rules = [{"kind": "requests", "target": "workspace", "workspace_id": ws, "limit": calls, "duration_secs": 3600}]
            cls.api("PATCH", f"/models/{model}", {"policy": "round_robin", "endpoints": eps, "rules": rules})

    @classmethod
    def api(cls, method, path, body=None):
        req = urllib.request.Request(cls.served.base + "/api/v1" + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {cls.admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def tried(self, path):
        """The endpoints the mock saw calls of `path` on, in order."""
        with urllib.request.urlopen(self.served.mock_url + "/_mock/requests", timeout=10) as r:
            return [x for x in json.load(r) if x["path"].endswith(path)]

    def units(self, unit):
        req = urllib.request.Request(self.served.base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        return sum(float(v) for v in re.findall(r'^maas_gateway_units_total\{[^}]*unit="' + unit + r'"[^}]*\} (\S+)$', text, re.M))

    def peak_rss_kib(self):
        with open(f"/proc/{self.served.server.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))

    def test_transcription_and_translation_of_uploads_counted_in_seconds(self):
        audio = wav(2.5)
        r = self.client.audio.transcriptions.create(model="demo-whisper", file=("hello.wav", audio, "audio/wav"), language="en")
        self.assertEqual(r.text, f"mock transcript of {len(audio)} bytes")
        r = self.client.audio.translations.create(model="demo-whisper", file=("hello.wav", audio), response_format="verbose_json")
        self.assertEqual((r.text, r.duration), (f"mock translation of {len(audio)} bytes", 3.0))
        text = self.client.audio.transcriptions.create(model="demo-whisper", file=("hello.wav", audio), response_format="text")
        self.assertEqual(text.strip(), f"mock transcript of {len(audio)} bytes")
        # 20 MB through the gateway: spooled, never held whole, so its peak memory stays flat.
        with tempfile.TemporaryFile() as big:
            big.write(wav(655))
            size = big.tell()
            big.seek(0)
            before = self.peak_rss_kib()
            r = self.client.audio.transcriptions.create(model="demo-whisper", file=("long.wav", big, "audio/wav"))
            grew = self.peak_rss_kib() - before
        self.assertEqual(r.text, f"mock transcript of {size} bytes")
        self.assertGreater(size, 20_000_000)
        self.assertLess(grew, 8 * 1024, f"the gateway's peak RSS grew {grew} KiB for a {size} byte upload")
        # Every call went to the failing endpoint or through it to the working one, the file whole.
        tries = self.tried("/audio/transcriptions") + self.tried("/audio/translations")
        self.assertEqual({t["name"] for t in tries}, {"bad", "good"})
        big_digest = [t["body"]["file"]["sha256"] for t in tries if t["body"]["file"]["bytes"] == size]
        self.assertTrue(big_digest and all(d == big_digest[0] for d in big_digest))
        with self.assertRaises(openai.RateLimitError):
            self.client.audio.transcriptions.create(model="demo-whisper", file=("hello.wav", audio))
        # Seconds as the mock reported them: 3 (2.5 rounded up) for each of the three small
        # calls answered with usage (text answers carry none), 655 for the long one: in
        # /metrics, and in the stored usage the admin API and the CSV export read.
        self.assertEqual(self.units("seconds"), 3 + 3 + 655)
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        for _ in range(50):  # until the gateway's next usage flush, bounded
            rows = [r for r in self.api("GET", f"/usage/daily?from={today}&to={today}")["items"] if r["model"] == "demo-whisper"]
            if sum(r["units"] for r in rows) == 3 + 3 + 655:
                break
            time.sleep(0.1)
        self.assertEqual([(r["units"], r["unit"]) for r in rows], [(3 + 3 + 655, "seconds")])

    def test_speech_streams_the_audio_back(self):
        with self.client.audio.speech.with_streaming_response.create(model="demo-tts", voice="alloy", input="Hello there") as r:
            self.assertEqual(r.headers["content-type"], "audio/mpeg")
            pieces = list(r.iter_bytes())
        self.assertEqual(b"".join(pieces), AUDIO)
        whole = self.client.audio.speech.create(model="demo-tts", voice="alloy", input="Hi", response_format="wav")
        self.assertEqual(whole.read(), AUDIO)
        with self.assertRaises(openai.RateLimitError):
            self.client.audio.speech.create(model="demo-tts", voice="alloy", input="Hi")
        self.assertEqual(self.units("characters"), len("Hello there") + len("Hi"))
        self.assertEqual([t["name"] for t in self.tried("/audio/speech")][:2], ["bad", "good"])

    def test_images_generated_and_edited(self):
        r = self.client.images.generate(model="demo-image", prompt="a cat", n=2)
        self.assertEqual(len(r.data), 2)
        self.assertEqual(r.usage.total_tokens, 207)
        r = self.client.images.generate(model="demo-image", prompt="a cat", response_format="url")
        self.assertEqual(r.data[0].url, "https://images.example/mock-0.png")
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
        r = self.client.images.edit(model="demo-image", image=("cat.png", png, "image/png"), prompt="add a hat", n=3)
        self.assertEqual(len(r.data), 3)
        edits = self.tried("/images/edits")
        self.assertEqual(edits[-1]["body"]["image"]["sha256"], hashlib.sha256(png).hexdigest())
        self.assertEqual(edits[-1]["body"]["prompt"], "add a hat")
        with self.assertRaises(openai.RateLimitError):
            self.client.images.generate(model="demo-image", prompt="x")
        self.assertEqual(self.units("images"), 2 + 1 + 3)

    def test_rerank(self):
        body = json.dumps({"model": "demo-rerank", "query": "cat", "documents": ["a cat", "a dog", "the cat sat"], "top_n": 2}).encode()
        post = lambda: urllib.request.Request(self.served.base + "/v1/rerank", data=body, method="POST",
                                              headers={"Authorization": f"Bearer {self.served.key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(post(), timeout=10) as r:
            answer = json.load(r)
        self.assertEqual([x["index"] for x in answer["results"]], [0, 2])
        self.assertEqual(answer["results"][0]["document"]["text"], "a cat")
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post(), timeout=10)
        self.assertEqual(refused.exception.code, 429)
        self.assertEqual(json.load(refused.exception)["error"]["code"], "rate_limit_exceeded")
        self.assertEqual(self.units("documents"), 3)

    def test_a_chat_call_to_an_embedding_model_is_refused_saying_where_it_is_served(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(model="demo-embed", messages=[{"role": "user", "content": "hi"}])
        self.assertIn("is an embedding model: it is not served on /v1/chat/completions. Call it on /v1/embeddings.", str(e.exception))


if __name__ == "__main__":
    main()
