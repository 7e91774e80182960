/*
 * Resources come back: a context nobody closed is freed when the garbage collector finds
 * it (its engine thread ends or is kept for reuse, which /proc/self/status's thread count
 * shows), and loading
 * and closing a model and a context many times does not grow resident memory. Each runs in
 * a child node started with --expose-gc, so that the test can collect when it needs to.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

import { STORIES } from "./helpers.js";

const INDEX = JSON.stringify(new URL("../index.js", import.meta.url).href);

/* Runs a module in a child node with --expose-gc; returns what it printed, as JSON. */
function runChild(code) {
  const run = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", code,
                                           STORIES.path], { encoding: "utf8", timeout: 120000 });
  assert.equal(run.status, 0, `${run.signal ?? ""} ${run.stderr}`);
  return JSON.parse(run.stdout);
}

test("contexts left unclosed are freed when collected: their threads end", { skip: STORIES.skip }, () => {
  const { before, withContexts, after } = runChild(`
    import { readFileSync } from "node:fs";
    import { Context, Model } from ${INDEX};
    const threads = () => Number(readFileSync("/proc/self/status", "utf8").match(/Threads:\\s+(\\d+)/)[1]);
    const settle = async () => { for (let i = 0; i < 20; i++) { gc(); await new Promise((r) => setTimeout(r, 50)); } };
    const model = await Model.load(process.argv[1]);
    await settle();
    const before = threads();
    let contexts = [];
    for (let i = 0; i < 20; i++) contexts.push(new Context(model));
    await Promise.all(contexts.map((c) => c.generate("Once", { temperature: 0, maxTokens: 2 })));
    const withContexts = threads();
    contexts = null;
    await settle();
    console.log(JSON.stringify({ before, withContexts, after: threads() }));
  `);
  assert.ok(withContexts >= before + 20, `${before} threads, then ${withContexts} with 20 contexts`);
  /* Up to 4 engine threads are kept for reuse (index.js), each with the OpenMP thread its
   * generations started; without the finalizer all 20 would still be there. */
  assert.ok(after <= before + 2 * 4, `${before} threads before, ${after} after the contexts were collected`);
});

test("300 load / context / close cycles keep resident memory steady", { skip: STORIES.skip }, () => {
  const { rss } = runChild(`
    import { Context, Model } from ${INDEX};
    const rss = [];
    for (let i = 0; i < 300; i++) {
      const model = await Model.load(process.argv[1]);
      const context = new Context(model);
      await context.generate("Once", { temperature: 0, maxTokens: 2 });
      await context.close();
      model.close();
      if (i % 100 === 99) { gc(); rss.push(process.memoryUsage.rss()); }
    }
    console.log(JSON.stringify({ rss }));
  `);
  assert.equal(rss.length, 3);
  /* A leak of a model (1 MB of stories260K's weights and tables) or a context per cycle
   * would add 100 MB between the checks; the allowance is for V8's own heap settling. */
  const growth = (rss[2] - rss[0]) / 2 ** 20;
  assert.ok(growth < 20, `resident memory grew ${growth.toFixed(1)} MB over 200 cycles (${rss.map((r) => (r / 2 ** 20).toFixed(1)).join(", ")} MB)`);
});
