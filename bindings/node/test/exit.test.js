/*
 * A script that generates and ends exits cleanly. koffi unloads a library once nothing
 * refers to it, and unloading libquill under its OpenMP threads crashed about one exit in
 * ten (SIGSEGV) until ffi.js pinned it; 20 runs would all have passed with a chance of
 * about 1 in 8.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

import { STORIES } from "./helpers.js";

const SCRIPT = `
import { Context, Model } from ${JSON.stringify(new URL("../index.js", import.meta.url).href)};
const model = await Model.load(process.argv[1]);
const context = new Context(model);
const { text } = await context.generate("Once upon a time", { temperature: 0, maxTokens: 10 });
process.stdout.write(text);
if (process.argv[2] === "close") { await context.close(); model.close(); }
`;

test("20 scripts that generate and exit, with and without close(), exit 0", { skip: STORIES.skip }, () => {
  const RUNS = 20;
  let ran = 0;
  for (let i = 0; i < RUNS; i++) {
    const run = spawnSync(process.execPath,
                          ["--input-type=module", "-e", SCRIPT, STORIES.path, i % 2 ? "close" : "open"],
                          { encoding: "utf8", timeout: 60000 });
    assert.equal(run.signal, null, `run ${i + 1} ended by ${run.signal}`);
    assert.equal(run.status, 0, run.stderr);
    assert.ok(run.stdout.length > 0);
    ran++;
  }
  assert.equal(ran, RUNS);
});
