/*
 * index.d.ts declares every export of index.js, and every public member of its classes.
 * (TypeScript's compiler is not part of Debian's nodejs and would come from the registry;
 * this check needs neither: it compares the module as Node loads it with the file.)
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as quill from "../index.js";

const DECLARATIONS = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");

/* The body of `export class NAME ... {` up to its closing brace at the line's start. */
function classBody(name) {
  const match = DECLARATIONS.match(new RegExp(`^export class ${name}\\b[^{]*\\{([\\s\\S]*?)^\\}`, "m"));
  assert.ok(match, `index.d.ts declares no class ${name}`);
  return match[1];
}

/* A class's own public members: its prototype's methods and accessors, and its statics. */
function publicMembers(cls) {
  const own = (object) => Object.getOwnPropertyNames(object)
    .filter((name) => !["constructor", "length", "name", "prototype"].includes(name));
  return [...own(cls.prototype), ...own(cls)];
}

test("every export of index.js is declared in index.d.ts", () => {
  const names = Object.keys(quill);
  assert.ok(names.length >= 6, `${names.length} exports`);
  for (const name of names)
    assert.match(DECLARATIONS, new RegExp(`^export (class|function|const) ${name}\\b`, "m"),
                 `${name} is not declared in index.d.ts`);
});

test("every public member of the exported classes is declared", () => {
  let checked = 0;
  for (const [name, value] of Object.entries(quill)) {
    if (typeof value !== "function" || !/^class\b/.test(value.toString())) continue;
    const body = classBody(name);
    for (const member of publicMembers(value)) {
      assert.match(body, new RegExp(`^\\s*(static |readonly )?${member}\\b[(:?]`, "m"),
                   `${name}.${member} is not declared in index.d.ts`);
      checked++;
    }
  }
  assert.ok(checked >= 20, `${checked} members checked`);
});
