/*
 * Bad input is a rejected promise (or a thrown QuillError for the synchronous calls)
 * carrying the library's message and kind, and never takes the process down: every case
 * runs in this one process, which must still be there to run the next. Where the command
 * line reports the same failure, the message is its message.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import { Context, Model, QuillError } from "../index.js";
import { PROMPT, QUILL, STORIES, assertSameText, cliBytes, storiesModel, tempDir } from "./helpers.js";

/* What `quill generate MODEL --prompt x` says on stderr when it fails. */
function cliError(model, flags = []) {
  const run = spawnSync(QUILL, ["generate", model, "--prompt", "x", ...flags], { encoding: "utf8" });
  assert.notEqual(run.status, 0);
  return run.stderr;
}

/* The promise rejects with a QuillError of this kind whose message matches. */
async function rejectsWith(promise, kind, message) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof QuillError, `${e} is not a QuillError`);
    assert.ok(e instanceof Error);
    assert.equal(e.kind, kind, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe("errors", { skip: STORIES.skip }, () => {
  test("a missing file: kind file, the CLI's message", async () => {
    const path = join(tempDir(), "missing.gguf");
    await rejectsWith(Model.load(path), "file", /No such file/);
    await assert.rejects(Model.load(path), (e) => cliError(path).includes(e.message));
  });

  test("a text file passed as a model: kind file, the CLI's message", async () => {
    const path = join(tempDir(), "notes.txt");
    writeFileSync(path, "Once upon a time there was no model in this file.\n");
    await rejectsWith(Model.load(path), "file", /not a GGUF file/);
    await assert.rejects(Model.load(path), (e) => cliError(path).includes(e.message));
  });

  test("temperature -1 and other settings the CLI refuses: kind parameter", async () => {
    const context = new Context(await storiesModel());
    await rejectsWith(context.generate(PROMPT, { temperature: -1 }), "parameter",
                      /^temperature -1 is out of range \[0, 100\]$/);
    assert.match(cliError(STORIES.path, ["--temperature", "-1"]),
                 /--temperature -1 is out of range \[0, 100\]/);
    /* Each range is the CLI's: its bounds pass, a step beyond them is refused by both. */
    const outside = [["topP", "--top-p", 1.5], ["minP", "--min-p", -0.1],
                     ["repeatLastN", "--repeat-last-n", -2], ["presencePenalty", "--presence-penalty", 101]];
    for (const [option, flag, value] of outside) {
      await rejectsWith(context.generate(PROMPT, { [option]: value }), "parameter",
                        new RegExp(`^${option} ${value} is out of range`));
      assert.match(cliError(STORIES.path, [flag, String(value)]), /is out of range/);
    }
    const { finishReason } = await context.generate(PROMPT, {
      maxTokens: 2, temperature: 100, topP: 1, minP: 0, repeatLastN: -1, presencePenalty: -100, seed: 1 });
    assert.equal(finishReason, "length");
    await context.close();
  });

  test("sampler settings the library refuses: kind parameter, its message", async () => {
    const context = new Context(await storiesModel());
    const cases = [
      [{ temperature: NaN }, /temperature nan is not a finite number/],
      [{ preset: "wild" }, /unknown sampler preset "wild"/],
      [{ samplers: "top-k,bogus" }, /unknown sampler "bogus"/],
      [{ logitBias: { 99999: 1 } }, /token 99999, outside the vocabulary/],
      [{ grammar: 'root ::= ("a"' }, /^grammar: line 1, column 14: expecting '\)'$/],
      [{ mirostat: 3 }, /^mirostat 3 is out of range \[0, 2\]$/],
      [{ jsonSchema: { not: {} } }, /keyword 'not' is not supported/],
    ];
    for (const [options, message] of cases)
      await rejectsWith(context.generate(PROMPT, options), "parameter", message);
    const beams = new Context(await storiesModel(), { nSeq: 4 });
    await rejectsWith(beams.beamSearch(PROMPT, { beamSize: 4, nBest: 9 }), "parameter",
                      /n_best 9 \(1 to beam_size\)/);
    await rejectsWith(beams.beamSearch(PROMPT, { beamSize: 100 }), "parameter",
                      /beam_size 100 \(1 to 64\)/);
    await Promise.all([context.close(), beams.close()]);
  });

  test("arguments of the wrong type or name: kind parameter, before any C call", async () => {
    const model = await storiesModel();
    const context = new Context(model);
    const cases = [
      [{ topK: "5" }, /topK must be an integer \(a C int\), not "5"/],
      [{ topP: "0.9" }, /topP must be a number/],
      [{ stop: [5] }, /stop must be strings/],
      [{ badWords: [null] }, /badWords must be strings/],
      [{ seed: -1 }, /seed must be an integer/],
      [{ max_tokens: 5 }, /unknown option 'max_tokens'/],
      [{ maxTokens: 1.5 }, /maxTokens must be an integer/],
      [{ topK: 2 ** 32 }, /topK must be an integer/],
      [{ logitBias: { x: 1 } }, /a logitBias token must be an integer/],
    ];
    for (const [options, message] of cases)
      await rejectsWith(context.generate(PROMPT, options), "parameter", message);
    await rejectsWith(context.generate(42), "parameter", /prompt must be a string/);
    await rejectsWith(Model.load(null), "parameter", /path must be a string/);
    await rejectsWith(context.embed("x", { pooling: "max" }), "parameter", /pooling 'max'/);
    assert.throws(() => model.applyChatTemplate([{ role: "user", content: 1 }], { template: "chatml" }),
                  { name: "QuillError", kind: "parameter" });
    await context.close();
  });

  test("contexts the library refuses: a thrown QuillError of kind parameter", async () => {
    const model = await storiesModel();
    for (const options of [{ nCtx: -1 }, { nSeq: 0 }, { nBatch: -1 }])
      assert.throws(() => new Context(model, options),
                    { name: "QuillError", kind: "parameter", message: /quill_context_new/ });
    assert.throws(() => new Context(model, { cacheType: "f8" }), { kind: "parameter" });
  });

  test("requests the context cannot take: kind context", async () => {
    const context = new Context(await storiesModel());
    const long = "Once upon a time ".repeat(60);
    await rejectsWith(context.generate(long), "context", /the context holds 128/);
    await rejectsWith(context.embed(long), "context", /more than the context's 128 positions/);
    await rejectsWith(context.generate(PROMPT, { seq: 5 }), "context", /no sequence 5/);
    await rejectsWith(context.beamSearch(PROMPT, { beamSize: 4 }), "context", /4 sequences/);
    await context.close();
  });

  test("a closed context rejects every call; closing twice is harmless", async () => {
    const context = new Context(await storiesModel());
    await context.close();
    await context.close();
    await rejectsWith(context.generate(PROMPT), "context", /the context is closed/);
    await rejectsWith(context.embed(PROMPT), "context", /closed/);
    await rejectsWith(context.beamSearch(PROMPT), "context", /closed/);
    const stream = context.stream(PROMPT);
    await rejectsWith(stream.next(), "context", /closed/);
    assert.throws(() => context.nCtx, { kind: "context" });
  });

  test("closing a context cancels its generation in flight", async () => {
    const context = new Context(await storiesModel());
    const running = context.generate(PROMPT, {
      temperature: 0, maxTokens: 100000, ignoreEos: true, contextShift: true });
    const closed = context.close();
    const { finishReason, nTokens } = await running;
    await closed;
    assert.equal(finishReason, "cancelled");
    assert.ok(nTokens < 100000);
  });

  test("a closed model: no new context, but its open contexts go on", async () => {
    const model = await Model.load(STORIES.path);
    const context = new Context(model);
    model.close();
    model.close();
    assert.throws(() => model.vocabSize, { kind: "context", message: /the model is closed/ });
    assert.throws(() => new Context(model), { kind: "context" });
    const { text } = await context.generate(PROMPT, { temperature: 0, maxTokens: 10 });
    assertSameText(text, cliBytes(STORIES.path, ["--prompt", PROMPT, "--temperature", "0",
                                                 "-n", "10"]));
    await context.close();
  });
});
