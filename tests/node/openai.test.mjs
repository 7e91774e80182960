/*
 * quill serve driven by OpenAI's official Node client (the `openai` package from npm), a
 * client no one here wrote: if the server's answers were not OpenAI's shapes, the client
 * would throw or hand back undefined fields. What the answers are compared with comes
 * from outside the server: `quill generate --no-echo` (the command line) for the greedy
 * text, llama.cpp's logits (../shared/models/stories260K.ref.json) for the log
 * probabilities, the model file's own metadata for the embedding size, and OpenAI's API
 * reference for every shape.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";

import { copyWithStringKey, readGguf } from "./gguf.mjs";
import { assertSameText, cliBytes, sharedFile, startServer, tempDir } from "./quill.mjs";

const STORIES = sharedFile("models/stories260K.gguf");
const STORIES_REF = sharedFile("models/stories260K.ref.json");
/* A quantized model whose greedy continuation of "Once" is whole UTF-8 for 16 tokens (its
 * weights are random: longer, or from other prompts, it writes stray bytes, which JSON
 * strings cannot carry as they are). */
const QUANTIZED = sharedFile("models/qtest-Q4_0.gguf");
const PROMPT = "Once upon a time";

/* No retries: a failure shows at once, and a request is sent once. */
const clientFor = (server, apiKey = "unused") =>
  new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0 });

/* The chunks of a stream, read one by one as they come (for await). */
async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

/* log(softmax(logits))[i]: what a token's log probability is, from llama.cpp's logits. */
function logSoftmax(logits) {
  const max = Math.max(...logits);
  const logSum = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  return logits.map((x) => x - logSum);
}

/* /v1/embeddings: one vector per input, as wide as the model's embedding (its GGUF
 * metadata says), the same whether sent as floats or as base64 (which the client asks for
 * unless told otherwise, and decodes itself); two different inputs, two vectors. */
async function checkEmbeddings(client, modelPath, input) {
  const width = readGguf(modelPath).metadata.get("llama.embedding_length");
  assert.ok(width > 0);
  const packed = await client.embeddings.create({ model: "m", input });
  const floats = await client.embeddings.create({ model: "m", input, encoding_format: "float" });
  for (const r of [packed, floats]) {
    assert.equal(r.object, "list");
    assert.equal(r.data.length, input.length);
    r.data.forEach((d, i) => {
      assert.equal(d.object, "embedding");
      assert.equal(d.index, i);
      assert.equal(d.embedding.length, width);
      assert.ok(d.embedding.every(Number.isFinite));
    });
    assert.ok(r.usage.prompt_tokens > 0);
  }
  packed.data.forEach((d, i) => d.embedding.forEach((x, j) => {
    const y = floats.data[i].embedding[j];
    assert.ok(Math.abs(x - y) <= 1e-6 * Math.max(1, Math.abs(x)), `[${i}][${j}]: ${x} as base64, ${y} as a float`);
  }));
  assert.notDeepEqual(floats.data[0].embedding, floats.data[1].embedding);
}

describe("stories260K through the openai client", { skip: STORIES.skip }, () => {
  let server, client;
  before(async () => {
    server = await startServer(STORIES.path);
    client = clientFor(server);
  });
  after(() => server?.stop());

  test("a greedy completion is the command line's text", async () => {
    const expected = cliBytes(STORIES.path, ["--prompt", PROMPT, "--temperature", "0", "--max-tokens", "40"]);
    const r = await client.completions.create({ model: "stories260K.gguf", prompt: PROMPT, temperature: 0, max_tokens: 40 });
    assert.equal(r.object, "text_completion");
    assert.equal(r.model, "stories260K.gguf");
    assert.equal(r.choices.length, 1);
    assertSameText(r.choices[0].text, expected);
    assert.equal(r.choices[0].finish_reason, "length");
    assert.equal(r.usage.completion_tokens, 40);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 40);
  });

  test("a streamed completion, read chunk by chunk, is the same text", async () => {
    const expected = cliBytes(STORIES.path, ["--prompt", PROMPT, "--temperature", "0", "--max-tokens", "40"]);
    const stream = await client.completions.create({
      prompt: PROMPT, temperature: 0, max_tokens: 40, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    assert.ok(chunks.length >= 10, `${chunks.length} chunks: one per token expected`);
    const text = chunks.map((c) => c.choices[0]?.text ?? "").join("");
    assertSameText(text, expected);
    const finishes = chunks.map((c) => c.choices[0]?.finish_reason).filter((f) => f);
    assert.deepEqual(finishes, ["length"]);
    /* include_usage: the last chunk has no choices and the counts */
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 40);
  });

  test("n = 3 choices: choice i is the command line's text with seed + i", async () => {
    const sampling = { temperature: 1, top_k: 0, top_p: 1, min_p: 0 };
    const r = await client.completions.create({ prompt: PROMPT, max_tokens: 20, seed: 7, n: 3, ...sampling });
    assert.equal(r.choices.length, 3);
    r.choices.forEach((choice, i) => {
      assert.equal(choice.index, i);
      const expected = cliBytes(STORIES.path, ["--prompt", PROMPT, "--max-tokens", "20", "--seed", String(7 + i),
                                               "--temperature", "1", "--top-k", "0", "--top-p", "1", "--min-p", "0"]);
      assertSameText(choice.text, expected);
    });
    assert.notEqual(r.choices[0].text, r.choices[1].text);
    assert.equal(r.usage.completion_tokens, 60);
  });

  test("a bad request is an APIError with status 400 that names the field", async () => {
    await assert.rejects(
      client.completions.create({ prompt: PROMPT, temperature: -1 }),
      (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
        assert.equal(e.status, 400);
        assert.match(e.message, /temperature must be >= 0/);
        assert.equal(e.error.param, "temperature");
        assert.equal(e.error.type, "invalid_request_error");
        return true;
      });
    await assert.rejects(client.completions.create({ prompt: PROMPT, n: 17 }),
                         (e) => e.status === 400 && /n must be <= 16/.test(e.message));
    /* and the server still answers */
    const ok = await client.completions.create({ prompt: PROMPT, max_tokens: 2 });
    assert.equal(ok.usage.completion_tokens, 2);
  });

  test("embeddings: one vector of the model's width per input, as floats and as base64",
       () => checkEmbeddings(client, STORIES.path, ["Once upon a time", "The cat sat on the mat"]));
});

/* With an f32 KV cache, quill's logits are llama.cpp's to 1e-4 (tests/test_model.c); the
 * default f16 cache rounds the keys and values and moves them by about 1e-3. */
describe("log probabilities through the openai client, against llama.cpp's logits",
         { skip: STORIES.skip || STORIES_REF.skip }, () => {
  let server, client;
  before(async () => {
    server = await startServer(STORIES.path, ["--cache-type", "f32"]);
    client = clientFor(server);
  });
  after(() => server?.stop());

  test("legacy logprobs: tokens, token_logprobs, top_logprobs and text_offset, as llama.cpp's logits give them", async () => {
    const n = 8;
    const r = await client.completions.create({ prompt: PROMPT, temperature: 0, max_tokens: n, logprobs: 2 });
    const choice = r.choices[0];
    const lp = choice.logprobs;
    assert.ok(lp, "no choices[0].logprobs");
    assert.equal(lp.tokens.length, n);
    assert.equal(lp.token_logprobs.length, n);
    assert.equal(lp.top_logprobs.length, n);
    assert.equal(lp.text_offset.length, n);
    assert.equal(lp.tokens.join(""), choice.text);
    /* text_offset: where each token's text starts in the choice's text (in bytes, as
     * quill documents; OpenAI's reference does not say), one token after another */
    const bytes = Buffer.from(choice.text, "utf8");
    let offset = 0;
    lp.tokens.forEach((token, i) => {
      assert.equal(lp.text_offset[i], offset, `text_offset[${i}]`);
      assert.ok(bytes.subarray(offset).toString("utf8").startsWith(token), `token ${i} is not at its offset`);
      offset += Buffer.byteLength(token, "utf8");
    });
    /* greedy: the token drawn is the most likely; top_logprobs has the 2 best (and the
     * token drawn, here one of them) */
    lp.tokens.forEach((token, i) => {
      const top = lp.top_logprobs[i];
      assert.equal(Object.keys(top).length, 2, `top_logprobs[${i}]: ${JSON.stringify(top)}`);
      assert.equal(top[token], lp.token_logprobs[i], `top_logprobs[${i}] lacks the token drawn`);
      assert.equal(Math.max(...Object.values(top)), lp.token_logprobs[i]);
      assert.ok(lp.token_logprobs[i] <= 0);
    });
    /* the first token's log probabilities are those of llama.cpp's logits at the prompt's
     * last position: the model's distribution, before any sampling stage (which at
     * temperature 0 would give the token drawn a log probability of 0) */
    const ref = JSON.parse(readFileSync(STORIES_REF.path, "utf8"));
    assert.equal(ref.prompt, PROMPT);
    const logprobs = logSoftmax(ref.logits.at(-1).values);
    const best = [...logprobs.keys()].sort((a, b) => logprobs[b] - logprobs[a]).slice(0, 2);
    assert.equal(best[0], ref.greedy_tokens[0]);
    const expectedTop = best.map((id) => logprobs[id]);
    const gotTop = Object.values(lp.top_logprobs[0]).sort((a, b) => b - a);
    gotTop.forEach((got, k) => assert.ok(Math.abs(got - expectedTop[k]) < 1e-4,
                                         `top ${k}: ${got}, llama.cpp ${expectedTop[k]}`));
  });
});

describe("a chat model through the openai client", { skip: STORIES.skip }, () => {
  /* stories260K has no chat template: a copy of it with ChatML's, whose prompt is written
   * out here by hand for the command line */
  const system = "Be kind.", user = "Tell a story";
  const chatml = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nTell a story<|im_end|>\n" +
                 "<|im_start|>assistant\n";
  const messages = [{ role: "system", content: system }, { role: "user", content: user }];
  let server, client, expected;
  before(async () => {
    const model = join(tempDir(), "chatml.gguf");
    copyWithStringKey(STORIES.path, model, "tokenizer.chat_template",
                      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}");
    expected = cliBytes(STORIES.path, ["--prompt", chatml, "--temperature", "0", "--max-tokens", "12"]);
    server = await startServer(model);
    client = clientFor(server);
  });
  after(() => server?.stop());

  test("a chat completion is the command line's text of the conversation in ChatML", async () => {
    const r = await client.chat.completions.create({ model: "chatml.gguf", messages, temperature: 0, max_tokens: 12 });
    assert.equal(r.object, "chat.completion");
    assert.equal(r.choices[0].message.role, "assistant");
    assertSameText(r.choices[0].message.content, expected);
    assert.equal(r.choices[0].finish_reason, "length");
    assert.equal(r.usage.completion_tokens, 12);
  });

  test("a streamed chat completion, read chunk by chunk, is the same text", async () => {
    const chunks = await collect(await client.chat.completions.create({ messages, temperature: 0, max_tokens: 12, stream: true }));
    assert.equal(chunks[0].object, "chat.completion.chunk");
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    assertSameText(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), expected);
  });

  test("response_format json_schema: the command line's --json-schema text, JSON the schema accepts", async () => {
    const schema = { type: "object", properties: { mood: { enum: ["happy", "sad"] } }, required: ["mood"] };
    const r = await client.chat.completions.create({
      messages, temperature: 0, max_tokens: 40,
      response_format: { type: "json_schema", json_schema: { name: "mood", schema, strict: true } },
    });
    const content = r.choices[0].message.content;
    assertSameText(content, cliBytes(STORIES.path, ["--prompt", chatml, "--temperature", "0", "--max-tokens", "40",
                                                    "--json-schema", JSON.stringify(schema)]));
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.ok(["happy", "sad"].includes(JSON.parse(content).mood), content);
    await assert.rejects(
      client.chat.completions.create({ messages, response_format: { type: "json_schema", json_schema: { name: "x", schema: { not: {} } } } }),
      (e) => e.status === 400 && /keyword 'not' is not supported/.test(e.message));
  });

  test("chat logprobs: content[i] with token, logprob and its top_logprobs", async () => {
    const r = await client.chat.completions.create({ messages, temperature: 0, max_tokens: 12, logprobs: true, top_logprobs: 2 });
    const choice = r.choices[0];
    const content = choice.logprobs?.content;
    assert.ok(Array.isArray(content), `no choices[0].logprobs.content: ${JSON.stringify(choice.logprobs)}`);
    assert.equal(content.length, 12);
    assert.equal(content.map((c) => c.token).join(""), choice.message.content);
    content.forEach((c, i) => {
      assert.ok(c.logprob <= 0, `content[${i}].logprob ${c.logprob}`);
      assert.equal(c.top_logprobs.length, 2, `content[${i}].top_logprobs`);
      /* greedy: the token drawn is the first of the two */
      assert.equal(c.top_logprobs[0].token, c.token);
      assert.equal(c.top_logprobs[0].logprob, c.logprob);
      assert.ok(c.top_logprobs[1].logprob <= c.top_logprobs[0].logprob);
    });
  });
});

describe("a quantized model (Q4_0) through the openai client", { skip: QUANTIZED.skip }, () => {
  let server, client, expected;
  before(async () => {
    expected = cliBytes(QUANTIZED.path, ["--prompt", "Once", "--temperature", "0", "--max-tokens", "16"]);
    server = await startServer(QUANTIZED.path);
    client = clientFor(server);
  });
  after(() => server?.stop());

  test("a greedy completion, whole and streamed, is the command line's text", async () => {
    const r = await client.completions.create({ prompt: "Once", temperature: 0, max_tokens: 16 });
    assertSameText(r.choices[0].text, expected);
    assert.equal(r.usage.completion_tokens, 16);
    const chunks = await collect(await client.completions.create({ prompt: "Once", temperature: 0, max_tokens: 16, stream: true }));
    assertSameText(chunks.map((c) => c.choices[0]?.text ?? "").join(""), expected);
  });

  test("embeddings: one vector of the model's width per input, as floats and as base64",
       () => checkEmbeddings(client, QUANTIZED.path, ["Once", "They"]));
});

describe("--api-key through the openai client", { skip: STORIES.skip }, () => {
  let server;
  before(async () => { server = await startServer(STORIES.path, ["--api-key", "sesame"]); });
  after(() => server?.stop());

  test("the right key is let in, a wrong one is an AuthenticationError (401)", async () => {
    const models = await clientFor(server, "sesame").models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["stories260K.gguf"]);
    await assert.rejects(clientFor(server, "sesam").models.list(),
                         (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  });
});
