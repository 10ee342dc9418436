"""The official OpenAI Python SDK's Responses API, and the OpenAI Agents SDK on it, against the
gateway: `demo-chat`'s endpoint speaks only chat completions (the gateway translates), and
`demo-agent`'s speaks Responses natively (passed through). `maas mock-upstream` answers both;
loopback only, bounded."""
import asyncio

import openai
from openai import OpenAI, AsyncOpenAI

from served import ServedCase, main

LOOKUP = {"type": "function", "name": "lookup", "description": "Looks a word up",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"], "additionalProperties": False},
          "strict": True}
# (model, its text answer, streamed text, usage (input, output, cached)) in each mode.
MODES = [("demo-chat", "Hello!", "chunk 0 chunk 1 chunk 2 chunk 3", (5, 2, 0)),
         ("demo-agent", "Hello!", "Hello!", (8, 3, 2))]


class Responses(ServedCase):
    PREFIX = "maas-responses-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.client = OpenAI(base_url=cls.served.base + "/v1", api_key=cls.served.key, max_retries=0, timeout=10)

    def test_create(self):
        for model, text, _, (inp, out, cached) in MODES:
            with self.subTest(model=model):
                r = self.client.responses.create(model=model, instructions="Be brief.", input="Hello")
                self.assertEqual((r.object, r.status), ("response", "completed"))
                self.assertEqual(r.output_text, text)
                self.assertEqual((r.usage.input_tokens, r.usage.output_tokens), (inp, out))
                self.assertEqual(r.usage.input_tokens_details.cached_tokens, cached)

    def test_stream(self):
        for model, _, streamed, (inp, out, _) in MODES:
            with self.subTest(model=model):
                with self.client.responses.stream(model=model, input="Hello") as s:
                    deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
                    final = s.get_final_response()
                self.assertEqual("".join(deltas), streamed)
                self.assertEqual(final.output_text, streamed)
                self.assertEqual(final.status, "completed")
                self.assertEqual(final.usage.input_tokens, inp)

    def test_tools_round_trip_streamed_and_not(self):
        for model, text, _, _ in MODES:
            for stream in (False, True):
                with self.subTest(model=model, stream=stream):
                    conversation = [{"role": "user", "content": "Look up mock"}]
                    if stream:
                        with self.client.responses.stream(model=model, input=conversation, tools=[LOOKUP]) as s:
                            first = s.get_final_response()
                    else:
                        first = self.client.responses.create(model=model, input=conversation, tools=[LOOKUP])
                    calls = [o for o in first.output if o.type == "function_call"]
                    self.assertEqual([(c.name, c.arguments) for c in calls], [("lookup", '{"q": "mock"}')])
                    conversation += [c.model_dump(exclude_none=True) for c in calls]
                    conversation.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "a stand-in"})
                    second = self.client.responses.create(model=model, input=conversation, tools=[LOOKUP])
                    self.assertEqual(second.output_text, text)

    def test_stateful_features_need_a_native_endpoint(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.responses.create(model="demo-chat", input="more", previous_response_id="resp_1")
        self.assertIn("previous_response_id", e.exception.message)
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.responses.create(model="demo-chat", input="hi", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
        self.assertIn("web_search", e.exception.message)
        # Offered only, a built-in tool is not offered to the chat model: the call is served.
        r = self.client.responses.create(model="demo-chat", input="hi", tools=[{"type": "web_search"}])
        self.assertEqual(r.output_text, "Hello!")
        # The native endpoint takes it as it is.
        r = self.client.responses.create(model="demo-agent", input="more", previous_response_id="resp_1")
        self.assertEqual(r.output_text, "Hello!")

    def test_agents_sdk_runs_a_tool_loop(self):
        from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
        set_tracing_disabled(True)
        looked_up = []

        @function_tool
        def lookup(q: str) -> str:
            """Looks a word up."""
            looked_up.append(q)
            return "a stand-in"

        async def run(model):
            client = AsyncOpenAI(base_url=self.served.base + "/v1", api_key=self.served.key, max_retries=0, timeout=10)
            agent = Agent(name="helper", instructions="Use the tool.", tools=[lookup],
                          model=OpenAIResponsesModel(model=model, openai_client=client))
            result = await Runner.run(agent, "Look up mock", max_turns=4)
            streamed = Runner.run_streamed(agent, "Look up mock", max_turns=4)
            async for _ in streamed.stream_events():
                pass
            return result.final_output, streamed.final_output

        for model, text, streamed, _ in MODES:
            with self.subTest(model=model):
                looked_up.clear()
                self.assertEqual(asyncio.run(run(model)), (text, streamed))
                self.assertEqual(looked_up, ["mock", "mock"])


if __name__ == "__main__":
    main()
