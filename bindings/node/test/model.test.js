/*
 * A model's metadata, tokens, chat format and embeddings, compared with what lies outside
 * the binding: the GGUF file's own metadata (read by tests/node/gguf.mjs), llama.cpp's
 * tokens and greedy text (../shared/models/stories260K.ref.json), `quill tokenize`, and
 * ChatML's published layout.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { readGguf } from "../../../tests/node/gguf.mjs";
import { Context, cpuFeatures, version } from "../index.js";
import { PROMPT, QUILL, ROOT, STORIES, sharedFile, storiesModel } from "./helpers.js";

const REF = sharedFile("models/stories260K.ref.json");

describe("models", { skip: STORIES.skip || REF.skip }, () => {
  test("the library's version and CPU features", () => {
    const header = readFileSync(`${ROOT}/include/quill.h`, "utf8");
    const part = (name) => header.match(new RegExp(`#define QUILL_VERSION_${name} (\\d+)`))[1];
    assert.equal(version(), `${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`);
    assert.ok(cpuFeatures().length > 0);
  });

  test("metadata getters read the GGUF file's metadata", async () => {
    const model = await storiesModel();
    const { metadata } = readGguf(STORIES.path);
    assert.equal(model.architecture, metadata.get("general.architecture"));
    assert.equal(model.contextLength, metadata.get("llama.context_length"));
    assert.equal(model.embeddingSize, metadata.get("llama.embedding_length"));
    assert.equal(model.layers, metadata.get("llama.block_count"));
    assert.equal(model.vocabSize, JSON.parse(readFileSync(REF.path, "utf8")).n_vocab);
    assert.equal(model.bos, metadata.get("tokenizer.ggml.bos_token_id"));
    assert.equal(model.eos, metadata.get("tokenizer.ggml.eos_token_id"));
    assert.equal(model.chatTemplate, metadata.get("tokenizer.chat_template") ?? null);
    assert.match(model.description, /llama/);
    assert.ok(model.parameterCount > 0);
  });

  test("tokenize gives llama.cpp's ids, detokenize its greedy text", async () => {
    const model = await storiesModel();
    const ref = JSON.parse(readFileSync(REF.path, "utf8"));
    assert.deepEqual(model.tokenize(ref.prompt), ref.prompt_tokens);
    assert.deepEqual(model.tokenize(ref.prompt, { addSpecial: false }), ref.prompt_tokens.slice(1));
    assert.equal(model.detokenize(ref.greedy_tokens),
                 Buffer.from(ref.greedy_text_hex, "hex").toString("utf8"));
  });

  test("tokenize equals quill tokenize on a text with UTF-8 and control-token text", async () => {
    const model = await storiesModel();
    const text = "Héllo wörld, <s> naïve 🙂";
    for (const special of [false, true]) {
      const cli = execFileSync(QUILL, ["tokenize", STORIES.path, ...(special ? ["--special"] : []),
                                       text]).toString().trim().split(/\s+/).map(Number);
      assert.deepEqual(model.tokenize(text, { parseSpecial: special }), cli);
    }
  });

  test("applyChatTemplate writes ChatML's layout, and chat generates from it", async () => {
    const model = await storiesModel();
    const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: PROMPT }];
    const prompt = model.applyChatTemplate(messages, { template: "chatml" });
    assert.equal(prompt, "<|im_start|>system\nBe brief.<|im_end|>\n" +
                         `<|im_start|>user\n${PROMPT}<|im_end|>\n<|im_start|>assistant\n`);
    const context = new Context(model);
    const reply = await context.chat(messages, { template: "chatml", temperature: 0, maxTokens: 20 });
    const direct = await context.generate(prompt, { temperature: 0, maxTokens: 20, parseSpecial: true });
    assert.deepEqual(reply, direct);
    await context.close();
  });

  test("embed: the model's width, length 1, the same for the same text only", async () => {
    const model = await storiesModel();
    const context = new Context(model);
    const [a, b, c] = [await context.embed(PROMPT), await context.embed("A dog ran."),
                       await context.embed(PROMPT)];
    assert.ok(a instanceof Float32Array);
    assert.equal(a.length, readGguf(STORIES.path).metadata.get("llama.embedding_length"));
    assert.ok(Math.abs(Math.hypot(...a) - 1) < 1e-5);
    assert.deepEqual(c, a);
    assert.notDeepEqual(b, a);
    const raw = await context.embed(PROMPT, { pooling: "last", normalize: false });
    assert.ok(Math.abs(Math.hypot(...raw) - 1) > 1e-3);
    await context.close();
  });

  test("a context reports its size and sequences", async () => {
    const model = await storiesModel();
    const context = new Context(model, { nCtx: 64, nSeq: 2, cacheType: "f32" });
    assert.equal(context.nCtx, 64);
    assert.equal(context.nSeq, 2);
    assert.equal(context.model, model);
    await context.close();
    const whole = new Context(model);
    assert.equal(whole.nCtx, model.contextLength);
    await whole.close();
  });
});
