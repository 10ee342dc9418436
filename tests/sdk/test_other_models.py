"""The official OpenAI Python SDK's speech and image calls, and rerank over HTTP, through the
gateway to `maas mock-upstream` (which answers them as those models do): the answers arrive
whole (speech's audio byte for byte, streamed), and the gateway's /metrics counts each in its
unit. Loopback only, bounded."""
import json, urllib.request

from openai import OpenAI

from served import ServedCase, main

AUDIO = bytes(i % 251 for i in range(4000))


class OtherModels(ServedCase):
    PREFIX = "maas-kinds-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.client = OpenAI(base_url=cls.served.base + "/v1", api_key=cls.served.key, max_retries=0, timeout=10)

    def test_speech_streams_the_audio_back(self):
        with self.client.audio.speech.with_streaming_response.create(model="demo-chat", voice="alloy", input="Hello there") as r:
            self.assertEqual(r.headers["content-type"], "audio/mpeg")
            pieces = list(r.iter_bytes())
        self.assertEqual(b"".join(pieces), AUDIO)
        whole = self.client.audio.speech.create(model="demo-chat", voice="alloy", input="Hi", response_format="wav")
        self.assertEqual(whole.read(), AUDIO)

    def test_images(self):
        r = self.client.images.generate(model="demo-chat", prompt="a cat", n=2)
        self.assertEqual(len(r.data), 2)
        self.assertEqual(r.usage.total_tokens, 207)
        r = self.client.images.generate(model="demo-chat", prompt="a cat", response_format="url")
        self.assertEqual(r.data[0].url, "https://images.example/mock-0.png")

    def test_rerank(self):
        body = json.dumps({"model": "demo-chat", "query": "cat", "documents": ["a cat", "a dog", "the cat sat"], "top_n": 2}).encode()
        req = urllib.request.Request(self.served.base + "/v1/rerank", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {self.served.key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.load(r)
        self.assertEqual([x["index"] for x in answer["results"]], [0, 2])
        self.assertEqual(answer["results"][0]["document"]["text"], "a cat")


if __name__ == "__main__":
    main()
