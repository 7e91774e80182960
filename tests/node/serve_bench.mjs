// The serve benchmark (issue 21; `make bench-serve`), with Node's built-ins alone: C
// concurrent streaming clients (C = 1, 4, 8), each sending REQUESTS completions in turn,
// every one a prompt of 128 tokens (BOS included) asking for 64 tokens at temperature 0.
// For each round it prints the aggregate generated tokens/s (every completion token over the
// round's wall time) and the time to first token (from sending a request to its first text
// chunk), p50 and p95.
//
//   node tests/node/serve_bench.mjs URL...     rounds against servers already running
//   node tests/node/serve_bench.mjs --model FILE --quill BIN [--llama-server BIN]
//        [--threads 2] [--parallel 8]          starts them on FILE, then the same rounds
//
// The servers take turns (A B A B: each client count's rounds alternate between them, so
// that a change in the machine's load falls on both), and the medians are printed side by
// side with their ratio. Every request asks "ignore_eos" (both servers then go on to
// max_tokens past the end-of-text token) and "cache_prompt": false (both would otherwise
// reuse the start of a slot's earlier prompt). Every request of a run has its own prompt,
// which differs from the others from its first token on, so no server could reuse another's
// prompt anyway.
// Both servers run from start to end; the one not measured is idle.
import { existsSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';

import { eventText, postJson, postStream, startLlamaServer, startQuillServe } from './serve_util.mjs';

const { values: opt, positionals: urls } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string' },
    quill: { type: 'string' },
    'llama-server': { type: 'string' },
    threads: { type: 'string', default: '2' },
    parallel: { type: 'string', default: '8' },
    clients: { type: 'string', default: '1,4,8' },
    requests: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '2' },
    'prompt-tokens': { type: 'string', default: '128' },
    'max-tokens': { type: 'string', default: '64' },
  },
});
const CLIENTS = opt.clients.split(',').map(Number);
const REQUESTS = Number(opt.requests);
const REPEATS = Number(opt.repeats);
const PROMPT_TOKENS = Number(opt['prompt-tokens']);
const MAX_TOKENS = Number(opt['max-tokens']);
// Each slot of either server holds a prompt and its answer with room to spare: 512
// positions, llama-server's -c split over its -np slots, quill's --context per slot.
const SLOT_CONTEXT = 512;

// Text for the prompts: any text does, it is cut to the token count the server says (the
// bench model's vocabulary spells it byte by byte).
const FILLER = 'Once upon a time, in a small village by the sea, there lived an old fisherman ' +
  'who told the children stories about the stars, the tides and the ships that never came ' +
  'back. Every evening they sat on the warm stones of the harbour and listened, and every ' +
  'evening the story was a little different from the one before. ';

async function tokenCount(url, text) {
  return (await postJson(`${url}/tokenize`, { content: text })).json.tokens.length;
}

// A prompt that the server tokenizes to exactly n tokens with its BOS: the i-th one starts
// with its own number, then the filler, cut at the longest prefix of at most n - 1 tokens
// (found by bisection on its length). A word can add several tokens at once, so when that
// prefix falls short the filler starts one character later and the search runs again.
async function promptOfTokens(url, i, n) {
  const filler = FILLER.repeat(Math.ceil(n / 20));
  for (let shift = 0; shift < 20; shift++) {
    const text = `${i}. ${filler.slice(shift)}`;
    let lo = 1;
    let hi = text.length;
    while (lo < hi) { // the longest prefix text[0, lo) of at most n - 1 tokens
      const mid = Math.ceil((lo + hi) / 2);
      if (await tokenCount(url, text.slice(0, mid)) <= n - 1) lo = mid; else hi = mid - 1;
    }
    const prompt = text.slice(0, lo);
    if (await tokenCount(url, prompt) === n - 1) return prompt;
  }
  throw new Error(`${url}: no prefix of the filler tokenizes to ${n - 1} tokens`);
}

// One streamed completion: the time to its first text chunk, its completion tokens (the
// usage's, else its text chunks) and its prompt tokens as the server counts them.
async function streamOne(url, prompt) {
  let ttft = null;
  let textChunks = 0;
  const res = await postStream(`${url}/v1/completions`, {
    prompt, max_tokens: MAX_TOKENS, temperature: 0, stream: true,
    stream_options: { include_usage: true }, ignore_eos: true, cache_prompt: false,
  }, (event, ms) => {
    if (eventText(event) === '') return true;
    ttft ??= ms;
    textChunks++;
    return true;
  }, { timeoutMs: 600000 });
  if (res.status !== 200 || !res.done) {
    throw new Error(`${url}: status ${res.status}, [DONE] ${res.done ? '' : 'not '}seen: ${res.text}`);
  }
  const usage = res.events.find((e) => e.usage)?.usage;
  return { ttft, tokens: usage?.completion_tokens ?? textChunks, prompt: usage?.prompt_tokens };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// C clients at once, REQUESTS each in turn, each request with the server's next prompt.
async function round(server, clients) {
  const start = performance.now();
  const all = await Promise.all(Array.from({ length: clients }, async () => {
    const done = [];
    for (let r = 0; r < REQUESTS; r++) done.push(await streamOne(server.url, server.prompts.pop()));
    return done;
  }));
  const seconds = (performance.now() - start) / 1000;
  const requests = all.flat();
  const tokens = requests.reduce((n, r) => n + r.tokens, 0);
  return { server: server.name, clients, requests, tokens, seconds, tps: tokens / seconds };
}

function fmt(x, digits = 1) {
  return x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits);
}

// The times to first token of the rounds' requests that had any text, sorted.
function ttfts(rounds) {
  return rounds.flatMap((r) => r.requests.map((q) => q.ttft)).filter((t) => t !== null)
    .sort((a, b) => a - b);
}

function printRound(n, r) {
  const t = ttfts([r]);
  const prompts = [...new Set(r.requests.map((q) => q.prompt))].join(',');
  console.log(`${String(n).padStart(5)}  ${r.server.padEnd(12)} ${String(r.clients).padStart(7)} ` +
    `${String(r.requests.length).padStart(8)} ${String(prompts).padStart(7)} ` +
    `${String(r.tokens).padStart(6)} ${fmt(r.seconds, 2).padStart(7)} ${fmt(r.tps).padStart(7)} ` +
    `${fmt(percentile(t, 50), 0).padStart(9)} ${fmt(percentile(t, 95), 0).padStart(8)}`);
}

// The medians of each server's rounds at each client count (TTFT percentiles over every
// request of those rounds), and the ratios issue 21 sets goals for.
function printSummary(servers, rounds) {
  console.log(`\nmedians of ${REPEATS} rounds (TTFT percentiles over all their requests):`);
  console.log('clients  server          tok/s  TTFT p50  p95 ms');
  const tps = (name, c) => median(rounds.filter((r) => r.server === name && r.clients === c)
    .map((r) => r.tps));
  for (const c of CLIENTS) {
    for (const s of servers) {
      const t = ttfts(rounds.filter((r) => r.server === s.name && r.clients === c));
      console.log(`${String(c).padStart(7)}  ${s.name.padEnd(12)} ${fmt(tps(s.name, c)).padStart(8)} ` +
        `${fmt(percentile(t, 50), 0).padStart(9)} ${fmt(percentile(t, 95), 0).padStart(7)}`);
    }
  }
  const [a, b] = servers;
  const lo = Math.min(...CLIENTS);
  const hi = Math.max(...CLIENTS);
  console.log(`${a.name} at ${hi} clients / at ${lo}: ${fmt(tps(a.name, hi) / tps(a.name, lo), 2)}x ` +
    '(the goal at 8 / at 1: >= 3x)');
  if (b) {
    const ratios = CLIENTS.map((c) => `${fmt(tps(a.name, c) / tps(b.name, c), 2)}x at ${c}`);
    console.log(`${a.name} / ${b.name} tok/s: ${ratios.join(', ')} (the goal at 4 and 8: >= 1.0x)`);
  }
}

// The servers to measure: those at the URLs given, or those started here on --model.
async function startServers() {
  if (urls.length) return { servers: urls.map((url) => ({ name: new URL(url).host, url })), procs: [] };
  if (!opt.model || !opt.quill) throw new Error('give server URLs, or --model FILE --quill BIN');
  const servers = [];
  const procs = [];
  const quillArgs = ['--parallel', opt.parallel, '--threads', opt.threads, '--context',
    String(SLOT_CONTEXT)];
  const quill = await startQuillServe(opt.quill, opt.model, quillArgs);
  procs.push(quill.server);
  servers.push({ name: 'quill', url: quill.url, command: quill.server.command });
  const llama = opt['llama-server'];
  if (llama && existsSync(llama)) {
    const started = await startLlamaServer(llama, opt.model, ['-np', opt.parallel, '-t', opt.threads,
      '-c', String(SLOT_CONTEXT * Number(opt.parallel))]);
    procs.push(started.server);
    servers.push({ name: 'llama-server', url: started.url, command: started.server.command });
  } else {
    console.log(`llama-server: not found${llama ? ` at ${llama}` : ''} (LLAMA_SERVER): quill alone`);
  }
  return { servers, procs };
}

// The CPU and its load: other work on the machine slows every server (most of all the one
// whose threads wait for each other at every step), so the figures say whether there was some.
function machine() {
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  return `${os.cpus()[0].model}, ${os.cpus().length} cores, load average ${load}`;
}

async function main() {
  console.log(`machine: ${machine()}`);
  const { servers, procs } = await startServers();
  try {
    // A warm-up of as many requests at once as the most clients (not timed), then the rounds.
    const warmUp = Math.max(...CLIENTS);
    const needed = warmUp + REPEATS * REQUESTS * CLIENTS.reduce((a, b) => a + b);
    for (const s of servers) {
      if (s.command) console.log(`${s.name}: ${s.command}`);
      s.prompts = [];
      // one at a time: llama-server's few HTTP threads do not answer a hundred at once
      for (let i = 0; i < needed; i++) s.prompts.push(await promptOfTokens(s.url, i, PROMPT_TOKENS));
      await Promise.all(s.prompts.splice(-warmUp).map((p) => streamOne(s.url, p)));
    }
    console.log(`\n${PROMPT_TOKENS}-token prompts, ${MAX_TOKENS} tokens each at temperature 0, ` +
      `${REQUESTS} per client, rounds taking turns between the servers`);
    console.log('round  server       clients requests  prompt  tokens  wall s   tok/s  TTFT p50  p95 ms');
    const rounds = [];
    for (const c of CLIENTS) {
      for (let rep = 0; rep < REPEATS; rep++) {
        for (const s of servers) {
          rounds.push(await round(s, c));
          printRound(rounds.length, rounds[rounds.length - 1]);
        }
      }
    }
    printSummary(servers, rounds);
    console.log(`machine at the end: ${machine()}`);
  } finally {
    for (const p of procs) await p.stop();
  }
}

main().catch((e) => {
  console.error(`serve bench: ${e.message}`);
  process.exit(1);
});
