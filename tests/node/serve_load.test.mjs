// quill serve under load (issue 21), with Node's built-ins alone: `node --test` on this
// file starts `$QUILL_BIN serve stories260K.gguf --parallel 4` on 127.0.0.1 and sends it 16
// clients at once, 10 requests each: completions and chat completions, whole answers and
// streams, a quarter of the streams cut by their client after a few chunks. (stories260K
// has no chat template: the server gets a copy of it with a ChatML one.) Then:
// - every request that was not cut is a 200 with a finish reason and a usage that counts
//   what it got: the prompt's tokens as `quill tokenize` counts them (BOS included; for a
//   chat, the ChatML text written out here), and the tokens received (a stream's text
//   chunks; max_tokens exactly when it ends on length);
// - the server still answers /health, and /metrics shows no slot busy and nothing queued;
// - its resident memory after the run is within 10% of what it was after a warm-up round
//   of the same clients (a leak per request would show here, on a release build);
// - SIGTERM stops it with exit status 0 and nothing from the sanitizers on stderr (make
//   check runs this file against the ASan + UBSan build, whose reports fail the run).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { copyWithStringKey } from './gguf.mjs';
import { eventText, postJson, postStream, request, sleep, startQuillServe } from './serve_util.mjs';

const BIN = process.env.QUILL_BIN ?? 'bin/quill';
const MODEL_NAME = 'models/stories260K.gguf';
const MODEL = fileURLToPath(new URL(`../../../shared/${MODEL_NAME}`, import.meta.url));
const CLIENTS = 16;
const REQUESTS_PER_CLIENT = 10;
const PARALLEL = 4;
const CHUNKS_BEFORE_CUT = 3;
const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Ben went to the park',
  'One day, a bird'];
const SANITIZER_REPORTS = ['runtime error', 'AddressSanitizer', 'LeakSanitizer'];
// A template quill knows as ChatML; the conversation it gives, written out by hand.
const CHATML = '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}';
const chatml = (user) => `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;

// The k-th request of the run (k = client * REQUESTS_PER_CLIENT + i), in a cycle of 4: a
// completion whole and streamed, then a chat whole and streamed; 2 streams in 8 are cut by
// their client (a completion's and a chat's); greedy and sampled (seeded) in turn; 4 to 32
// new tokens, or 60 for a stream that will be cut (so that it is cut mid-stream).
function plan(k) {
  const stream = k % 2 === 1;
  const chat = k % 4 >= 2;
  const cut = stream && (k % 16 === 1 || k % 16 === 11);
  const user = PROMPTS[(k >> 2) % PROMPTS.length];
  const body = {
    ...(chat ? { messages: [{ role: 'user', content: user }] } : { prompt: user }),
    max_tokens: cut ? 60 : 4 + ((k * 7) % 29),
    temperature: k % 3 === 0 ? 0 : 0.8,
    seed: k,
  };
  if (stream) Object.assign(body, { stream: true, stream_options: { include_usage: true } });
  return { k, stream, chat, cut, body, promptText: chat ? chatml(user) : user };
}

const endpoint = (p) => (p.chat ? '/v1/chat/completions' : '/v1/completions');

// What the client got: the status, the finish reason, the usage, and for a stream the
// number of chunks that carried text; cut: the client went away.
async function send(url, p) {
  if (!p.stream) {
    const res = await postJson(`${url}${endpoint(p)}`, p.body);
    const choice = res.json?.choices?.[0];
    return { status: res.status, headers: res.headers, body: res.text, finish: choice?.finish_reason,
      usage: res.json?.usage, n_choices: res.json?.choices?.length, role: choice?.message?.role };
  }
  let textChunks = 0;
  const res = await postStream(`${url}${endpoint(p)}`, p.body, (event) => {
    if (eventText(event) !== '') textChunks++;
    return !(p.cut && textChunks === CHUNKS_BEFORE_CUT);
  });
  const finishes = res.events.map((e) => e.choices?.[0]?.finish_reason).filter((f) => f);
  const errors = res.events.filter((e) => e.error);
  return { status: res.status, headers: res.headers, body: res.text, cut: res.cut,
    done: res.done, finishes, errors, finish: finishes[0], textChunks,
    usage: res.events.find((e) => e.usage)?.usage, role: res.events[0]?.choices?.[0]?.delta?.role };
}

// A 503 (the queue is full) is a busy server's right answer: the client waits as
// Retry-After says (at most a second here) and sends the request again.
async function sendUntilTaken(url, p, tally) {
  for (let attempt = 0; ; attempt++) {
    const got = await send(url, p);
    if (got.status !== 503 || attempt === 20) return got;
    tally.retried++;
    await sleep(Math.min(1000, 1000 * Number(got.headers['retry-after'] ?? 1)));
  }
}

// Runs `perClient` requests on each of CLIENTS clients at once, each client's in turn, and
// returns what each request got beside its plan.
async function round(url, perClient, tally) {
  const clients = Array.from({ length: CLIENTS }, async (_, c) => {
    const results = [];
    for (let i = 0; i < perClient; i++) {
      const p = plan(c * perClient + i);
      results.push({ p, got: await sendUntilTaken(url, p, tally) });
    }
    return results;
  });
  return (await Promise.all(clients)).flat();
}

// The usage of one request that was not cut, checked against what the client received.
function checkCompleted({ p, got }, promptTokens) {
  const what = `request ${p.k} (${JSON.stringify(p.body)})`;
  assert.equal(got.status, 200, `${what}: status ${got.status}: ${got.body}`);
  assert.ok(['stop', 'length'].includes(got.finish), `${what}: finish_reason ${got.finish}`);
  assert.ok(got.usage, `${what}: no usage`);
  assert.equal(got.usage.prompt_tokens, promptTokens.get(p.promptText), `${what}: prompt_tokens`);
  assert.equal(got.usage.total_tokens, got.usage.prompt_tokens + got.usage.completion_tokens,
    `${what}: total_tokens`);
  if (got.finish === 'length') {
    assert.equal(got.usage.completion_tokens, p.body.max_tokens, `${what}: completion_tokens`);
  } else {
    assert.ok(got.usage.completion_tokens < p.body.max_tokens, `${what}: completion_tokens`);
  }
  if (p.stream) {
    assert.equal(got.errors.length, 0, `${what}: error events ${JSON.stringify(got.errors)}`);
    assert.equal(got.finishes.length, 1, `${what}: finish reasons ${got.finishes}`);
    assert.ok(got.done, `${what}: no data: [DONE]`);
    // No stop strings, so each token's text is whole and sent as it is drawn (stories260K
    // writes ASCII); the end-of-text token has no text and is not counted.
    assert.equal(got.textChunks, got.usage.completion_tokens, `${what}: text chunks`);
  } else {
    assert.equal(got.n_choices, 1, `${what}: choices`);
  }
  if (p.chat) assert.equal(got.role, 'assistant', `${what}: the answer's role`);
}

// `quill tokenize MODEL TEXT` prints the ids the generation starts from (BOS included):
// the count a completion's usage must give as prompt_tokens; a chat's text is read with its
// special tokens, as the server reads it.
function promptTokenCounts(model) {
  const counts = new Map();
  for (const user of PROMPTS) {
    for (const [text, flags] of [[user, []], [chatml(user), ['--special']]]) {
      const ids = execFileSync(BIN, ['tokenize', model, ...flags, text], { encoding: 'utf8' });
      counts.set(text, ids.trim().split(/\s+/).length);
    }
  }
  return counts;
}

// /metrics' samples summed by name (over any labels): {quill_slots_active: 0, ...}.
async function metrics(url) {
  const res = await request(`${url}/metrics`);
  assert.equal(res.status, 200, `GET /metrics answered ${res.status}: ${res.text}`);
  const values = {};
  for (const line of res.text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m) values[m[1]] = (values[m[1]] ?? 0) + Number(m[3]);
  }
  return values;
}

// Waits (up to 5 s) for the server to have no slot busy and nothing queued: a cut stream
// gives its slot back at its next token, not at once.
async function metricsWhenIdle(url) {
  let m;
  for (let waited = 0; waited < 5000; waited += 100) {
    m = await metrics(url);
    if (m.quill_slots_active === 0 && m.quill_queue_length === 0) break;
    await sleep(100);
  }
  return m;
}

const missing = existsSync(MODEL) ? false : `../shared/${MODEL_NAME} is missing`;
if (missing && process.env.CI === 'true') {
  test('the load test needs ../shared', () => assert.fail(`${missing} (CI needs ../shared beside the checkout)`));
}

test(`quill serve: ${CLIENTS} clients x ${REQUESTS_PER_CLIENT} requests, --parallel ${PARALLEL}`,
  { skip: missing, timeout: 60000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'quill-load-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const model = join(dir, 'stories260K-chatml.gguf');
    copyWithStringKey(MODEL, model, 'tokenizer.chat_template', CHATML);
    const promptTokens = promptTokenCounts(model);
    const { server, url } = await startQuillServe(BIN, model, ['--parallel', String(PARALLEL)]);
    const tally = { retried: 0 };
    try {
      await round(url, REQUESTS_PER_CLIENT, tally); // a warm-up: the same load, once
      await sleep(500);
      const rssBefore = server.residentKiB();
      const before = await metrics(url).catch(() => ({}));
      const results = await round(url, REQUESTS_PER_CLIENT, tally);
      const completed = results.filter((r) => !r.got.cut);
      const cut = results.length - completed.length;
      const streamed = completed.filter((r) => r.p.stream).length;
      const chats = results.filter((r) => r.p.chat).length;
      t.diagnostic(`${results.length} requests (${chats} chats): ${completed.length - streamed} ` +
        `whole, ${streamed} streamed, ${cut} cut mid-stream, ${tally.retried} retried after a 503`);

      await t.test('every request not cut is a 200 whose usage counts what it got', () => {
        assert.equal(results.length, CLIENTS * REQUESTS_PER_CLIENT);
        assert.equal(cut, results.filter((r) => r.p.cut).length, 'streams cut');
        for (const r of completed) checkCompleted(r, promptTokens);
      });

      await t.test('the server is still up: /health', async () => {
        const health = await request(`${url}/health`);
        assert.equal(health.status, 200, health.text);
      });

      await t.test('no slot busy, nothing queued, every request counted: /metrics', async () => {
        const after = await metricsWhenIdle(url);
        assert.equal(after.quill_slots_active, 0, 'quill_slots_active');
        assert.equal(after.quill_queue_length, 0, 'quill_queue_length');
        assert.equal(after.quill_requests_total - before.quill_requests_total, results.length,
          'quill_requests_total grew by the requests sent');
        const generated = completed.reduce((n, r) => n + r.got.usage.completion_tokens, 0);
        assert.ok(after.quill_tokens_generated_total - before.quill_tokens_generated_total >= generated,
          `quill_tokens_generated_total grew by at least the ${generated} tokens received`);
      });

      await t.test('resident memory within 10% of after the warm-up', async (st) => {
        await sleep(500);
        const rssAfter = server.residentKiB();
        st.diagnostic(`VmRSS: ${rssBefore} KiB after the warm-up, ${rssAfter} KiB after the run`);
        assert.ok(rssAfter <= rssBefore * 1.1, `VmRSS grew from ${rssBefore} to ${rssAfter} KiB`);
      });
    } finally {
      const status = await server.stop();
      await t.test('SIGTERM stops it: exit status 0, no sanitizer report', () => {
        assert.deepEqual(status, { code: 0, signal: null }, server.stderr);
        for (const report of SANITIZER_REPORTS) {
          assert.ok(!server.stderr.includes(report), `"${report}" on stderr:\n${server.stderr}`);
        }
      });
    }
  });
