// The official OpenAI Node SDK (`openai` from npm, pinned in end2end/package.json) against the
// gateway: chat, streaming with usage, responses (create, stream, tools; translated and native),
// leaving a stream early (the upstream sees the cancel),
// embeddings in the SDK's default base64 encoding, models, and its error classes. Loopback only,
// every wait bounded. Run by scripts/test-openai-sdk.sh (NODE_PATH=end2end/node_modules).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const OpenAI = require('openai');

const BIN = process.env.MAAS_BIN;
const CHUNKS = 20;
const procs = [];
let tmp, mockUrl, client, key;

/** Starts `maas args…` and resolves with the first match of `pattern` on its stdout (30 s). */
function start(args, env, pattern) {
  const p = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(p);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start`)), 30_000);
    readline.createInterface({ input: p.stdout }).on('line', (line) => {
      const m = line.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    p.on('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

async function mockStats() {
  return (await fetch(`${mockUrl}/_mock/stats`)).json();
}

before(async () => {
  assert.ok(BIN, 'MAAS_BIN must point at the maas binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'maas-node-sdk-'));
  const env = { ...process.env, RUST_LOG: 'warn' };
  // Slow enough that a stream is still running when the client leaves it.
  mockUrl = await start(['mock-upstream', '--listen', '127.0.0.1:0', '--chunks', String(CHUNKS), '--chunk-delay-ms', '25'], env, /mock upstream: (http:\/\/\S+)\/v1/);
  const base = await start(['serve', '--demo-upstream', mockUrl], {
    ...env, DATABASE_URL: `sqlite://${tmp}/maas.db?mode=rwc`, MAAS_DATA_DIR: tmp, MAAS_LISTEN: '127.0.0.1:0',
  }, /MaaS console: (http:\/\/\S+)/);
  key = fs.readFileSync(path.join(tmp, 'demo.key'), 'utf8').trim();
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 10_000 });
});

after(() => {
  for (const p of procs) p.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('chat completion', async () => {
  const r = await client.chat.completions.create({ model: 'demo-chat', messages: [{ role: 'user', content: 'Hello' }] });
  assert.equal(r.choices[0].message.content, 'Hello!');
  assert.equal(r.usage.total_tokens, 7);
  // The SDK reads the limit headers from the raw response.
  const { response } = await client.chat.completions.create({ model: 'demo-chat', messages: [] }).withResponse();
  assert.equal(response.headers.get('x-ratelimit-limit-requests'), '600');
});

test('streamed chat completion with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'demo-chat', messages: [{ role: 'user', content: 'Hello' }], stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let usage;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    usage = chunk.usage ?? usage;
  }
  assert.equal(text, Array.from({ length: CHUNKS }, (_, i) => `chunk ${i}`).join(' '));
  assert.equal(usage.completion_tokens, CHUNKS);
});

// Responses: `demo-chat` is translated to chat completions, `demo-agent` speaks it natively.
const CHUNKED = Array.from({ length: CHUNKS }, (_, i) => `chunk ${i}`).join(' ');
const RESPONSES = [['demo-chat', CHUNKED, [5, 2]], ['demo-agent', 'Hello!', [8, 3]]];
const LOOKUP = {
  type: 'function', name: 'lookup', description: 'Looks a word up', strict: true,
  parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false },
};

test('responses: create and stream, translated and native', async () => {
  for (const [model, streamed, [input, output]] of RESPONSES) {
    const r = await client.responses.create({ model, instructions: 'Be brief.', input: 'Hello' });
    assert.equal(r.output_text, 'Hello!', model);
    assert.deepEqual([r.usage.input_tokens, r.usage.output_tokens], [input, output], model);
    const stream = await client.responses.create({ model, input: 'Hello', stream: true });
    let text = '';
    let done;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') done = event.response;
    }
    assert.equal(text, streamed, model);
    assert.equal(done.output_text ?? done.output[0].content[0].text, streamed, model);
  }
});

test('responses: a tool call and its output, streamed and not', async () => {
  for (const [model] of RESPONSES) {
    const conversation = [{ role: 'user', content: 'Look up mock' }];
    const first = await client.responses.stream({ model, input: conversation, tools: [LOOKUP] }).finalResponse();
    const calls = first.output.filter((o) => o.type === 'function_call');
    assert.deepEqual(calls.map((c) => [c.name, c.arguments]), [['lookup', '{"q": "mock"}']], model);
    conversation.push(...calls, { type: 'function_call_output', call_id: calls[0].call_id, output: 'a stand-in' });
    const second = await client.responses.create({ model, input: conversation, tools: [LOOKUP] });
    assert.equal(second.output_text, 'Hello!', model);
  }
});

test('leaving a stream early cancels it upstream', async () => {
  const before = (await mockStats()).cancelled;
  const stream = await client.chat.completions.create({ model: 'demo-chat', messages: [], stream: true });
  for await (const chunk of stream) {
    assert.equal(chunk.choices[0].delta.content, 'chunk 0');
    break; // the SDK aborts the HTTP request
  }
  let cancelled = before;
  for (let i = 0; i < 100 && cancelled === before; i++) {
    await new Promise((r) => setTimeout(r, 50));
    cancelled = (await mockStats()).cancelled;
  }
  assert.equal(cancelled, before + 1, 'the mock saw its stream cancelled, well before its last chunk');
});

test('embeddings in the SDK default encoding (base64) and as floats', async () => {
  const r = await client.embeddings.create({ model: 'demo-embed', input: ['a', 'b', 'c'] });
  assert.deepEqual(r.data.map((d) => d.index), [0, 1, 2]);
  assert.deepEqual(r.data[2].embedding, [1, 2, 3, 4, 5, 6, 7, 8].map((k) => 2 + k / 8));
  const f = await client.embeddings.create({ model: 'demo-embed', input: 'a', encoding_format: 'float' });
  assert.deepEqual(f.data[0].embedding, [1, 2, 3, 4, 5, 6, 7, 8].map((k) => k / 8));
});

test('models list and an unknown model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('demo-chat'), ids.join());
  assert.equal((await client.models.retrieve('demo-chat')).id, 'demo-chat');
  await assert.rejects(client.models.retrieve('no-such-model'), OpenAI.NotFoundError);
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: [] }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
    assert.equal(e.code, 'model_not_found');
    return true;
  });
});

test('a wrong key is an AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: client.baseURL, apiKey: 'sk-maas-wrong', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'demo-chat', messages: [] }), OpenAI.AuthenticationError);
});

// Last (node:test runs a file's tests in order): it spends the demo key's 600 requests a minute.
test('the rate limit is a RateLimitError carrying the exact wait', async () => {
  let err;
  for (let i = 0; i < 700 && !err; i++) {
    try {
      await client.chat.completions.create({ model: 'demo-chat', messages: [{ role: 'user', content: 'x' }] });
    } catch (e) {
      err = e;
    }
  }
  assert.ok(err instanceof OpenAI.RateLimitError, `no 429 within 700 requests (${err})`);
  assert.equal(err.code, 'rate_limit_exceeded');
  const ms = Number(err.headers.get('retry-after-ms'));
  const secs = Number(err.headers.get('retry-after'));
  assert.ok(ms > 0 && ms <= 60_060, String(ms));
  assert.equal(secs, Math.max(1, Math.ceil(ms / 1000)));
  assert.equal(err.headers.get('x-ratelimit-remaining-requests'), '0');
});
