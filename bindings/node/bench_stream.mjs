/*
 * What streaming through the Node.js binding costs per token, beside the C library's own
 * loop: `quill generate --verbose` (quill_generate, its callback writing to stdout),
 * context.generate() and context.stream() (the same quill_generate on an engine thread;
 * stream posts each piece to the main thread, where a for-await loop reads it), the same
 * greedy tokens from the same prompt, taking turns, RUNS times each; medians.
 *
 *   node bindings/node/bench_stream.mjs MODEL [--threads 2] [--tokens 128] [--runs 5]
 *
 * The stream is measured two ways: as the library counts (quill_context_perf: tokens over
 * the seconds quill_generate spent generating them, the CLI's own definition, which
 * includes the per-token callback on the engine thread) and as a user sees it (tokens
 * after the first over the main thread's time from the first piece to the last). Run
 * without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, as `make bench` does.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Context, Model } from "./index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: "string", default: "2" },
    tokens: { type: "string", default: "128" },
    runs: { type: "string", default: "5" },
    prompt: { type: "string", default: "Once upon a time" },
    quill: { type: "string", default: fileURLToPath(new URL("../../bin/quill", import.meta.url)) },
  },
});
if (positionals.length !== 1) {
  console.error("usage: node bench_stream.mjs MODEL [--threads N] [--tokens N] [--runs N]");
  process.exit(2);
}
const [MODEL] = positionals;
const THREADS = Number(values.threads);
const TOKENS = Number(values.tokens);
const RUNS = Number(values.runs);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/* The CLI's tokens/s: the "[generated: N tokens in S s, R tokens/s]" line of --verbose. */
function cliTokensPerSecond() {
  const { stderr } = spawnSync(values.quill, [
    "generate", MODEL, "--prompt", values.prompt, "-n", String(TOKENS), "--temperature", "0",
    "--ignore-eos", "--threads", String(THREADS), "--verbose", "--no-echo",
  ], { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  const line = stderr.match(/\[generated: (\d+) tokens in ([\d.]+) s/);
  if (!line || Number(line[1]) !== TOKENS) throw new Error(`unexpected quill output:\n${stderr}`);
  return Number(line[1]) / Number(line[2]);
}

/* One stream through the binding: { library, user } tokens/s. */
async function bindingTokensPerSecond(context) {
  const before = context.perf;
  let first = 0;
  let last = 0;
  let pieces = 0;
  const options = { temperature: 0, maxTokens: TOKENS, ignoreEos: true, seed: 0 };
  for await (const piece of context.stream(values.prompt, options)) {
    last = performance.now();
    if (pieces++ === 0) first = last;
  }
  const after = context.perf;
  const generated = after.nGenerated - before.nGenerated;
  if (generated !== TOKENS) throw new Error(`${generated} tokens generated, not ${TOKENS}`);
  return {
    library: generated / (after.generateSeconds - before.generateSeconds),
    /* Pieces, not tokens: a token whose bytes end inside a character arrives with the
     * next; over a run of ASCII text the two counts agree. */
    user: (pieces - 1) / ((last - first) / 1000),
  };
}

/* The same tokens through generate(): quill_generate's callback on the engine thread, but
 * nothing posted to the main thread until the end. */
async function generateTokensPerSecond(context) {
  const before = context.perf;
  await context.generate(values.prompt, { temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  const after = context.perf;
  return (after.nGenerated - before.nGenerated) / (after.generateSeconds - before.generateSeconds);
}

const model = await Model.load(MODEL, { threads: THREADS });
const nCtx = model.tokenize(values.prompt).length + TOKENS;
const context = new Context(model, { nCtx, threads: THREADS });
await bindingTokensPerSecond(context); // warm: the weights paged in, the threads started

const cli = [];
const library = [];
const user = [];
const whole = [];
for (let run = 0; run < RUNS; run++) {
  cli.push(cliTokensPerSecond());
  whole.push(await generateTokensPerSecond(context));
  const b = await bindingTokensPerSecond(context);
  library.push(b.library);
  user.push(b.user);
}
await context.close();
model.close();

const c = median(cli);
const report = (name, xs) =>
  console.log(`${name.padEnd(46)} ${median(xs).toFixed(1).padStart(7)} tokens/s ` +
              `(${(100 * median(xs) / c).toFixed(1)}% of the C API's)`);
console.log(`${MODEL}: ${TOKENS} greedy tokens, ${THREADS} threads, median of ${RUNS} runs each`);
console.log(`${"C API (quill generate --verbose)".padEnd(46)} ${c.toFixed(1).padStart(7)} tokens/s`);
report("binding, generate() (nothing streamed)", whole);
report("binding, stream(), library's count", library);
report("binding, stream(), pieces on the main thread", user);
