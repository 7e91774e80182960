/*
 * LoRA adapters: an adapter file written by helpers.js (llama.cpp's adapter GGUF, byte by
 * byte, as bindings/python/tests/test_lora.py writes it with struct), applied through
 * Context.setLora, gives the command line's `quill generate --lora ... --lora-scale ...`
 * bytes; taking it away gives the base model's again.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";

import { Context, Lora, QuillError } from "../index.js";
import {
  PROMPT, STORIES, assertSameText, cliBytes, storiesModel, tempDir, writeAdapter,
} from "./helpers.js";

const N = 24;

describe("LoRA adapters", { skip: STORIES.skip }, () => {
  const dir = tempDir();
  const adapterPath = join(dir, "adapter.gguf");
  writeAdapter(adapterPath);
  const greedy = { maxTokens: N, temperature: 0 };
  const cliFlags = ["--prompt", PROMPT, "--temperature", "0", "-n", String(N)];

  test("setLora gives quill generate --lora's text at scales 1 and 0.5, [] the base's",
       async () => {
    const model = await storiesModel();
    const context = new Context(model);
    const base = (await context.generate(PROMPT, greedy)).text;
    assertSameText(base, cliBytes(STORIES.path, cliFlags));
    const lora = await Lora.load(model, adapterPath);
    assert.equal(lora.path, adapterPath);
    let compared = 0;
    for (const scale of [1, 0.5]) {
      await context.setLora([[lora, scale]]);
      const { text } = await context.generate(PROMPT, greedy);
      assertSameText(text, cliBytes(STORIES.path, [...cliFlags, "--lora", adapterPath,
                                                   "--lora-scale", String(scale)]));
      assert.notEqual(text, base, `scale ${scale}`);
      compared++;
    }
    assert.equal(compared, 2);
    await context.setLora([lora]); /* a bare Lora: scale 1 */
    assertSameText((await context.generate(PROMPT, greedy)).text,
                   cliBytes(STORIES.path, [...cliFlags, "--lora", adapterPath]));
    /* closed while applied: the context keeps it until it applies something else */
    lora.close();
    assertSameText((await context.generate(PROMPT, greedy)).text,
                   cliBytes(STORIES.path, [...cliFlags, "--lora", adapterPath]));
    await context.setLora([]);
    assert.equal((await context.generate(PROMPT, greedy)).text, base);
    await context.close();
  });

  test("a bad adapter or a bad list is a QuillError", async () => {
    const model = await storiesModel();
    await assert.rejects(Lora.load(model, STORIES.path),
                         (e) => e instanceof QuillError && e.kind === "file" &&
                                /not an adapter/.test(e.message));
    const typedModel = join(dir, "model-typed.gguf");
    writeAdapter(typedModel, "model");
    await assert.rejects(Lora.load(model, typedModel),
                         (e) => e.kind === "file" && /general.type is 'model'/.test(e.message));
    await assert.rejects(Lora.load(model, join(dir, "missing.gguf")), { kind: "file" });
    const context = new Context(model);
    const lora = await Lora.load(model, adapterPath);
    const refused = [["adapter.gguf"], [[lora, "0.5"]], [[lora, Infinity]], lora];
    for (const list of refused)
      await assert.rejects(context.setLora(list), { kind: "parameter" }, String(list));
    lora.close();
    await assert.rejects(context.setLora([lora]), { kind: "context" });
    await context.close();
  });
});
