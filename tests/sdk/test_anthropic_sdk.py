"""The official Anthropic Python SDK against the gateway's /v1/messages: `demo-chat`'s endpoint
speaks only chat completions (translated), `demo-agent`'s speaks Messages natively (passed
through, its usage read from message_start and message_delta). `maas mock-upstream` answers
both; loopback only, bounded."""

import anthropic
from anthropic import Anthropic

from served import ServedCase, main


WEATHER = {"name": "weather", "description": "The weather in a city", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


class AnthropicSdk(ServedCase):
    PREFIX = "maas-anthropic-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.base, cls.key = cls.served.base, cls.served.key
        # As Claude Code is pointed at it: ANTHROPIC_BASE_URL is the gateway's origin.
        cls.client = Anthropic(base_url=cls.base, api_key=cls.key, max_retries=0, timeout=10)

    def test_create_with_a_system_prompt(self):
        m = self.client.messages.create(model="demo-chat", max_tokens=100, system="Be brief.",
                                        messages=[{"role": "user", "content": "Hello"}])
        self.assertEqual((m.type, m.role, m.model), ("message", "assistant", "demo-chat"))
        self.assertEqual([b.type for b in m.content], ["text"])
        self.assertEqual(m.content[0].text, "Hello!")
        self.assertEqual(m.stop_reason, "end_turn")
        self.assertEqual((m.usage.input_tokens, m.usage.output_tokens), (5, 2))

    def test_stream_text_and_final_message(self):
        with self.client.messages.stream(model="demo-chat", max_tokens=100, messages=[{"role": "user", "content": "Hello"}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        self.assertEqual(text, "chunk 0 chunk 1 chunk 2 chunk 3")
        self.assertEqual(final.stop_reason, "end_turn")
        self.assertEqual(final.usage.output_tokens, 4)

    def test_tools_round_trip(self):
        first = self.client.messages.create(model="demo-chat", max_tokens=100, tools=[WEATHER],
                                            messages=[{"role": "user", "content": "Weather in Paris?"}])
        self.assertEqual(first.stop_reason, "tool_use")
        call = [b for b in first.content if b.type == "tool_use"][0]
        self.assertEqual((call.name, call.input), ("weather", {"q": "mock"}))
        # The tool's result goes back; the answer is text again.
        second = self.client.messages.create(model="demo-chat", max_tokens=100, tools=[WEATHER], messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ])
        self.assertEqual((second.stop_reason, second.content[0].text), ("end_turn", "Hello!"))

    def test_tools_streamed(self):
        with self.client.messages.stream(model="demo-chat", max_tokens=100, tools=[WEATHER],
                                         messages=[{"role": "user", "content": "Weather?"}]) as s:
            final = s.get_final_message()
        self.assertEqual(final.stop_reason, "tool_use")
        self.assertEqual([(b.type, b.name, b.input) for b in final.content], [("tool_use", "weather", {"q": "mock"})])
        self.assertEqual(final.usage.output_tokens, 6)

    def test_native_endpoint_create_stream_and_tools(self):
        m = self.client.messages.create(model="demo-agent", max_tokens=100, system="Be brief.",
                                        messages=[{"role": "user", "content": "Hello"}])
        self.assertEqual((m.id, m.content[0].text, m.stop_reason), ("msg_mock", "Hello!", "end_turn"))
        self.assertEqual((m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens), (9, 3, 4))
        with self.client.messages.stream(model="demo-agent", max_tokens=100, messages=[{"role": "user", "content": "Hello"}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        self.assertEqual((text, final.usage.output_tokens), ("Hello!", 4))
        first = self.client.messages.create(model="demo-agent", max_tokens=100, tools=[WEATHER],
                                            messages=[{"role": "user", "content": "Weather in Paris?"}])
        call = [b for b in first.content if b.type == "tool_use"][0]
        self.assertEqual((first.stop_reason, call.name, call.input), ("tool_use", "weather", {"q": "mock"}))
        second = self.client.messages.create(model="demo-agent", max_tokens=100, tools=[WEATHER], messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ])
        self.assertEqual(second.content[0].text, "Hello!")

    def test_models_list(self):
        self.assertIn("demo-chat", [m.id for m in self.client.models.list()])

    def test_count_tokens(self):
        n = self.client.messages.count_tokens(model="demo-chat", messages=[{"role": "user", "content": "Hello"}])
        self.assertGreater(n.input_tokens, 0)

    def test_errors_are_anthropic_shaped(self):
        bad = Anthropic(base_url=self.base, api_key="sk-maas-wrong", max_retries=0, timeout=10)
        with self.assertRaises(anthropic.AuthenticationError) as e:
            bad.messages.create(model="demo-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["error"]["type"], "authentication_error")
        with self.assertRaises(anthropic.NotFoundError) as e:
            self.client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["type"], "error")
        self.assertEqual(e.exception.body["error"]["type"], "not_found_error")
        with self.assertRaises(anthropic.BadRequestError):
            self.client.messages.create(model="demo-chat", max_tokens=10, messages=[{"role": "robot", "content": "hi"}])

    def test_zz_rate_limit_is_rate_limit_error(self):
        # The demo key's rule allows 600 requests per 60 s; exhaust it (bounded) and expect 429.
        last = None
        for _ in range(700):
            try:
                self.client.messages.create(model="demo-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
            except anthropic.RateLimitError as e:
                last = e
                break
        self.assertIsNotNone(last, "no 429 within 700 requests")
        self.assertEqual(last.body["error"]["type"], "rate_limit_error")
        self.assertGreaterEqual(int(last.response.headers["retry-after"]), 1)


if __name__ == "__main__":
    main()
