/*
 * Every ```js block of README.md runs as written, so that the documentation cannot rot:
 * each is saved as a module in a scratch folder where `import ... from "quill"` finds this
 * package (node_modules/quill, a link to it) and stories260K.gguf (with adapter.gguf, a
 * LoRA adapter for it) is at hand, and run by
 * node; it must exit 0 and print something.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import { STORIES, tempDir, writeAdapter } from "./helpers.js";

const PACKAGE = fileURLToPath(new URL("..", import.meta.url));
const README = readFileSync(join(PACKAGE, "README.md"), "utf8");
const EXAMPLES = [...README.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);

/* A folder as a user's project: the package installed, the model and an adapter beside the
 * script. */
function projectFolder() {
  const dir = tempDir();
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(PACKAGE, join(dir, "node_modules", "quill"));
  symlinkSync(STORIES.path, join(dir, "stories260K.gguf"));
  writeAdapter(join(dir, "adapter.gguf"));
  return dir;
}

test("every js example in README.md runs", { skip: STORIES.skip }, () => {
  assert.equal(EXAMPLES.length, README.split("```js\n").length - 1);
  assert.ok(EXAMPLES.length >= 5, `${EXAMPLES.length} examples`);
  const dir = projectFolder();
  let ran = 0;
  for (const [i, code] of EXAMPLES.entries()) {
    const file = join(dir, `example-${i + 1}.mjs`);
    writeFileSync(file, code);
    const run = spawnSync(process.execPath, [file], { cwd: dir, encoding: "utf8", timeout: 60000 });
    assert.equal(run.status, 0, `README example ${i + 1} failed (${run.signal ?? run.error ?? ""}):\n${code}\n${run.stderr}`);
    assert.ok(run.stdout.length > 0, `README example ${i + 1} printed nothing`);
    ran++;
  }
  assert.equal(ran, EXAMPLES.length);
});
